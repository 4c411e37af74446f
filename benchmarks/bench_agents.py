"""Agent speed on the CSI panel (88 stocks) with raw-feature states: gradient updates per second,
training-loop steps per second, and the time of one daily decision.

- **updates/s**: `SACAgent.update` (critics, actor, temperature, targets) on batches sampled from a
  replay buffer filled by random rollouts, for each (hidden sizes, batch size) setting.
- **loop steps/s**: `OffPolicyAgent.fit` with the `cpu` budget after `learning_starts`: one env step
  of 16 portfolios (observations, sampled actions, simulator, buffer) plus one update, per step.
- **decision ms**: `AgentPolicy.act` on a backtest `Observation` (88 stocks x 13 features + balance
  → orders), what the backtest calls once per day; the target is ≤ 2 ms on CPU.

Runs alternate between settings and repeat; medians are reported.

    python -m benchmarks.bench_agents [--data ../shared/data/csi88] [--runs 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from trustfolio.agent_runs import default_hmax
from trustfolio.agents import AgentData, SACAgent, resolve_config
from trustfolio.agents.off_policy import Rollouts
from trustfolio.agents.registry import raw_states
from trustfolio.agents.replay import ReplayBuffer
from trustfolio.data.cleaning import clean
from trustfolio.data.loaders import load_stockformer
from trustfolio.evaluation.backtest import Observation
from trustfolio.market.simulator import SimulatorConfig

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "csi88"
TRAIN = ("2011-01-17", "2018-12-31")
SETTINGS = {  # (hidden sizes, batch size): the `cpu` and `paper` budgets, and SB3's default batch
    "cpu budget (256x256, batch 128)": ((256, 256), 128),
    "paper budget (256x256, batch 64)": ((256, 256), 64),
    "256x256, batch 256": ((256, 256), 256),
}


def csi_data(path: Path) -> AgentData:
    panel, _ = clean(load_stockformer(path), train_start=TRAIN[0], train_end=TRAIN[1])
    states = raw_states(panel, *TRAIN)
    sim = SimulatorConfig(initial_cash=1e7, hmax=default_hmax(panel, *TRAIN, 1e7))
    return AgentData.between(panel, states, *TRAIN, sim)


def filled_buffer(agent: SACAgent, data: AgentData, transitions: int, rng: np.random.Generator):
    """A replay buffer of `transitions` random-action transitions, and the market tensor."""
    config = agent.config
    market = torch.tensor(data.states.h.reshape(data.panel.T, -1))
    rollouts = Rollouts(data, config, agent.device, config.validation_days)
    rollouts.new_episodes(rng)
    buffer = ReplayBuffer(transitions, data.n_stocks, agent.device)
    while buffer.size < transitions:
        day, balance = rollouts.observe()
        action = torch.rand(day.shape[0], data.n_stocks) * 2 - 1
        reward, next_balance = rollouts.step(action, rng)
        buffer.add(day, balance, action, reward, next_balance)
    return buffer, market


def time_updates(
    agent: SACAgent, buffer: ReplayBuffer, market: torch.Tensor, batch: int, updates: int
) -> float:
    rng = np.random.default_rng(0)
    for _ in range(5):  # warm-up
        agent.update(buffer.sample(batch, rng, market))
    started = time.perf_counter()
    for _ in range(updates):
        agent.update(buffer.sample(batch, rng, market))
    return updates / (time.perf_counter() - started)


def time_loop(data: AgentData, hidden: tuple[int, ...], steps: int) -> float:
    """Env steps per second of the full loop (`cpu` budget: 16 portfolios, 1 update of batch 128 per step)."""
    config = replace(
        resolve_config("sac", "cpu"),
        hidden_sizes=hidden,
        learning_starts=20,
        eval_every=0,
        checkpoint_every=10**9,
        log_every=10**9,
    )
    agent = SACAgent(data.n_stocks, data.n_features, config, seed=0)
    with tempfile.TemporaryDirectory() as out:
        agent.fit(data, steps=config.learning_starts, seed=0, out_dir=Path(out), progress=False)
        started = time.perf_counter()
        agent.fit(data, steps=config.learning_starts + steps, seed=0, out_dir=Path(out) / "b", progress=False)
    return steps / (time.perf_counter() - started)


def time_decision(agent: SACAgent, data: AgentData, calls: int) -> float:
    """Median milliseconds of one `AgentPolicy.act` on a backtest observation."""
    agent.trained_with = {"initial_cash": data.sim.initial_cash, "tickers": list(data.panel.tickers)}
    policy = agent.policy(data.states)
    panel, t = data.panel, data.end
    holdings = np.full(panel.N, 100.0)
    value = data.sim.initial_cash
    obs = Observation(
        t=t,
        date=panel.dates[t],
        history=panel.take_days(slice(0, t + 1)),
        cash=value / 2,
        holdings=holdings,
        weights=holdings * panel.close[t] / value,
        value=value,
    )
    policy.reset()
    policy.act(
        replace(obs, cash=value, holdings=np.zeros(panel.N), weights=np.zeros(panel.N))
    )  # the first day
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        policy.act(obs)
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def main(data_path: Path, runs: int, threads: int, updates: int, loop_steps: int) -> None:
    torch.set_num_threads(threads)
    data = csi_data(data_path)
    print(
        f"{data.panel.name}: {data.n_stocks} stocks x {data.n_features} features, training days "
        f"{data.start}..{data.end}, observation {SACAgent(data.n_stocks, data.n_features).obs_dim} values, "
        f"torch {torch.__version__}, {threads} thread(s)"
    )
    rng = np.random.default_rng(0)
    agents = {
        name: SACAgent(
            data.n_stocks,
            data.n_features,
            replace(resolve_config("sac", "cpu"), hidden_sizes=hidden, batch_size=batch),
            seed=0,
        )
        for name, (hidden, batch) in SETTINGS.items()
    }
    buffer, market = filled_buffer(next(iter(agents.values())), data, 20_000, rng)
    update_rates: dict[str, list[float]] = {name: [] for name in agents}
    loop_rates, decisions = [], []
    for run in range(runs):
        for name, agent in agents.items():
            update_rates[name].append(time_updates(agent, buffer, market, agent.config.batch_size, updates))
        loop_rates.append(time_loop(data, (256, 256), loop_steps))
        decisions.append(time_decision(agents[next(iter(agents))], data, 500))
        print(
            f"run {run + 1}/{runs}: "
            + ", ".join(f"{n}: {v[-1]:.0f} updates/s" for n, v in update_rates.items())
            + f"; loop {loop_rates[-1]:.1f} steps/s; decision {decisions[-1]:.3f} ms"
        )
    print("\n| measurement | median | runs |\n|---|---:|---|")
    for name, values in update_rates.items():
        print(
            f"| SAC updates/s, {name} | {statistics.median(values):,.0f} | {', '.join(f'{v:.0f}' for v in values)} |"
        )
    print(
        f"| training loop steps/s (cpu budget: 16 portfolios + 1 update) | {statistics.median(loop_rates):.1f} | "
        f"{', '.join(f'{v:.1f}' for v in loop_rates)} |"
    )
    print(
        f"| one daily decision, ms (88 stocks) | {statistics.median(decisions):.3f} | "
        f"{', '.join(f'{v:.3f}' for v in decisions)} |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="csi88 directory (StockFormer format)"
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--updates", type=int, default=200, help="timed updates per run and setting")
    parser.add_argument("--loop-steps", type=int, default=100, help="timed loop steps per run")
    args = parser.parse_args()
    main(args.data, args.runs, args.threads, args.updates, args.loop_steps)
