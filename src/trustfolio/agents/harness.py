"""The one training harness every training loop runs in: progress, logs, evaluation, checkpoints, resume.

A loop (off-policy, MetaTrader's bilevel loop, a population or a two-level schedule) owns its
*work*: rollouts, replay, updates. Everything around the work is here, once:

- **run identity** (`run_identity`): the agent, its starting weights, the data, the seed and the
  phase. A checkpoint of another run is refused with one line, never silently continued;
- **checkpoints**: every `checkpoint_every` steps (and at the end) ``checkpoint.pt`` is written
  atomically with the loop's whole state — any mapping of agents, modules, optimizers, tensors,
  replay buffers, random generators, and lists or dicts of them (`capture` / `restore`) — plus the
  global random states of numpy, torch and Python, the step and the time spent. A run killed at any
  moment and restarted with the same call continues bit for bit;
- **logs**: ``progress.csv`` every `log_every` steps and ``eval.csv`` at each evaluation (both cut
  back to the checkpoint's step on resume), TensorBoard event files when `tensorboard` is installed;
- **evaluation callback** every `eval_every` steps (validation metrics, e.g. CR/AR/SR/MDD);
- **progress** (`trustfolio.progress`: a rich bar on a terminal, plain lines in a log), with the last
  validation Sharpe ratio, and one line saying from which step a resumed run continues.

A loop reads like this::

    run = TrainingRun(agent, data, phase="fit", seed=seed, steps=steps, out_dir=out_dir)
    state = {"agent": agent, "buffer": buffer, "rng": rng}
    if not run.resume(state, resume=resume):
        ...  # a fresh start: seed the generators, fill buffers
    with run:
        for step in run:
            ...  # one step of work
            run.end_step(step, row=lambda: {...}, evaluate=validation)
    return run.summary(transitions=..., updates=...)
"""

from __future__ import annotations

import csv
import hashlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trustfolio.errors import UserError
from trustfolio.files import write_atomic
from trustfolio.progress import ProgressReporter, note

CHECKPOINT_FORMAT = 1
CHECKPOINT_FILE, PROGRESS_FILE, EVAL_FILE = "checkpoint.pt", "progress.csv", "eval.csv"
PROGRESS_COLUMNS = ("step", "transitions", "updates", "episode_return", "seconds")
EVAL_METRICS = ("CR", "AR", "SR", "MDD")
PHASE_IDS = {"fit": 0, "finetune": 1}  # distinct random streams for the phases of one seed


# ---------------------------------------------------------------------------------------- files
def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """`torch.save` atomically: a kill never leaves half a checkpoint (`trustfolio.files.write_atomic`)."""
    write_atomic(path, lambda temporary: torch.save(payload, temporary))


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with a `UserError` for a missing or foreign file."""
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise UserError(f"{path}: not a trustfolio checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a trustfolio checkpoint of format {CHECKPOINT_FORMAT}")
    return payload


# ---------------------------------------------------------------------------------------- state
def capture(value: Any) -> Any:
    """A checkpointable copy of `value`: tensors and plain containers only (``weights_only`` loading).

    Modules, optimizers, agents, replay buffers — anything with ``state_dict()`` — give their state
    dict; tensors a clone; numpy / torch generators their state; lists, tuples and dicts are captured
    element by element (a population of policies with their optimizers is a list of them)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.random.Generator):
        return value.bit_generator.state
    if isinstance(value, torch.Generator):
        return value.get_state()
    if hasattr(value, "state_dict"):  # a module's or optimizer's state dict holds its live tensors: copy them
        return _copied(value.state_dict())
    if isinstance(value, list | tuple):
        return [capture(item) for item in value]
    if isinstance(value, dict):
        return {key: capture(item) for key, item in value.items()}
    return value


def _copied(state: Any) -> Any:
    """`state` with every tensor cloned (containers rebuilt), so later training cannot change it."""
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {key: _copied(item) for key, item in state.items()}
    if isinstance(state, list | tuple):
        return type(state)(_copied(item) for item in state)
    return state


def restore(value: Any, saved: Any) -> None:
    """Inverse of `capture`, in place: `value` continues exactly as the captured one would have."""
    if isinstance(value, torch.Tensor):
        with torch.no_grad():
            value.copy_(saved)
    elif isinstance(value, np.random.Generator):
        value.bit_generator.state = saved
    elif isinstance(value, torch.Generator):
        value.set_state(saved.cpu())
    elif hasattr(value, "load_state_dict"):
        value.load_state_dict(saved)
    elif isinstance(value, list | tuple):
        for item, item_saved in zip(value, saved, strict=True):
            restore(item, item_saved)
    elif isinstance(value, dict):
        for key, item in value.items():
            restore(item, saved[key])


def is_learned(value: Any) -> bool:
    """Whether an attribute holds learned state: a module, an optimizer, a tensor, or a list/tuple/dict
    holding one (what `Agent.state_dict` captures by attribute)."""
    if isinstance(value, nn.Module | torch.optim.Optimizer | torch.Tensor):
        return True
    if isinstance(value, list | tuple):
        return any(is_learned(item) for item in value)
    if isinstance(value, dict):
        return any(is_learned(item) for item in value.values())
    return False


def global_random_states() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "python": random.getstate()}


def restore_global_random_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])


def run_identity(agent, data, seed: int, phase: str) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the agent, its starting weights, the data, the seed."""
    weights = hashlib.sha256()
    for tensor in _tensors(agent.state_dict()):
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


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every floating-point tensor in a captured state (the generator's byte state excluded)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)


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


# ---------------------------------------------------------------------------------------- the harness
class TrainingRun:
    """One phase of one agent's training in `out_dir` (see the module docstring).

    The schedule (`log_every`, `eval_every`, `checkpoint_every`) comes from the agent's config;
    `identity` defaults to `run_identity(agent, data, seed, phase)`.
    """

    def __init__(
        self,
        agent,
        data,
        *,
        phase: str,
        seed: int,
        steps: int,
        out_dir: Path,
        progress: bool = True,
        identity: dict[str, Any] | None = None,
        label: str | None = None,
    ) -> None:
        config = agent.config
        self.agent, self.phase, self.steps, self.out_dir = agent, phase, int(steps), Path(out_dir)
        self.label = label or f"{agent.name} {phase}"
        self.log_every, self.eval_every = config.log_every, config.eval_every
        self.checkpoint_every = config.checkpoint_every
        self.progress = progress
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.out_dir / CHECKPOINT_FILE
        self.identity = run_identity(agent, data, seed, phase) if identity is None else identity
        self.step, self.seconds_before, self.resumed_from = 0, 0.0, None
        self.last_eval: dict[str, float] = {}
        self._state: dict[str, Any] = {}
        self._started = time.perf_counter()

    # ------------------------------------------------------------------ resume
    def resume(self, state: dict[str, Any], *, resume: bool = True) -> bool:
        """Register the loop's `state` (what checkpoints capture) and, with ``resume=True`` and a
        checkpoint of this run in `out_dir`, restore it; True when resumed. A checkpoint of another
        run is refused (`UserError`)."""
        self._state = state
        if not (resume and self.checkpoint_path.exists()):
            return False
        saved = load_checkpoint(self.checkpoint_path, self.agent.device)
        differing = [key for key in self.identity if saved.get("identity", {}).get(key) != self.identity[key]]
        if differing:
            raise UserError(
                f"{self.checkpoint_path} belongs to a different run (it differs in {', '.join(differing)}); "
                "use another output directory, or start over with --fresh (Python: resume=False)"
            )
        if saved["step"] > self.steps:
            raise UserError(
                f"{self.checkpoint_path} is at step {saved['step']}, past the {self.steps} steps asked for"
            )
        restore(state, saved["state"])
        restore_global_random_states(saved["random"])
        self.step, self.seconds_before, self.last_eval = saved["step"], saved["seconds"], saved["last_eval"]
        self.resumed_from = self.step
        if self.progress:
            note(f"{self.label}: resumed from step {self.step} of {self.steps} (checkpoint {self.checkpoint_path})")
        return True

    def elapsed(self) -> float:
        """Training time in seconds, summed over resumed sessions."""
        return self.seconds_before + time.perf_counter() - self._started

    # ------------------------------------------------------------------ the loop
    def __enter__(self) -> TrainingRun:
        self._started = time.perf_counter()
        log_keys = self.agent.log_keys
        self.progress_log = CsvLog(
            self.out_dir / PROGRESS_FILE, [*PROGRESS_COLUMNS, *log_keys], self.resumed_from
        )
        self.eval_log = CsvLog(self.out_dir / EVAL_FILE, ["step", *EVAL_METRICS], self.resumed_from)
        self.board = _tensorboard(self.out_dir)
        self.bar = ProgressReporter(self.label, self.steps, completed=self.step, enabled=self.progress,
                                    elapsed_before=self.seconds_before)  # fmt: skip
        self.bar.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.bar.__exit__(*exc_info)
        self.progress_log.close()
        self.eval_log.close()
        if self.board is not None:
            self.board.close()

    def __iter__(self) -> Iterator[int]:
        """The steps still to run: from the checkpoint's step (or 0) + 1 to `steps`."""
        while self.step < self.steps:
            self.step += 1
            yield self.step

    def due(self, every: int, step: int) -> bool:
        return step % every == 0 or step == self.steps

    def end_step(
        self,
        step: int,
        *,
        row: dict[str, Any] | Callable[[], dict[str, Any]],
        evaluate: Callable[[], dict[str, float]] | None = None,
    ) -> None:
        """After a step's work: log `row` (a mapping, or a function giving it: called only when a row is
        due), run `evaluate` (when due and given), checkpoint (when due) and move the progress bar."""
        if self.due(self.log_every, step):
            logged = {"step": step, **(row() if callable(row) else row)}
            logged["seconds"] = round(self.elapsed(), 3)
            self.progress_log.write(logged)
            self._to_board(self.phase if self.phase != "fit" else "train", logged, step)
        if evaluate is not None and self.eval_every > 0 and self.due(self.eval_every, step):
            self.last_eval = evaluate()
            self.eval_log.write({"step": step, **self.last_eval})
            self._to_board("validation", self.last_eval, step)
            sharpe = self.last_eval.get("SR")
            if sharpe is not None:
                self.bar.update(label=f"{self.label} (validation SR {sharpe:.2f})")
        if self.due(self.checkpoint_every, step):
            self.checkpoint(step)
        self.bar.update(step)

    def checkpoint(self, step: int) -> None:
        payload = {
            "format": CHECKPOINT_FORMAT,
            "identity": self.identity,
            "step": step,
            "seconds": self.elapsed(),
            "last_eval": self.last_eval,
            "state": capture(self._state),
            "random": global_random_states(),
        }
        save_atomic(payload, self.checkpoint_path)

    def _to_board(self, prefix: str, row: dict[str, Any], step: int) -> None:
        if self.board is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, float | int):
                    self.board.add_scalar(f"{prefix}/{key}", value, step)

    # ------------------------------------------------------------------ result
    def summary(self, *, transitions: int, updates: int):
        from trustfolio.agents.base import TrainSummary

        return TrainSummary(
            agent=self.agent.name,
            phase=self.phase,
            steps=self.steps,
            transitions=transitions,
            updates=updates,
            seconds=self.elapsed(),
            resumed_from=self.resumed_from,
            last_eval=dict(self.last_eval),
            out_dir=self.out_dir,
        )


__all__ = [
    "CHECKPOINT_FILE",
    "EVAL_FILE",
    "EVAL_METRICS",
    "PHASE_IDS",
    "PROGRESS_FILE",
    "TrainingRun",
    "capture",
    "is_learned",
    "load_checkpoint",
    "restore",
    "run_identity",
    "save_atomic",
]
