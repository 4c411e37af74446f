"""MetaTrader's training loops (Algorithms 1 and 2) on subsets of the training data.

Setup, once per call: the frozen encoder of the training window (cached with the market states), the
subsets ``D_{m,n}`` cut and encoded (`trustfolio.agents.subsets.build_subsets`), and one replay
buffer per subset, filled by rolling uniform random orders along every slice once. Then each step:

1. rollouts: `num_envs` portfolios trade one day of their slices with the current (stochastic)
   policy; a finished slice is replaced by a new randomly drawn subset (partial-offline interaction:
   the buffers are refreshed as training goes);
2. `updates_per_step` outer steps, each from K subsets drawn uniformly and B transitions from each
   (Algorithm 2 draws two batches, ``B_tr`` and ``B_ts``, from the same subset).

Evaluation, logs and checkpoints work as in `trustfolio.agents.training` (same files, same exact
resume: learner, buffers, rollouts, random states and step in ``checkpoint.pt``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from trustfolio.agents.base import CHECKPOINT_FORMAT, AgentData, TrainSummary, save_atomic
from trustfolio.agents.subsets import SubsetReplay, SubsetSpec, build_subsets
from trustfolio.agents.training import (
    CHECKPOINT_FILE,
    _run_identity,
    _to_board,
    evaluate_agent,
    execution_facts,
    load_matching_checkpoint,
    open_logs,
    progress_bar,
    random_states,
    restore_random_states,
)
from trustfolio.data.features import build_features
from trustfolio.encoders.market import pretrained_encoder
from trustfolio.market.transforms import TransformParams

_PHASE_IDS = {"fit": 0, "finetune": 1}


def subset_spec(agent, data: AgentData, phase: str) -> SubsetSpec:
    """Which subsets a phase trains on: Algorithm 1 on the span minus the validation days, every
    configured transform; Algorithm 2 on the whole (finetuning) span, original data only unless
    ``finetune_transforms``; eq. 5's simulated next days in Algorithm 1 only."""
    c = agent.config
    fit = phase == "fit"
    transforms = c.transforms if (fit or c.finetune_transforms) else ()
    return SubsetSpec(
        first=data.start,
        last=data.end - (c.validation_days if fit else 0),
        count=c.slices if fit else c.finetune_slices,
        length=c.slice_length,
        transforms=transforms,
        alternatives=c.transforms if fit and c.outer_target == "worst-case" else (),
        params=TransformParams(alpha=c.transform_alpha, delta=c.transform_delta),
    )


def prepare_subsets(agent, data: AgentData, phase: str, progress: bool):
    """The encoder fitted on the agent's training window, and the phase's encoded subsets."""
    panel = data.panel
    start, end = agent.encoder_window or (panel.dates[data.start], panel.dates[data.end])
    features = build_features(panel, train_start=start, train_end=end)
    fitted, inputs = pretrained_encoder(panel, agent.config.encoder_config(), train_start=start, train_end=end,
                                        features=features, progress=progress)  # fmt: skip
    ohlcv = np.stack([panel.field(name).astype(np.float64) for name in ("open", "high", "low", "close",
                                                                        "volume")], axis=-1)  # fmt: skip
    spec = subset_spec(agent, data, phase)
    return build_subsets(spec, ohlcv, fitted, inputs, features, device=agent.device, progress=progress)


def train_bilevel(agent, data: AgentData, *, phase: str, steps: int, seed: int, out_dir: Path,
                  resume: bool = True, progress: bool = True) -> TrainSummary:  # fmt: skip
    c, device = agent.config, agent.device
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / CHECKPOINT_FILE
    identity = _run_identity(agent, data, seed, phase)
    market = torch.tensor(data.states.h.reshape(data.panel.T, -1), device=device)
    subsets = prepare_subsets(agent, data, phase, progress)
    replay = SubsetReplay(subsets, c.subset_buffer_size, sim=data.sim, reward_scale=c.reward_scale)
    rng = np.random.default_rng([seed, _PHASE_IDS[phase], 7])
    validation_days = c.validation_days if phase == "fit" else 0
    evaluating = c.eval_every > 0 and validation_days > 0
    first_eval_day = data.end - validation_days

    step, seconds_before, resumed_from, last_eval = 0, 0.0, None, {}
    if resume and checkpoint_path.exists():
        saved = load_matching_checkpoint(checkpoint_path, identity, device)
        agent.load_learner_state(saved["agent"])
        replay.load_state_dict(saved["replay"])
        restore_random_states(rng, saved["rng"])
        step, seconds_before, last_eval = saved["step"], saved["seconds"], saved["last_eval"]
        resumed_from = step
    else:
        agent.generator.manual_seed(seed + _PHASE_IDS[phase])
        _fill_every_subset(agent, replay)
        replay.start(_draw(rng, subsets.count, c.num_envs))
    window = list(agent.encoder_window) if agent.encoder_window else None
    agent.trained_with = {**execution_facts(data), "encoder_window": window}
    progress_log, eval_log, board = open_logs(out_dir, agent.log_keys, resumed_from)
    started, losses = time.perf_counter(), {}

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - started

    K = min(c.subsets_per_step, subsets.count)
    try:
        with progress_bar(disabled=not progress) as bar:
            task = bar.add_task(f"metatrader {phase}", total=steps, completed=step)
            while step < steps:
                step += 1
                action = agent.act(replay.observation(), deterministic=False)
                if replay.step(action):
                    replay.start(_draw(rng, subsets.count, c.num_envs))
                for _ in range(c.updates_per_step):
                    chosen = torch.from_numpy(rng.choice(subsets.count, size=K, replace=False))
                    batch = replay.sample(chosen, c.batch_size, rng)
                    outer = replay.sample(chosen, c.batch_size, rng) if phase == "finetune" else None
                    losses = agent.update(batch, outer, phase=phase)
                    agent.updates += 1
                if step % c.log_every == 0 or step == steps:
                    row = {"step": step, "transitions": step * c.num_envs, "updates": agent.updates,
                           "episode_return": replay.last_return, "seconds": round(elapsed(), 3),
                           **{key: float(value) for key, value in losses.items()}}  # fmt: skip
                    progress_log.write(row)
                    _to_board(board, phase, row, step)
                if evaluating and (step % c.eval_every == 0 or step == steps):
                    last_eval = evaluate_agent(agent, data, market, first_eval_day, data.end)
                    eval_log.write({"step": step, **last_eval})
                    _to_board(board, "validation", last_eval, step)
                    bar.update(task, description=f"metatrader {phase} (validation SR {last_eval['SR']:.2f})")
                if step % c.checkpoint_every == 0 or step == steps:
                    state = {
                        "format": CHECKPOINT_FORMAT,
                        "identity": identity,
                        "step": step,
                        "seconds": elapsed(),
                        "last_eval": last_eval,
                        "agent": agent.learner_state(),
                        "replay": replay.state_dict(),
                        "rng": random_states(rng),
                    }
                    save_atomic(state, checkpoint_path)
                bar.update(task, completed=step)
    finally:
        progress_log.close()
        eval_log.close()
        if board is not None:
            board.close()
    return TrainSummary(agent=agent.name, phase=phase, steps=steps, transitions=steps * c.num_envs,
                        updates=agent.updates, seconds=elapsed(), resumed_from=resumed_from,
                        last_eval=dict(last_eval), out_dir=out_dir)  # fmt: skip


def _draw(rng: np.random.Generator, count: int, size: int) -> torch.Tensor:
    """`size` subsets for new rollouts, uniformly with replacement."""
    return torch.from_numpy(rng.integers(0, count, size=size))


@torch.no_grad()
def _fill_every_subset(agent, replay: SubsetReplay) -> None:
    """Roll uniform random orders along every slice once, so every subset's buffer holds transitions."""
    replay.start(torch.arange(replay.market.count))
    done = False
    while not done:
        action = torch.rand(replay.market.count, agent.n_stocks, generator=agent.generator) * 2 - 1
        done = replay.step(action.to(agent.device))


__all__ = ["prepare_subsets", "subset_spec", "train_bilevel"]
