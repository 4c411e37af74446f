"""MetaTrader's training loops (Algorithms 1 and 2) on subsets of the training data.

Setup, once per call: the frozen encoder of the training window (cached with the market states), the
subsets ``D_{m,n}`` cut and encoded (`trustfolio.agents.subsets.build_subsets`), and one replay
buffer per subset, filled by rolling uniform random orders along every slice once. Then each step:

1. rollouts: `num_envs` portfolios trade one day of their slices with the current (stochastic)
   policy; a finished slice is replaced by a new randomly drawn subset (partial-offline interaction:
   the buffers are refreshed as training goes);
2. `updates_per_step` outer steps, each from K subsets drawn uniformly and B transitions from each
   (Algorithm 2 draws two batches, ``B_tr`` and ``B_ts``, from the same subset).

Evaluation, logs, checkpoints and exact resume are the training harness's (`trustfolio.agents.harness`):
the agent, the per-subset replay and the random generator are what a checkpoint captures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trustfolio.agents.base import AgentData, TrainSummary
from trustfolio.agents.harness import PHASE_IDS, TrainingRun
from trustfolio.agents.off_policy import evaluate_agent, market_rows
from trustfolio.agents.subsets import SubsetReplay, SubsetSpec, build_subsets
from trustfolio.data.features import build_features
from trustfolio.encoders.market import pretrained_encoder
from trustfolio.market.transforms import TransformParams


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
    c = agent.config
    run = TrainingRun(agent, data, phase=phase, seed=seed, steps=steps, out_dir=out_dir, progress=progress)
    market = market_rows(data, agent.device)
    subsets = prepare_subsets(agent, data, phase, progress)
    replay = SubsetReplay(subsets, c.subset_buffer_size, sim=data.sim, reward_scale=c.reward_scale)
    rng = np.random.default_rng([seed, PHASE_IDS[phase], 7])
    validation_days = c.validation_days if phase == "fit" else 0
    if not run.resume({"agent": agent, "replay": replay, "rng": rng}, resume=resume):
        agent.generator.manual_seed(seed + PHASE_IDS[phase])
        _fill_every_subset(agent, replay)
        replay.start(_draw(rng, subsets.count, c.num_envs))
    window = list(agent.encoder_window) if agent.encoder_window else None
    agent.trained_with = {**agent.execution_facts(data), "encoder_window": window}
    validation = None
    if validation_days > 0:
        validation = lambda: evaluate_agent(agent, data, market, data.end - validation_days, data.end)  # noqa: E731
    K = min(c.subsets_per_step, subsets.count)
    losses: dict[str, torch.Tensor] = {}

    def progress_row() -> dict:  # a row of progress.csv (read when one is due)
        return {"transitions": run.step * c.num_envs, "updates": agent.updates, "episode_return": replay.last_return,
                **{key: float(value) for key, value in losses.items()}}  # fmt: skip

    with run:
        for step in run:
            action = agent.act(replay.observation(), deterministic=False)
            if replay.step(action):
                replay.start(_draw(rng, subsets.count, c.num_envs))
            for _ in range(c.updates_per_step):
                chosen = torch.from_numpy(rng.choice(subsets.count, size=K, replace=False))
                batch = replay.sample(chosen, c.batch_size, rng)
                outer = replay.sample(chosen, c.batch_size, rng) if phase == "finetune" else None
                losses = agent.update(batch, outer, phase=phase)
                agent.updates += 1
            run.end_step(step, row=progress_row, evaluate=validation)
    return run.summary(transitions=steps * c.num_envs, updates=agent.updates)


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
