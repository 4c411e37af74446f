"""The off-policy layer: `OffPolicyConfig`, `OffPolicyAgent` and its loop (rollouts, replay, updates).

Partial-offline training (MetaTrader §2): the market path is fixed history, so B portfolios trade it
at once in the batched `Simulator`, each episode from its own random start day inside the training
span and `episode_length` days long; all portfolios restart together when their episodes end. In
`fit`, the last `validation_days` of the span are held out of the rollouts: the evaluation callback
trades them deterministically every `eval_every` steps (→ ``eval.csv``). `finetune` holds nothing
out (it exists to learn from the most recent days) and does not evaluate.

An algorithm (one file each: `sac.py`, `ddpg.py`, `cql.py`, `iql.py`) subclasses `OffPolicyAgent`
and writes `build`, `act` and `update(batch)`; the loop, the replay buffer (`trustfolio.agents.replay`)
and the harness around them (checkpoints, exact resume, logs: `trustfolio.agents.harness`) are shared.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustfolio.agents.base import Agent, AgentConfig, AgentData, TrainSummary
from trustfolio.agents.harness import EVAL_METRICS, PHASE_IDS, TrainingRun
from trustfolio.agents.replay import Batch, ReplayBuffer
from trustfolio.errors import UserError
from trustfolio.evaluation.metrics import compute_metrics
from trustfolio.market.observation import balance_features, observation
from trustfolio.market.rollout import deterministic_rollout
from trustfolio.market.simulator import BalanceState, Simulator


# ---------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class OffPolicyConfig(AgentConfig):
    """What every off-policy agent shares: network sizes, rollouts, replay, updates.

    Steps are *environment steps*: one step moves all `num_envs` portfolios one day, giving
    `num_envs` transitions, and is followed by `updates_per_step` gradient updates.
    """

    hidden_sizes: tuple[int, ...] = (256, 256)
    gamma: float = 0.99
    tau: float = 0.005  # Polyak factor of the target networks
    num_envs: int = 16  # portfolios stepped together, each from its own random start day
    episode_length: int = 60  # trading days per episode; every portfolio restarts after it
    reward_scale: float = 100.0  # reward = daily return x this (100: percent)
    buffer_size: int = 100_000  # transitions kept in the replay buffer
    batch_size: int = 256
    learning_starts: int = 100  # env steps of uniform random actions before the first update
    updates_per_step: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise UserError(f"{type(self).__name__}: hidden_sizes must be positive, got {self.hidden_sizes}")
        self.check_whole_numbers(
            at_least_one=("num_envs", "episode_length", "buffer_size", "batch_size", "updates_per_step"),
            at_least_zero=("learning_starts",),
        )
        if not 0.0 <= self.gamma < 1.0 or not 0.0 < self.tau <= 1.0 or not self.reward_scale > 0:
            raise UserError(f"{type(self).__name__}: need 0 <= gamma < 1, 0 < tau <= 1 and reward_scale > 0")


#: The budgets the off-policy agents share (each agent's file adds its own fields, e.g. the paper's
#: learning rates). quick: seconds on the embedded sp500 data (`trustfolio run`, CI); cpu: a serious run
#: on CSI (88 stocks) within minutes per seed on 2 cores; paper: paper-like sizes (30k + 5k steps,
#: B = 32 portfolios, 256-unit layers; MetaTrader Table 5).
OFF_POLICY_BUDGETS: dict[str, dict[str, Any]] = {
    "quick": dict(
        hidden_sizes=(64, 64), num_envs=8, episode_length=40, steps=600, finetune_steps=100, batch_size=64,
        buffer_size=20_000, learning_starts=50, validation_days=60, eval_every=200, checkpoint_every=200,
        log_every=50,
    ),
    "cpu": dict(
        hidden_sizes=(256, 256), num_envs=16, episode_length=120, steps=5_000, finetune_steps=1_000,
        batch_size=128, buffer_size=200_000, learning_starts=100, validation_days=120, eval_every=500,
        checkpoint_every=500, log_every=100,
    ),
    "paper": dict(
        hidden_sizes=(256, 256), num_envs=32, episode_length=64, steps=30_000, finetune_steps=5_000,
        buffer_size=100_000, learning_starts=100, validation_days=120, eval_every=2_000,
        checkpoint_every=2_000, log_every=200,
    ),
}  # fmt: skip


def with_paper_settings(paper: dict[str, Any], **every_budget: Any) -> dict[str, dict[str, Any]]:
    """`OFF_POLICY_BUDGETS` with `paper` added to the paper budget and `every_budget` to all three
    (values may be functions of the budget name)."""
    return {
        budget: {
            **fields,
            **(paper if budget == "paper" else {}),
            **{key: value(budget) if callable(value) else value for key, value in every_budget.items()},
        }
        for budget, fields in OFF_POLICY_BUDGETS.items()
    }


# ---------------------------------------------------------------------------------------- rollouts
class Rollouts:
    """`num_envs` portfolios on random episodes inside the training span (the held-out days excluded)."""

    def __init__(self, data: AgentData, config: OffPolicyConfig, device: torch.device, validation_days: int,
                 order_mode: str = "shares") -> None:  # fmt: skip
        sim_config = replace(data.sim, order_mode=order_mode, round_lots=False, reward_scale=config.reward_scale)
        self.sim = Simulator(data.panel, sim_config, device=device)
        self.initial_cash, self.length, self.batch = data.sim.initial_cash, config.episode_length, config.num_envs
        self.first_start = data.start
        self.last_start = data.end - validation_days - config.episode_length
        if self.last_start < self.first_start:
            raise UserError(
                f"{data.panel.name}: the training span has {data.end - data.start + 1} days, too few for "
                f"episodes of {config.episode_length} days plus {validation_days} validation days; "
                "widen the span or lower episode_length / validation_days"
            )
        self.device = device
        self.end: torch.Tensor | None = None  # LongTensor [B], the last day of each episode
        self.episode_return = torch.zeros(self.batch, dtype=torch.float64, device=device)
        self.last_return = float("nan")  # mean return of the last finished episodes (for the logs)

    def new_episodes(self, rng: np.random.Generator) -> None:
        starts = rng.integers(self.first_start, self.last_start + 1, size=self.batch)
        starts = torch.from_numpy(starts).to(self.device)
        self.end = starts + self.length
        self.sim.reset(start=starts, end=self.end)
        self.episode_return.zero_()

    def observe(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Today's day index ``[B]`` and balance features ``[B, N+1]``."""
        return self.sim.market_index().clone(), balance_features(
            self.sim.state.cash, self.sim.weights(), self.initial_cash
        )

    def step(self, action: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Trade `action`; returns the reward ``[B]`` and the next balance features. Finished
        episodes are restarted from new random days (after the next balance was read)."""
        result = self.sim.step(action)
        next_balance = balance_features(result.state.cash, self.sim.weights(), self.initial_cash)
        self.episode_return += result.reward
        if bool(result.done.all()):
            self.last_return = float(self.episode_return.mean())
            self.new_episodes(rng)
        return result.reward, next_balance

    def state_dict(self) -> dict[str, Any]:
        state = self.sim.state
        return {
            "cash": state.cash,
            "holdings": state.holdings,
            "t": state.t,
            "value": state.value,
            "end": self.end,
            "episode_return": self.episode_return,
            "last_return": self.last_return,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.end = state["end"]
        saved = BalanceState(cash=state["cash"], holdings=state["holdings"], t=state["t"], value=state["value"])
        self.sim.restore(saved, end=self.end)
        self.episode_return.copy_(state["episode_return"])
        self.last_return = float(state["last_return"])


# ---------------------------------------------------------------------------------------- evaluation
def evaluate_agent(agent: Agent, data: AgentData, market: torch.Tensor, first: int, last: int) -> dict[str, float]:
    """Trade the deterministic policy on days ``first..last`` (one portfolio, `data.sim` execution,
    reward unscaled) and return CR, AR, SR and MDD of its value path."""
    sim = Simulator(data.panel, replace(data.sim, order_mode=agent.order_mode, reward_scale=1.0), device=agent.device)
    path = deterministic_rollout(sim, market, lambda obs: agent.act(obs, deterministic=True), first, last,
                                 data.sim.initial_cash)  # fmt: skip
    metrics = compute_metrics(path.values, data.panel.calendar.trading_days_per_year, path.turnover, path.costs)
    return {name: metrics[name] for name in EVAL_METRICS}


def market_rows(data: AgentData, device: torch.device) -> torch.Tensor:
    """``[T, N·D]``: the market states flattened per day, gathered by day index in the loops."""
    return torch.tensor(data.states.h.reshape(data.panel.T, -1), device=device)


# ---------------------------------------------------------------------------------------- the layer
class OffPolicyAgent(Agent):
    """An off-policy learner: subclasses write `build`, `act` and `update(batch)`; `learn` is the loop."""

    config_class = OffPolicyConfig

    @abstractmethod
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One gradient update from a replay `Batch`; returns detached scalars named in `log_keys`."""

    def random_actions(self, count: int) -> torch.Tensor:
        """``[count, N]`` uniform random actions: share orders in ``[-1, 1]``, or weights on the simplex."""
        draw = torch.rand(count, self.n_stocks, generator=self.generator, device=self.device)
        if self.order_mode == "weights":
            return draw / draw.sum(-1, keepdim=True)
        return draw * 2 - 1

    def learn(self, data: AgentData, *, phase: str, steps: int, seed: int, out_dir: Path, resume: bool = True,
              progress: bool = True) -> TrainSummary:  # fmt: skip
        """Train on ``data`` for `steps` env steps (see the module docstring)."""
        config, device = self.config, self.device
        market = market_rows(data, device)
        # Finetuning adapts to the most recent days (e.g. the last training year): nothing is held out.
        validation_days = config.validation_days if phase == "fit" else 0
        run = TrainingRun(self, data, phase=phase, seed=seed, steps=steps, out_dir=out_dir, progress=progress)
        rollouts = Rollouts(data, config, device, validation_days, self.order_mode)
        buffer = ReplayBuffer(config.buffer_size, data.n_stocks, device)
        rng = np.random.default_rng([seed, PHASE_IDS[phase]])
        if not run.resume({"agent": self, "buffer": buffer, "rollouts": rollouts, "rng": rng}, resume=resume):
            self.generator.manual_seed(seed + PHASE_IDS[phase])
            rollouts.new_episodes(rng)
        self.trained_with = self.execution_facts(data)
        validation = None
        if validation_days > 0:
            validation = lambda: evaluate_agent(self, data, market, data.end - validation_days, data.end)  # noqa: E731
        losses: dict[str, torch.Tensor] = {}

        def progress_row() -> dict[str, Any]:  # a row of progress.csv (read when one is due)
            return {"transitions": run.step * config.num_envs, "updates": self.updates,
                    "episode_return": rollouts.last_return, **{k: float(v) for k, v in losses.items()}}  # fmt: skip

        with run:
            for step in run:
                day, balance = rollouts.observe()
                if step <= config.learning_starts:  # uniform random actions fill the buffer first
                    action = self.random_actions(balance.shape[0])
                else:
                    action = self.act(observation(market[day], balance), deterministic=False)
                reward, next_balance = rollouts.step(action, rng)
                buffer.add(day, balance, action, reward, next_balance)
                if step > config.learning_starts and buffer.size >= config.batch_size:
                    for _ in range(config.updates_per_step):
                        losses = self.update(buffer.sample(config.batch_size, rng, market))
                        self.updates += 1
                run.end_step(step, row=progress_row, evaluate=validation)
        return run.summary(transitions=steps * config.num_envs, updates=self.updates)


__all__ = [
    "OFF_POLICY_BUDGETS",
    "OffPolicyAgent",
    "OffPolicyConfig",
    "Rollouts",
    "evaluate_agent",
    "market_rows",
    "with_paper_settings",
]
