"""The main job (`trustfolio run`): an experiment file run end to end, with the tables and a report.

By default it runs the packaged `experiments/quickstart.yaml` (embedded S&P 500 data, the classic
strategies, 3 seeds, costs at 1×/3×/5×) with the resumable runner, then writes into the run directory:

    metrics.json    the one metrics file (`trustfolio.evaluation.result.write_metrics`): "start" and
                    "end" of the test record, "cost_bps" (costs ×1), "strategies": {method: {"CR":…,
                    "AR":…, "SR":…, "MDD":…, …}} (mean over seeds of each seed's own metrics);
                    `strategies_std` has the standard deviations, `n_seeds` the counts (1: a
                    deterministic method, run once), `ensembles` names the strategies whose
                    daily.parquet `return`/`value` average several seeds, `notes` says all this
    daily.parquet   one row per (date, strategy) at costs ×1: `return` (the mean across the
                    strategy's seeds of their daily returns: with several seeds an ensemble of
                    them, not a deployable agent), `value` (the growth of one unit of capital
                    under those mean returns), `n_seeds` (how many seeds `return` averages) and
                    `return_seed<k>` (seed k's own daily returns; NaN for a seed the strategy did
                    not run, e.g. deterministic methods run seed 0 only). Every return is NaN on
                    the first day, which has none.
    report.html     the experiment report (`report.md` and the PNG plots beside it)

Rerunning the same command skips every finished job, so it only rebuilds the tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trustfolio.evaluation.comparison import Comparison
from trustfolio.evaluation.experiment_report import build_report
from trustfolio.evaluation.result import write_metrics
from trustfolio.evaluation.significance import ensemble_label
from trustfolio.experiment import Experiment
from trustfolio.files import write_atomic
from trustfolio.rundir import inside, safe_name
from trustfolio.runner import ExperimentSummary, quickstart_experiment_path, run_experiment


@dataclass
class MainJobResult:
    summary: ExperimentSummary
    comparison: Comparison
    run_dir: Path
    report: Path


def run_main_job(
    experiment_path: Path | str | None = None,
    *,
    out_root: Path | str = "runs",
    name: str | None = None,
    workers: int | None = None,
    backend: str = "local",
    address: str | None = None,
    progress: bool = True,
) -> MainJobResult:
    """Run an experiment file (default: the packaged quickstart) into `out_root/<name>`, then tables
    and report. `name` defaults to the experiment's own name."""
    path = Path(experiment_path) if experiment_path is not None else quickstart_experiment_path()
    experiment = Experiment.from_yaml(path)
    run_dir = inside(out_root, safe_name(name, "--name") if name is not None else experiment.name)
    summary = run_experiment(
        experiment, run_dir, workers=workers, backend=backend, address=address, progress=progress
    )
    comparison = Comparison.from_run_dir(run_dir)
    write_tables(comparison, run_dir)
    report = build_report(run_dir)
    return MainJobResult(summary, comparison, run_dir, report)


def write_tables(comparison: Comparison, run_dir: Path) -> None:
    """`metrics.json` and `daily.parquet` of the run (costs ×1), written atomically."""
    summary = comparison.summary(1.0)
    metric_names = [c[: -len("_mean")] for c in summary.columns if c.endswith("_mean")]

    def values(method: str, suffix: str) -> dict[str, float | None]:
        row = summary.loc[method]
        return {m: _number(row[f"{m}{suffix}"]) for m in metric_names}

    nominal = [j.result for j in comparison.jobs if math.isclose(j.cost_multiple, 1.0)]
    costs = {r.config.get("cost_bps") for r in nominal}
    write_metrics(
        run_dir,
        start=min(r.dates[0] for r in nominal),
        end=max(r.dates[-1] for r in nominal),
        cost_bps=costs.pop() if len(costs) == 1 else None,
        strategies={method: values(method, "_mean") for method in summary.index},
        strategies_std={method: values(method, "_std") for method in summary.index},
        n_seeds={method: int(summary.loc[method, "n"]) for method in summary.index},
        ensembles={
            method: ensemble_label(int(summary.loc[method, "n"]))
            for method in summary.index
            if summary.loc[method, "n"] > 1
        },
        notes={
            "strategies": "mean over seeds of each seed's own metrics (not the metrics of a mean across "
            "seeds); strategies_std: their standard deviation across seeds",
            "daily.parquet": "return and value: the mean across a strategy's seeds of their daily returns "
            "and its growth; for the strategies in `ensembles` an ensemble of the seeds, not a "
            "deployable agent; return_seed<k>: seed k's own returns",
        },
        cost_multiple=1.0,
        missing=dict(comparison.missing),
    )

    frames = []
    chains = comparison.chains(1.0)
    seeds = sorted({seed for by_seed in chains.values() for seed in by_seed})
    for method, mean_returns in comparison.daily_returns(1.0).items():
        # `daily_returns` leaves out the chain's first day (capital invested, no return yet); the
        # table keeps that day, with NaN returns, as the starting point of `value`.
        by_seed = chains[method]
        dates = next(iter(by_seed.values())).dates
        mean = mean_returns.to_numpy(dtype=np.float64)
        columns = {
            "date": pd.DatetimeIndex(dates),
            "strategy": method,
            "value": np.concatenate([[1.0], np.cumprod(1.0 + mean)]),  # growth of one unit of capital
            "return": np.r_[np.nan, mean],
            "n_seeds": len(by_seed),  # more than 1: `return` and `value` are an ensemble of the seeds
        }
        for seed in seeds:
            own = by_seed[seed].returns[1:] if seed in by_seed else np.full(len(mean), np.nan)
            columns[f"return_seed{seed}"] = np.r_[np.nan, own]
        frames.append(pd.DataFrame(columns))
    columns = ["date", "strategy", "value", "return", "n_seeds", *(f"return_seed{seed}" for seed in seeds)]
    daily = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)
    write_atomic(run_dir / "daily.parquet", lambda path: daily.to_parquet(path, index=False))


def _number(value) -> float | None:
    return None if value is None or pd.isna(value) else float(value)
