"""Encoder cost on csi88: pretraining time, one day's encoder pass for 88 stocks, whole-timeline encoding.

For each encoder kind (default: the StockFormer release's architecture, then the light MLP):
1. gradient-step time of each branch at the chosen batch (median of `--probe-steps` timed steps);
2. a real pretraining run on the paper's training window (2011-01-17 → 2018-12-31) with a compute
   budget (`--budget`, an `EncoderConfig.preset`: `cpu` by default), wall time;
   and the release's full schedule (60 epochs, batches of 32 days, one pass over the training days
   per epoch, no early stop) extrapolated from the step times (cost is linear in sequences per step);
3. one daily decision's encoder pass: `encode_days` for one test day, 88 stocks, three branches
   (median of `--runs`, after warm-up);
4. whole-timeline encoding time, extrapolated from `--encode-days` days (light: measured in full);
5. how much the budgeted fit learned: MSE of the predicted 1-/5-day returns over 64 evenly spaced test
   days (2019-04-01 → 2022-03-25) relative to the zero predictor's (< 1 means better than zero).

    python -m benchmarks.bench_encoders [--data ../shared/data/csi88] [--threads 1] [--budget cpu] [--kinds stockformer light]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from trustfolio.data.features import build_features
from trustfolio.data.loaders import load_stockformer
from trustfolio.encoders import (
    BRANCHES,
    EncoderConfig,
    build_inputs,
    compute_states,
    encode_days,
    fit_encoder,
)
from trustfolio.encoders.pretrain import _Task, branch_days, build_encoder

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "csi88"
TRAIN = ("2011-01-17", "2018-12-31")
TEST = ("2019-04-01", "2022-03-25")  # last test day whose 5-day label is known in this copy
RELEASE_EPOCHS, RELEASE_BATCH = 60, 32


def step_seconds(inputs, config: EncoderConfig, branch: str, steps: int) -> float:
    """Median wall time of one gradient step of `branch` on `config.batch_size` random training days."""
    torch.manual_seed(0)
    model = build_encoder(config, n_stocks=inputs.N, n_temporal=inputs.temporal.shape[-1], n_indicators=8)
    tensors = {
        "temporal": torch.from_numpy(inputs.temporal),
        "relational": torch.from_numpy(inputs.relational),
        "labels": torch.from_numpy(inputs.labels / inputs.label_scale()),
    }
    task = _Task(branch, model, tensors, config)
    optimizer = torch.optim.Adam(task.module.parameters(), lr=config.lr)
    train_days, _ = branch_days(inputs, config, branch)
    generator = torch.Generator().manual_seed(0)
    times = []
    for k in range(steps + 1):
        days = train_days[torch.randint(len(train_days), (config.batch_size,), generator=generator).numpy()]
        start = time.perf_counter()
        loss = task.loss(days, generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if k:  # the first step warms up allocations
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_kind(inputs, config: EncoderConfig, args: argparse.Namespace) -> list[str]:
    lines = [f"### `{config.kind}`", ""]
    # 1. step times, and the release's schedule extrapolated
    release_seconds = 0.0
    step_rows = []
    for branch in BRANCHES:
        seconds = step_seconds(inputs, config, branch, args.probe_steps)
        train_days, _ = branch_days(inputs, config, branch)
        release_steps = RELEASE_EPOCHS * int(np.ceil(len(train_days) / RELEASE_BATCH))
        release_branch = seconds * (RELEASE_BATCH / config.batch_size) * release_steps
        release_seconds += release_branch
        step_rows.append(
            f"| {branch} | {seconds * 1000:,.0f} | {len(train_days)} | {release_branch / 3600:,.1f} |"
        )
    # 2. the budgeted fit
    start = time.perf_counter()
    fitted = fit_encoder(inputs, config, progress=False)
    fit_seconds = time.perf_counter() - start
    epochs = {branch: len(fitted.history[branch]) for branch in BRANCHES}
    # 3. one day's encoder pass
    t = int(np.searchsorted(inputs.dates, np.datetime64(TEST[1])))
    for _ in range(3):
        encode_days(fitted, inputs, np.array([t]))
    day_times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        encode_days(fitted, inputs, np.array([t]))
        day_times.append(time.perf_counter() - start)
    # 4. whole timeline
    n_days = inputs.T - (config.lookback - 1)
    if config.kind == "light":
        start = time.perf_counter()
        compute_states(fitted, inputs, progress=False)
        timeline_seconds, timeline_note = time.perf_counter() - start, "measured"
    else:
        days = np.arange(config.lookback - 1, config.lookback - 1 + args.encode_days)
        start = time.perf_counter()
        for chunk in np.array_split(days, max(1, len(days) // config.inference_batch_days)):
            encode_days(fitted, inputs, chunk)
        timeline_seconds = (time.perf_counter() - start) / len(days) * n_days
        timeline_note = f"extrapolated from {len(days)} days"
    # 5. what the budgeted fit learned, on sampled test days
    i0 = int(np.searchsorted(inputs.dates, np.datetime64(TEST[0])))
    sample = np.linspace(i0, t, 64).round().astype(int)
    _, long_term, short_term = encode_days(fitted, inputs, sample)
    ratios = {}
    for name, predicted, k in (("1-day", short_term, 0), ("5-day", long_term, 1)):
        truth = inputs.labels[sample, :, k]
        ratios[name] = float(np.mean((predicted - truth) ** 2) / np.mean(truth**2))

    lines += [
        f"Budget `{args.budget}`: batch {config.batch_size} days × 88 stocks, {config.steps_per_epoch or 'all'} steps/epoch, "
        f"≤ {config.max_epochs} epochs (patience {config.patience}), validation on "
        f"{config.validation_days or 'all'} days of the last 10 % of the window. Epochs run: "
        + ", ".join(f"{b} {n}" for b, n in epochs.items())
        + ".",
        "",
        "| branch | ms per gradient step | training days | release schedule (h, extrapolated) |",
        "|---|---:|---:|---:|",
        *step_rows,
        "",
        f"- budgeted pretraining (3 branches, incl. validation): **{fit_seconds:,.0f} s**",
        f"- release schedule, all branches (60 epochs × batches of 32 days, extrapolated): "
        f"**{release_seconds / 3600:,.1f} h**",
        f"- one daily encoder pass (88 stocks, 3 branches): **{statistics.median(day_times) * 1000:,.1f} ms** "
        f"(median of {args.runs}; min {min(day_times) * 1000:,.1f} ms)",
        f"- whole timeline ({n_days:,} days): {timeline_seconds:,.0f} s ({timeline_note})",
        f"- test-day MSE / zero-predictor MSE: 1-day {ratios['1-day']:.3f}, 5-day {ratios['5-day']:.3f}",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kinds", nargs="+", default=["stockformer", "light"])
    parser.add_argument("--budget", default="cpu", help="EncoderConfig.preset budget: quick, cpu or paper")
    parser.add_argument("--probe-steps", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--encode-days", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    panel = load_stockformer(args.data)
    features = build_features(panel, train_start=TRAIN[0], train_end=TRAIN[1])
    inputs = build_inputs(panel, features)
    lines = [
        f"Panel `{args.data.name}`: {panel.N} stocks, {panel.T} days; training window {TRAIN[0]} → {TRAIN[1]}; "
        f"torch {torch.__version__}, {args.threads} threads; {platform.processor() or platform.machine()}, "
        f"load average before {os.getloadavg()[0]:.1f}; {date.today()}.",
        "",
    ]
    for kind in args.kinds:
        lines += bench_kind(inputs, EncoderConfig.preset(args.budget, kind), args)
    lines.append(f"Load average after: {os.getloadavg()[0]:.1f}.")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
