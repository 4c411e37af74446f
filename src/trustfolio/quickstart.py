"""The main job (`trustfolio run`): classic portfolios on a held-out test period, with a report.

Load a dataset, clean it with coverage decided on the training window only, backtest every classic
strategy over the test window with and without costs, and write a run directory:

    runs/<name>/metrics.json    {"strategies": {name: {"CR":…, "AR":…, "SR":…, "MDD":…, …}}, …}
    runs/<name>/daily.parquet   one row per (date, strategy): value, return (with costs)
    runs/<name>/report.html     metrics tables, cumulative-return and drawdown plots (+ the PNGs)

The directory is built under a temporary name and renamed at the end, so a failed run leaves nothing.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from trustfolio.data.cleaning import CleaningReport, clean
from trustfolio.data.loaders import load_dataset
from trustfolio.data.panel import Panel, to_day
from trustfolio.errors import UserError
from trustfolio.evaluation.backtest import backtest
from trustfolio.evaluation.report import write_report
from trustfolio.evaluation.result import BacktestResult
from trustfolio.strategies import make_strategy

CLASSIC_STRATEGIES = ("market", "equal-weight", "buy-and-hold", "min-variance", "max-sharpe", "momentum")

# The embedded default's split: strategies only ever look back, so "training" here is the window on
# which stock coverage is judged (and, in later issues, on which agents are fitted).
DEFAULT_SPLITS = {"sp500": ("2010-01-01", "2019-12-31", "2020-01-01", "2022-12-28")}


@dataclass(frozen=True)
class Split:
    """Training and test windows (inclusive dates)."""

    train_start: np.datetime64
    train_end: np.datetime64
    test_start: np.datetime64
    test_end: np.datetime64

    def __post_init__(self) -> None:
        if self.train_start > self.train_end:
            raise UserError(f"inverted training range {self.train_start} → {self.train_end}")
        if self.test_start > self.test_end:
            raise UserError(f"inverted test range {self.test_start} → {self.test_end}")
        if self.train_end >= self.test_start:
            raise UserError(
                f"the training window must end before the test window starts "
                f"(train end {self.train_end}, test start {self.test_start})"
            )


def default_split(dataset: str, panel: Panel, test_start=None, test_end=None) -> Split:
    """The dataset's standard split; otherwise the last three years are the test window.

    Explicit `test_start`/`test_end` override the test window; training then ends the trading day
    before the test starts.
    """
    if dataset in DEFAULT_SPLITS and test_start is None and test_end is None:
        return Split(*(to_day(d) for d in DEFAULT_SPLITS[dataset]))
    year = panel.calendar.trading_days_per_year
    if test_start is None:
        test_days = min(3 * year, panel.T // 3)
        test_start = panel.dates[panel.T - test_days]
    start_index = panel.index_of(test_start, "left")
    if start_index == 0:
        raise UserError(f"test start {to_day(test_start)} leaves no training days before it")
    end = panel.end if test_end is None else to_day(test_end)
    return Split(panel.start, panel.dates[start_index - 1], panel.dates[start_index], end)


@dataclass
class RunSummary:
    """What `run_classic` produced: where, the tables, and what cleaning did."""

    run_dir: Path
    metrics: dict[str, dict[str, float]]
    metrics_no_costs: dict[str, dict[str, float]]
    cleaning: CleaningReport
    split: Split
    results: dict[str, BacktestResult] = field(repr=False, default_factory=dict)


def run_classic(
    dataset: str = "sp500",
    *,
    strategies: Sequence[str] = CLASSIC_STRATEGIES,
    test_start=None,
    test_end=None,
    cost_bps: float = 10.0,
    out_root: Path | str = "runs",
    name: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> RunSummary:
    """Backtest `strategies` on `dataset` over its test window and write `out_root/name`."""
    say = progress or (lambda _message: None)
    out_root = Path(out_root)
    name = name or f"{dataset.split(':')[0]}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = out_root / name
    if run_dir.exists():
        raise UserError(f"run directory {run_dir} already exists; pass another --name or remove it")
    strategy_objects = {s: make_strategy(s) for s in strategies}  # unknown names fail before work

    say(f"loading {dataset}")
    raw = load_dataset(dataset)
    split = default_split(dataset, raw, test_start, test_end)
    panel, cleaning = clean(raw.slice(None, split.test_end), train_start=split.train_start, train_end=split.train_end)

    results: dict[str, BacktestResult] = {}
    results_no_costs: dict[str, BacktestResult] = {}
    for label, strategy in strategy_objects.items():
        say(f"backtesting {label}")
        results[label] = backtest(strategy, panel, split.test_start, split.test_end, cost_bps=cost_bps)
        results_no_costs[label] = backtest(strategy, panel, split.test_start, split.test_end, cost_bps=0.0)
    metrics = {label: _plain(r.metrics()) for label, r in results.items()}
    metrics_no_costs = {label: _plain(r.metrics()) for label, r in results_no_costs.items()}

    daily = pd.concat(
        [
            pd.DataFrame({"date": r.dates, "strategy": label, "value": r.values, "return": r.returns})
            for label, r in results.items()
        ],
        ignore_index=True,
    )
    period = f"{split.test_start} → {split.test_end} ({len(next(iter(results.values())).dates)} trading days)"
    facts = [
        ("dataset", f"{dataset}: {panel.N} stocks, {panel.calendar.currency}, lot {panel.calendar.lot_size}"),
        ("training window", f"{split.train_start} → {split.train_end} (coverage judged here)"),
        ("test window", period),
        ("costs", f"{cost_bps:g} bps per side (second table: no costs)"),
        ("execution", "orders decided at the close of day t fill at that close; lots rounded"),
        ("benchmark", panel.benchmark_name or "none: market = equal-weight buy-and-hold proxy"),
        ("cleaning", cleaning.summary()),
    ]

    out_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=out_root))
    try:
        document = {
            "strategies": metrics,
            "strategies_no_costs": metrics_no_costs,
            "dataset": dataset,
            "split": {k: str(v) for k, v in vars(split).items()},
            "cost_bps": cost_bps,
            "cleaning": cleaning.to_dict(),
        }
        (staging / "metrics.json").write_text(json.dumps(document, indent=2))
        daily.to_parquet(staging / "daily.parquet", index=False)
        say("writing report")
        write_report(
            metrics,
            daily,
            staging,
            title=f"trustfolio — classic portfolios on {dataset}",
            facts=facts,
            extra_tables={"Without costs": metrics_no_costs},
        )
        staging.rename(run_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return RunSummary(run_dir, metrics, metrics_no_costs, cleaning, split, results)


def _plain(metrics: dict) -> dict[str, float]:
    """JSON-ready floats (numpy scalars become Python floats)."""
    return {k: float(v) for k, v in metrics.items()}
