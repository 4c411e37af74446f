"""The off-policy training loop shared by the agents: rollouts, replay, updates, evaluation, checkpoints.

Partial-offline training (MetaTrader §2): the market path is fixed history, so B portfolios trade it
at once in the batched `Simulator`, each episode from its own random start day inside the training
span and `episode_length` days long; all portfolios restart together when their episodes end. In
`fit`, the last `validation_days` of the span are held out of the rollouts: the evaluation callback
trades them deterministically every `eval_every` steps (→ ``eval.csv``). `finetune` holds nothing
out (it exists to learn from the most recent days) and does not evaluate.

The replay buffer stores **day indices** and balance features, never copies of the market state:
``h[t]`` and ``h[t+1]`` are gathered from one precomputed tensor when a batch is sampled. Episodes
end by a time limit, not by a terminal state, so every transition bootstraps (no "done" flag).

Every `checkpoint_every` steps (and at the end) ``checkpoint.pt`` is written atomically with the
learner (networks, optimizers, temperature, generator), the replay buffer, the simulator's balance
state, the random states of numpy, torch and Python, and the step. A call with ``resume=True``
continues from it, so a run killed at any moment and restarted with the same command reproduces the
uninterrupted run bit for bit. ``progress.csv`` / ``eval.csv`` are cut back to the checkpoint's step
on resume; TensorBoard event files are written too when the `tensorboard` package is installed.
"""

from __future__ import annotations

import csv
import hashlib
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustfolio.agents.base import (
    CHECKPOINT_FORMAT,
    Agent,
    AgentData,
    TrainSummary,
    balance_features,
    load_checkpoint,
    save_atomic,
)
from trustfolio.errors import UserError
from trustfolio.evaluation.metrics import compute_metrics
from trustfolio.market.simulator import BalanceState, Simulator

CHECKPOINT_FILE, PROGRESS_FILE, EVAL_FILE = "checkpoint.pt", "progress.csv", "eval.csv"
_PHASE_IDS = {"fit": 0, "finetune": 1}  # distinct random streams for the two phases of one seed
EVAL_METRICS = ("CR", "AR", "SR", "MDD")


# ---------------------------------------------------------------------------------------- replay
@dataclass
class Batch:
    """Transitions ``(s, a, r, s')`` with observations already assembled, plus the day of ``s``."""

    obs: torch.Tensor  # [b, obs_dim]
    action: torch.Tensor  # [b, N]
    reward: torch.Tensor  # [b]
    next_obs: torch.Tensor  # [b, obs_dim]
    day: torch.Tensor  # LongTensor [b]; s' is day + 1


class ReplayBuffer:
    """A ring buffer of transitions as ``(day, balance, action, reward, next balance)`` rows."""

    def __init__(self, capacity: int, n_stocks: int, device: torch.device) -> None:
        self.capacity, self.device = int(capacity), device
        self.day = torch.zeros(self.capacity, dtype=torch.long, device=device)
        self.balance = torch.zeros(self.capacity, n_stocks + 1, device=device)
        self.action = torch.zeros(self.capacity, n_stocks, device=device)
        self.reward = torch.zeros(self.capacity, device=device)
        self.next_balance = torch.zeros(self.capacity, n_stocks + 1, device=device)
        self.position = 0  # where the next row goes
        self.size = 0

    def add(self, day, balance, action, reward, next_balance) -> None:
        """Append B rows (overwriting the oldest once full)."""
        rows = (self.position + torch.arange(day.shape[0], device=self.device)) % self.capacity
        self.day[rows] = day
        self.balance[rows] = balance
        self.action[rows] = action.float()
        self.reward[rows] = reward.float()
        self.next_balance[rows] = next_balance
        self.position = (self.position + day.shape[0]) % self.capacity
        self.size = min(self.size + day.shape[0], self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator, market: torch.Tensor) -> Batch:
        """`batch_size` rows drawn uniformly (with replacement); market states gathered by day."""
        rows = torch.from_numpy(rng.integers(0, self.size, size=batch_size)).to(self.device)
        day = self.day[rows]
        return Batch(
            obs=torch.cat([market[day], self.balance[rows]], dim=-1),
            action=self.action[rows],
            reward=self.reward[rows],
            next_obs=torch.cat([market[day + 1], self.next_balance[rows]], dim=-1),
            day=day,
        )

    def state_dict(self) -> dict[str, Any]:
        kept = slice(0, self.size)
        tensors = {
            name: getattr(self, name)[kept].clone()
            for name in ("day", "balance", "action", "reward", "next_balance")
        }
        return {"position": self.position, "size": self.size, **tensors}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position, self.size = int(state["position"]), int(state["size"])
        for name in ("day", "balance", "action", "reward", "next_balance"):
            getattr(self, name)[: self.size] = state[name]


# ---------------------------------------------------------------------------------------- rollouts
class Rollouts:
    """`num_envs` portfolios on random episodes inside the training span (the held-out days excluded)."""

    def __init__(self, data: AgentData, config, device: torch.device, validation_days: int) -> None:
        sim_config = replace(
            data.sim, order_mode="shares", round_lots=False, reward_scale=config.reward_scale
        )
        self.sim = Simulator(data.panel, sim_config, device=device)
        self.initial_cash, self.length, self.batch = (
            data.sim.initial_cash,
            config.episode_length,
            config.num_envs,
        )
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
        starts = torch.from_numpy(rng.integers(self.first_start, self.last_start + 1, size=self.batch)).to(
            self.device
        )
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
        saved = BalanceState(
            cash=state["cash"], holdings=state["holdings"], t=state["t"], value=state["value"]
        )
        self.sim.restore(saved, end=self.end)
        self.episode_return.copy_(state["episode_return"])
        self.last_return = float(state["last_return"])


# ---------------------------------------------------------------------------------------- evaluation
def evaluate_agent(
    agent: Agent, data: AgentData, market: torch.Tensor, first: int, last: int
) -> dict[str, float]:
    """Trade the deterministic policy on days ``first..last`` (one portfolio, `data.sim` execution,
    reward unscaled) and return CR, AR, SR and MDD of its value path."""
    sim = Simulator(data.panel, replace(data.sim, order_mode="shares", reward_scale=1.0), device=agent.device)
    sim.reset(1, start=first, end=last)
    values, turnover, costs = [data.sim.initial_cash], [], []
    for _ in range(last - first):
        balance = balance_features(sim.state.cash, sim.weights(), data.sim.initial_cash)
        obs = torch.cat([market[sim.market_index()], balance], dim=-1)
        value = float(sim.state.value[0])
        with torch.no_grad():
            result = sim.step(agent.act(obs, deterministic=True))
        values.append(float(result.value[0]))
        turnover.append(float(result.traded_value[0]) / (2.0 * value))
        costs.append(float(result.costs[0]))
    metrics = compute_metrics(
        np.array(values), data.panel.calendar.trading_days_per_year, np.array(turnover), np.array(costs)
    )
    return {name: metrics[name] for name in EVAL_METRICS}


# ---------------------------------------------------------------------------------------- logs
class CsvLog:
    """One CSV file of rows keyed by `step`; on resume, rows past the checkpoint's step are dropped."""

    def __init__(self, path: Path, columns: list[str], keep_until: int | None) -> None:
        kept: list[dict[str, str]] = []
        if keep_until is not None and path.exists():
            with path.open(newline="") as file:
                kept = [row for row in csv.DictReader(file) if int(row["step"]) <= keep_until]
        self.file = path.open("w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=columns, extrasaction="ignore")
        self.writer.writeheader()
        self.writer.writerows(kept)
        self.file.flush()

    def write(self, row: dict[str, Any]) -> None:
        self.writer.writerow(row)
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _tensorboard(out_dir: Path):
    """A TensorBoard `SummaryWriter`, or None when the `tensorboard` package is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


# ---------------------------------------------------------------------------------------- shared by the loops
PROGRESS_COLUMNS = ("step", "transitions", "updates", "episode_return", "seconds")


def load_matching_checkpoint(path: Path, identity: dict[str, Any], device) -> dict[str, Any]:
    """The checkpoint at `path`, refused (`UserError`) when it belongs to a run with another identity."""
    saved = load_checkpoint(path, device)
    differing = [key for key in identity if saved.get("identity", {}).get(key) != identity[key]]
    if differing:
        raise UserError(
            f"{path} belongs to a different run (it differs in {', '.join(differing)}); "
            "use another output directory, or pass resume=False to start over"
        )
    return saved


def execution_facts(data: AgentData) -> dict[str, Any]:
    """What a trained agent must be backtested with (`Agent.trained_with`)."""
    return {
        "initial_cash": data.sim.initial_cash,
        "hmax": data.sim.hmax,
        "cost_bps": data.sim.cost_bps,
        "fill": data.sim.fill,
        "tickers": list(data.panel.tickers),
        "columns": list(data.states.columns),
        "panel": data.panel.name,
    }


def random_states(rng: np.random.Generator) -> dict[str, Any]:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state(), "python": random.getstate()}


def restore_random_states(rng: np.random.Generator, states: dict[str, Any]) -> None:
    rng.bit_generator.state = states["numpy"]
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])


def open_logs(out_dir: Path, log_keys: tuple[str, ...], resumed_from: int | None):
    """``progress.csv``, ``eval.csv`` (cut back to `resumed_from`) and a TensorBoard writer (or None)."""
    progress_log = CsvLog(out_dir / PROGRESS_FILE, [*PROGRESS_COLUMNS, *log_keys], resumed_from)
    eval_log = CsvLog(out_dir / EVAL_FILE, ["step", *EVAL_METRICS], resumed_from)
    return progress_log, eval_log, _tensorboard(out_dir)


def progress_bar(disabled: bool):
    """The rich progress bar both loops show (description, bar, steps done, time left)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, disable=disabled, transient=True)


# ---------------------------------------------------------------------------------------- the loop
def train_off_policy(
    agent: Agent,
    data: AgentData,
    *,
    steps: int,
    seed: int,
    out_dir: Path,
    resume: bool = True,
    progress: bool = True,
    phase: str = "fit",
) -> TrainSummary:
    """Train `agent` on `data` for `steps` env steps (see the module docstring); returns a summary."""
    config, device = agent.config, agent.device
    if (data.n_stocks, data.n_features) != (agent.n_stocks, agent.n_features):
        raise UserError(
            f"{agent.name}: built for {agent.n_stocks} stocks x {agent.n_features} features, "
            f"the data have {data.n_stocks} x {data.n_features}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / CHECKPOINT_FILE
    market = torch.tensor(data.states.h.reshape(data.panel.T, -1), device=device)  # [T, N·D], gathered by day
    identity = _run_identity(agent, data, seed, phase)
    # Finetuning adapts to the most recent days (e.g. the last training year): nothing is held out.
    validation_days = config.validation_days if phase == "fit" else 0
    rollouts = Rollouts(data, config, device, validation_days)
    buffer = ReplayBuffer(config.buffer_size, data.n_stocks, device)
    rng = np.random.default_rng([seed, _PHASE_IDS[phase]])
    first_eval_day = data.end - validation_days
    evaluating = config.eval_every > 0 and validation_days > 0

    step, seconds_before, resumed_from, last_eval = 0, 0.0, None, {}
    if resume and checkpoint_path.exists():
        saved = load_matching_checkpoint(checkpoint_path, identity, device)
        if saved["step"] > steps:
            raise UserError(f"{checkpoint_path} is at step {saved['step']}, past the {steps} steps asked for")
        _restore(saved, agent, buffer, rollouts, rng)
        step, seconds_before, last_eval = saved["step"], saved["seconds"], saved["last_eval"]
        resumed_from = step
    else:
        agent.generator.manual_seed(seed + _PHASE_IDS[phase])
        rollouts.new_episodes(rng)
    agent.trained_with = execution_facts(data)
    progress_log, eval_log, board = open_logs(out_dir, agent.log_keys, resumed_from)
    started, losses = time.perf_counter(), {}

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - started

    try:
        with progress_bar(disabled=not progress) as bar:
            task = bar.add_task(f"{agent.name} {phase}", total=steps, completed=step)
            while step < steps:
                step += 1
                day, balance = rollouts.observe()
                if step <= config.learning_starts:  # uniform random orders fill the buffer first
                    action = torch.rand(
                        balance.shape[0], agent.n_stocks, generator=agent.generator, device=device
                    )
                    action = action * 2 - 1
                else:
                    action = agent.act(torch.cat([market[day], balance], dim=-1), deterministic=False)
                reward, next_balance = rollouts.step(action, rng)
                buffer.add(day, balance, action, reward, next_balance)
                if step > config.learning_starts and buffer.size >= config.batch_size:
                    for _ in range(config.updates_per_step):
                        losses = agent.update(buffer.sample(config.batch_size, rng, market))
                        agent.updates += 1
                if step % config.log_every == 0 or step == steps:
                    row = {
                        "step": step,
                        "transitions": step * config.num_envs,
                        "updates": agent.updates,
                        "episode_return": rollouts.last_return,
                        "seconds": round(elapsed(), 3),
                        **{key: float(value) for key, value in losses.items()},
                    }
                    progress_log.write(row)
                    _to_board(board, "train", row, step)
                if evaluating and (step % config.eval_every == 0 or step == steps):
                    last_eval = evaluate_agent(agent, data, market, first_eval_day, data.end)
                    eval_log.write({"step": step, **last_eval})
                    _to_board(board, "validation", last_eval, step)
                    bar.update(
                        task, description=f"{agent.name} {phase} (validation SR {last_eval['SR']:.2f})"
                    )
                if step % config.checkpoint_every == 0 or step == steps:
                    saved = {"identity": identity, "step": step, "seconds": elapsed(), "last_eval": last_eval}
                    save_atomic(_checkpoint(saved, agent, buffer, rollouts, rng), checkpoint_path)
                bar.update(task, completed=step)
    finally:
        progress_log.close()
        eval_log.close()
        if board is not None:
            board.close()
    return TrainSummary(
        agent=agent.name,
        phase=phase,
        steps=steps,
        transitions=steps * config.num_envs,
        updates=agent.updates,
        seconds=elapsed(),
        resumed_from=resumed_from,
        last_eval=dict(last_eval),
        out_dir=out_dir,
    )


def _checkpoint(
    facts: dict[str, Any], agent: Agent, buffer: ReplayBuffer, rollouts: Rollouts, rng: np.random.Generator
) -> dict[str, Any]:
    """Everything needed to continue exactly: tensors and plain containers only (weights_only loading)."""
    return {
        "format": CHECKPOINT_FORMAT,
        **facts,
        "agent": agent.learner_state(),
        "buffer": buffer.state_dict(),
        "rollouts": rollouts.state_dict(),
        "rng": random_states(rng),
    }


def _restore(
    saved: dict[str, Any], agent: Agent, buffer: ReplayBuffer, rollouts: Rollouts, rng: np.random.Generator
) -> None:
    """Inverse of `_checkpoint`."""
    agent.load_learner_state(saved["agent"])
    buffer.load_state_dict(saved["buffer"])
    rollouts.load_state_dict(saved["rollouts"])
    restore_random_states(rng, saved["rng"])


def _to_board(board, prefix: str, row: dict[str, Any], step: int) -> None:
    if board is not None:
        for key, value in row.items():
            if key != "step" and isinstance(value, float | int):
                board.add_scalar(f"{prefix}/{key}", value, step)


def _run_identity(agent: Agent, data: AgentData, seed: int, phase: str) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the agent, its starting weights, the data, the seed."""
    weights = hashlib.sha256()
    for value in agent.learner_state().values():
        if isinstance(value, dict):  # a module's or optimizer's state dict
            for tensor in value.values():
                if isinstance(tensor, torch.Tensor):
                    weights.update(tensor.detach().cpu().numpy().tobytes())
    states = hashlib.sha256(np.ascontiguousarray(data.states.h).tobytes()).hexdigest()[:20]
    return {
        "agent": agent.name,
        "phase": phase,
        "seed": int(seed),
        "config": agent.config.to_dict(),
        "start_weights": weights.hexdigest()[:20],
        "panel": data.panel.content_hash(),
        "states": states,
        "span": [data.start, data.end],
        "sim": asdict(data.sim),
    }


__all__ = ["Batch", "CsvLog", "ReplayBuffer", "Rollouts", "evaluate_agent", "train_off_policy"]
