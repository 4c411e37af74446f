"""MetaTrader's outer step (Algorithm 1) on the CSI panel's sizes, with a breakdown, and the projected
wall time of a whole configuration.

Sizes: N = 88 stocks, market state D per stock (cpu: the light encoder, 3 x 8; paper: the StockFormer
release's 3 x 32), balance N + 1, actor and critics 256 x 256, 3 simulated next days (F1-F3). The
data are random tensors of those shapes: the cost of a step does not depend on the values.

Per outer step it times, medians over `--runs` repeats:
- **rollout**: one day of `num_envs` portfolios (policy sample, order execution, storing);
- **sample**: K batches of B transitions gathered from K subset buffers (with eq. 5's re-priced steps);
- **targets**: the soft TD targets, original and simulated next days (no gradient);
- **inner**: the K inner steps alone (critic pair and actor, `vmap` of `grad`);
- **update**: the whole `MetaTraderAgent.update` (targets, inner and outer steps, temperature, Polyak);
  the outer part is update − targets − inner.
Algorithm 2's step (pairs i = i only) is timed too. The projection multiplies by the configuration's
step counts (subset encoding and evaluation not included; see BENCHMARKS.md).

    python -m benchmarks.bench_metatrader [--settings cpu,paper] [--runs 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.func import vmap

from trustfolio.agents.metatrader import MetaTraderAgent, MetaTraderConfig
from trustfolio.agents.metatrader_meta import actor_inner_steps, adapted_critic_1, critic_inner_step
from trustfolio.agents.subsets import SubsetMarket, SubsetReplay
from trustfolio.market.simulator import SimulatorConfig

N_STOCKS, ALTERNATIVES, SLICE = 88, 3, 64
STATE_DIM = {"cpu": 3 * 8, "paper": 3 * 32}  # per stock: light encoder (cpu) / StockFormer release (paper)


def synthetic_market(subsets: int, state_dim: int, seed: int = 0) -> SubsetMarket:
    """Random states and positive random-walk prices with the shapes of `build_subsets`' output."""
    g = torch.Generator().manual_seed(seed)
    features = N_STOCKS * state_dim
    close = (
        10 * torch.exp(torch.cumsum(0.01 * torch.randn(subsets, SLICE, N_STOCKS, generator=g), 1)).double()
    )
    return SubsetMarket(
        states=torch.randn(subsets, SLICE, features, generator=g),
        close=close,
        alt_states=torch.randn(subsets, SLICE - 1, ALTERNATIVES, features, generator=g),
        alt_close=close[:, 1:, None, :].expand(-1, -1, ALTERNATIVES, -1).contiguous(),
        transform=np.zeros(subsets, dtype=np.int64),
        start_day=np.zeros(subsets, dtype=np.int64),
        alternatives=("F1", "F2", "F3"),
    )


def median_seconds(fn, runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench(setting: str, runs: int, meta_gradient: str) -> dict[str, float]:
    budget = MetaTraderAgent.budgets[setting]
    config = MetaTraderConfig(**{**budget, "meta_gradient": meta_gradient, "encoder_budget": "quick"})
    state_dim = STATE_DIM[setting]
    agent = MetaTraderAgent(N_STOCKS, state_dim, config)
    market = synthetic_market(min(64, 4 * config.subsets_per_step), state_dim)
    sim = SimulatorConfig(initial_cash=1e7, hmax=1_000.0, cost_bps=10.0)
    replay = SubsetReplay(market, config.subset_buffer_size, sim=sim, reward_scale=config.reward_scale)
    replay.start(torch.arange(market.count))
    for _ in range(SLICE - 1):
        replay.step(torch.rand(market.count, N_STOCKS) * 2 - 1)
    rng = np.random.default_rng(0)
    K, B = config.subsets_per_step, config.batch_size
    chosen = torch.from_numpy(rng.choice(market.count, size=K, replace=False))
    batch = replay.sample(chosen, B, rng)
    lam = agent.log_alpha.detach().exp()

    def rollout():
        if replay.k == SLICE - 1:
            replay.start(torch.from_numpy(rng.integers(0, market.count, config.num_envs)))
        replay.step(agent.act(replay.observation(), deterministic=False))

    def targets():
        original = agent.soft_targets(batch.reward, batch.next_obs, lam)
        agent.worst_case_targets(batch, original, lam)

    template = agent.critics.template[0]
    phi = {k: v.detach() for k, v in agent.critics.params().items()}
    theta = {k: v.detach() for k, v in agent.actor.named_parameters()}
    inner_batch = (batch.obs, batch.action, torch.randn(K, B))
    noise = torch.randn(K, B, N_STOCKS)

    def inner():  # both critics' and the actor's K inner steps, as `MetaTraderAgent.update` runs them
        vmap(
            lambda p: vmap(lambda *b: critic_inner_step(template, p, *b, config.critic_inner_lr))(
                *inner_batch
            )
        )(phi)
        critic_1 = adapted_critic_1(phi, template, inner_batch, config.critic_inner_lr)
        actor_inner_steps(theta, agent.actor, template, critic_1, inner_batch[:2], (batch.obs, noise), lam,
                          config.actor_inner_lr, config.critic_inner_lr)  # fmt: skip

    start_replay = replay.state_dict()
    result = {
        "rollout": median_seconds(rollout, runs * 5),
        "sample": median_seconds(lambda: replay.sample(chosen, B, rng), runs * 5),
        "targets": median_seconds(targets, runs),
        "inner": median_seconds(inner, runs),
        "update": median_seconds(lambda: agent.update(batch), runs),
        "finetune update": median_seconds(lambda: agent.update(batch, batch, phase="finetune"), runs),
    }
    replay.load_state_dict(start_replay)
    result["outer"] = result["update"] - result["targets"] - result["inner"]
    per_step = result["rollout"] + result["sample"] + result["update"]
    per_finetune_step = result["rollout"] + 2 * result["sample"] + result["finetune update"]
    result["projected hours"] = (config.steps * per_step + config.finetune_steps * per_finetune_step) / 3600
    result.update(K=K, B=B, steps=config.steps, finetune_steps=config.finetune_steps, state_dim=state_dim)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default="cpu,paper")
    parser.add_argument("--modes", default="exact,union")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), medians of {args.runs} runs (seconds)")
    columns = (
        "rollout",
        "sample",
        "targets",
        "inner",
        "outer",
        "update",
        "finetune update",
        "projected hours",
    )
    print("| setting | K x B | meta-gradient | " + " | ".join(columns) + " |")
    print("|---" * (len(columns) + 3) + "|")
    for setting in args.settings.split(","):
        for mode in args.modes.split(","):
            r = bench(setting, args.runs, mode)
            cells = " | ".join(f"{r[c]:.4f}" if c != "projected hours" else f"{r[c]:.1f}" for c in columns)
            print(
                f"| {setting} (D = {r['state_dim']}) | {r['K']} x {r['B']} | {mode} | {cells} |", flush=True
            )


if __name__ == "__main__":
    main()
