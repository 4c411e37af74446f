"""`BacktestResult`: the daily record of one backtest, with its metrics, plots and storage.

In the spirit of skfolio's `Portfolio`: a rich object whose metrics are properties, with
`summary()` and `plot_*()` methods. Row ``i`` of every daily array is the close of ``dates[i]``:

- ``values[i]``   portfolio value (``values[0]`` is the initial capital, before any trade);
- ``returns[i]``  ``values[i] / values[i-1] - 1`` (0 on the first day);
- ``weights[i]``  fraction of the value held in each stock at that close (NaN for an index result,
  which holds no stock of the panel);
- ``turnover[i]`` one-sided turnover of the trades decided at that close: (buys + sells) / 2 / value
  before the trade;
- ``costs[i]``    transaction costs of those trades, in currency;
- ``cash_share[i]`` cash / value at that close, i.e. ``1 - sum(weights[i])`` (0 for an index
  result, which is fully invested); derived from the weights, so saved results need no extra column.

These attributes are numpy arrays (what metrics, statistics and the runner compute on). For pandas,
the same data comes date-indexed: `values_series`, `returns_series` (from the second day: the first
has no return), `weights_frame` (one column per ticker), `cash_series`, and `to_frame()` (every
daily column). Why beside the arrays and not instead of them: ``result.values[-1]`` and
``result.weights[20:, k]`` are positional numpy indexing all through the package, its tests and
users' code, and on a date-indexed pandas object both raise `KeyError` (pandas 3 has no positional
fallback); skfolio, the model for this class, likewise keeps ``Portfolio.returns`` an
array beside ``returns_df``.

Saved as ``daily.parquet`` (``date, value, return, costs, turnover, w_<ticker>…``) plus
``metrics.json`` (`write_metrics`, with one strategy and a ``backtest`` section holding ``label,
tickers, trading_days_per_year, config``). In the file the
first day's ``return`` is NaN, not 0: that day has no return (the capital is only invested), and
tools that read the column (quantstats, empyrical, pandas) skip NaN but would count a 0 as a flat day
and shift the mean, Sharpe ratio and volatility. In memory ``returns[0]`` stays 0 so that
``values[0] * cumprod(1 + returns)`` is the value series.

**The metrics file.** One file name and one schema for "the metrics of one or more strategies on one
test period", whoever writes it — `BacktestResult.save` (``trustfolio backtest --out``, every job of
an experiment run, a training run's ``backtest/``), `evaluate_run` (``trustfolio evaluate``) and the
run-level tables of ``trustfolio run``::

    metrics.json = {"schema": "trustfolio.metrics/1",
                    "start": "YYYY-MM-DD", "end": "YYYY-MM-DD",   first and last test day
                    "cost_bps": 10.0,                              per side (null: unknown)
                    "strategies": {name: {"CR": …, "AR": …, "SR": …, "MDD": …, …}},
                    …optional sections: "backtest" (one result: what `load` needs), "strategies_no_costs",
                    "overestimation", "strategies_std", "n_seeds", "cost_multiple", "missing", "agent", …}

NaN is stored as null. `write_metrics` writes it (atomically), `read_metrics` reads and checks it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from trustfolio.errors import DataError
from trustfolio.evaluation.metrics import (
    METRIC_NAMES,
    SHARPE_DAYS_PER_YEAR,
    compute_metrics,
    drawdown_series,
)
from trustfolio.files import write_atomic

DAILY_FILE = "daily.parquet"
METRICS_FILE = "metrics.json"
METRICS_SCHEMA = "trustfolio.metrics/1"
METRICS_KEYS = ("schema", "start", "end", "cost_bps", "strategies")  # every metrics file has these
LEGACY_RESULT_FILE = "result.json"  # what `save` wrote before metrics.json; `load` still reads it
WEIGHT_PREFIX = "w_"


@dataclass(eq=False)
class BacktestResult:
    """Daily record of one backtest (see the module docstring for what each row means)."""

    name: str  # strategy name, a stable key (e.g. "market", "equal-weight")
    dates: np.ndarray  # datetime64[D][T']
    values: np.ndarray  # float64[T']
    returns: np.ndarray  # float64[T'], 0 on the first day
    weights: np.ndarray  # float64[T', N]
    turnover: np.ndarray  # float64[T']
    costs: np.ndarray  # float64[T'], currency
    tickers: tuple[str, ...]
    trading_days_per_year: int
    config: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # what a person reads, e.g. "market (S&P 500 index)"; defaults to name
    cash_share: np.ndarray | None = None  # float64[T']; default: 1 - the weights' sum (see above)

    def __post_init__(self) -> None:
        self.dates = np.asarray(self.dates).astype("datetime64[D]")
        self.tickers = tuple(self.tickers)
        # C order always: a sum over a row then adds in the same order for a fresh result and for one
        # loaded from Parquet (which comes back column-major), so their metrics agree to the last bit.
        for name in ("values", "returns", "turnover", "costs", "weights"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        if self.label is None:
            self.label = self.name
        if self.cash_share is None:
            invested = self.weights.sum(axis=1)
            # NaN weights: an index, which holds no stock of the panel and no cash either.
            self.cash_share = np.where(np.isnan(invested), 0.0, np.clip(1.0 - invested, 0.0, 1.0))
        self.cash_share = np.asarray(self.cash_share, dtype=np.float64)
        T = len(self.dates)
        if self.weights.shape != (T, len(self.tickers)):
            raise ValueError(f"weights have shape {self.weights.shape}, expected {(T, len(self.tickers))}")
        for name in ("values", "returns", "turnover", "costs", "cash_share"):
            if getattr(self, name).shape != (T,):
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {(T,)}")

    # ------------------------------------------------------------------ metrics
    def metrics(self, *, sharpe_days_per_year: int | None = SHARPE_DAYS_PER_YEAR) -> dict[str, float]:
        """CR, AR, SR, MDD, volatility, sortino, calmar, turnover, total_costs, idle_cash
        (`evaluation.metrics`).

        SR, volatility and Sortino are annualized by sqrt(252) as in the paper's code; pass
        ``sharpe_days_per_year=None`` to use the calendar's trading days per year instead.
        """
        return compute_metrics(
            self.values,
            self.trading_days_per_year,
            self.turnover,
            self.costs,
            cash_share=self.cash_share,
            sharpe_days_per_year=sharpe_days_per_year,
        )

    @property
    def CR(self) -> float:  # noqa: N802 - the paper's names
        return self.metrics()["CR"]

    @property
    def AR(self) -> float:  # noqa: N802
        return self.metrics()["AR"]

    @property
    def SR(self) -> float:  # noqa: N802
        return self.metrics()["SR"]

    @property
    def MDD(self) -> float:  # noqa: N802
        return self.metrics()["MDD"]

    @property
    def total_costs(self) -> float:
        return self.metrics()["total_costs"]

    def summary(self) -> pd.Series:
        """The metrics as a `pd.Series` named by the label (one column of a comparison table)."""
        return pd.Series(self.metrics(), name=self.label)[list(METRIC_NAMES)]

    def __repr__(self) -> str:
        m = self.metrics()
        return (
            f"BacktestResult({self.label!r}, {len(self.dates)} days {self.dates[0]}→{self.dates[-1]}, "
            f"CR {m['CR']:+.3f}, SR {m['SR']:.2f}, MDD {m['MDD']:.3f})"
        )

    # ------------------------------------------------------------------ plots
    def plot_cumulative(self, ax=None):
        """Plot the cumulative return ``V_t / V_0 - 1``; returns the matplotlib axes."""
        ax = _axes(ax)
        ax.plot(self.dates, self.values / self.values[0] - 1.0, label=self.label)
        ax.set_ylabel("cumulative return")
        ax.legend()
        return ax

    def plot_drawdown(self, ax=None):
        """Plot the drawdown below the running peak (as a negative fraction); returns the axes."""
        ax = _axes(ax)
        ax.fill_between(self.dates, -drawdown_series(self.values), 0.0, alpha=0.4, label=self.label)
        ax.set_ylabel("drawdown")
        ax.legend()
        return ax

    # ------------------------------------------------------------------ pandas
    @property
    def index(self) -> pd.DatetimeIndex:
        """The test days as a `pd.DatetimeIndex` named ``date``."""
        return pd.DatetimeIndex(self.dates, name="date")

    @property
    def values_series(self) -> pd.Series:
        """Portfolio value at each close (the first day: the initial capital), date-indexed."""
        return pd.Series(self.values, index=self.index, name=self.label)

    @property
    def returns_series(self) -> pd.Series:
        """Daily returns from the second day on (the first day has none), date-indexed: what
        quantstats, empyrical or skfolio take as a strategy's returns."""
        return pd.Series(self.returns[1:], index=self.index[1:], name=self.label)

    @property
    def weights_frame(self) -> pd.DataFrame:
        """Weight of each stock at each close: dates × tickers (the rest is cash, `cash_series`)."""
        return pd.DataFrame(self.weights, index=self.index, columns=pd.Index(self.tickers, name="ticker"))

    @property
    def cash_series(self) -> pd.Series:
        """Share of the value held in cash at each close, date-indexed."""
        return pd.Series(self.cash_share, index=self.index, name="cash")

    # ------------------------------------------------------------------ storage
    def to_frame(self) -> pd.DataFrame:
        """The daily table that `save` writes: date, value, return (NaN on the first day, which has
        no return), costs, turnover, w_<ticker>…"""
        frame = pd.DataFrame(
            {
                "date": self.dates,
                "value": self.values,
                "return": np.r_[np.nan, self.returns[1:]],
                "costs": self.costs,
                "turnover": self.turnover,
            }
        )
        weights = pd.DataFrame(self.weights, columns=[WEIGHT_PREFIX + t for t in self.tickers])
        return pd.concat([frame, weights], axis=1)

    def save(self, directory: str | Path) -> Path:
        """Write ``daily.parquet`` and ``metrics.json`` (this one strategy) into `directory`.

        Each file is written to a temporary name and renamed, so a crash never leaves a half file.
        """
        directory = Path(directory)
        write_atomic(directory / DAILY_FILE, lambda path: self.to_frame().to_parquet(path, index=False))
        meta = {
            "label": self.label,
            "tickers": list(self.tickers),
            "trading_days_per_year": self.trading_days_per_year,
            "config": self.config,
        }
        write_metrics(
            directory,
            start=self.dates[0],
            end=self.dates[-1],
            cost_bps=self.config.get("cost_bps"),
            strategies={self.name: self.metrics()},
            backtest=meta,
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> BacktestResult:
        """Read a result written by `save` (or by a version that wrote ``result.json``)."""
        directory = Path(directory)
        try:
            if not (directory / METRICS_FILE).exists() and (directory / LEGACY_RESULT_FILE).exists():
                meta = json.loads((directory / LEGACY_RESULT_FILE).read_text())
            else:
                document = read_metrics(directory)
                if "backtest" not in document or len(document["strategies"]) != 1:
                    raise DataError("its metrics.json holds no single backtest")
                meta = {**document["backtest"], "name": next(iter(document["strategies"]))}
            frame = pd.read_parquet(directory / DAILY_FILE)
        except (OSError, ValueError, DataError) as exc:
            raise DataError(f"{directory}: not a saved backtest result ({exc})") from exc
        tickers = tuple(meta["tickers"])
        return cls(
            name=meta["name"],
            label=meta["label"],
            dates=frame["date"].to_numpy().astype("datetime64[D]"),
            values=frame["value"].to_numpy(),
            returns=np.nan_to_num(frame["return"].to_numpy(), nan=0.0),  # day 0: see the module docstring
            costs=frame["costs"].to_numpy(),
            turnover=frame["turnover"].to_numpy(),
            weights=frame[[WEIGHT_PREFIX + t for t in tickers]].to_numpy(),
            tickers=tickers,
            trading_days_per_year=int(meta["trading_days_per_year"]),
            config=meta["config"],
        )


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(9, 4))
    return ax


# ---------------------------------------------------------------------------------------- metrics.json
def write_metrics(
    directory: str | Path,
    *,
    start: Any,
    end: Any,
    cost_bps: float | None,
    strategies: dict[str, dict[str, float]],
    **sections: Any,
) -> dict[str, Any]:
    """Write ``directory/metrics.json`` (the module docstring's schema) atomically; returns what it
    wrote (NaN as None). `sections` are the optional parts, e.g. ``strategies_no_costs={...}``."""
    clash = [key for key in sections if key in METRICS_KEYS]
    if clash:
        raise ValueError(f"metrics.json: {clash[0]!r} is a required key, not a section")
    document = _plain(
        {
            "schema": METRICS_SCHEMA,
            "start": str(np.datetime64(start, "D")),
            "end": str(np.datetime64(end, "D")),
            "cost_bps": None if cost_bps is None else float(cost_bps),
            "strategies": strategies,
            **sections,
        }
    )
    write_atomic(Path(directory) / METRICS_FILE, json.dumps(document, indent=2, allow_nan=False))
    return document


def read_metrics(path: str | Path) -> dict[str, Any]:
    """A metrics file (`path`, or ``path/metrics.json`` for a directory), checked against the schema;
    `DataError` (naming the file) when it is not one."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read a metrics file ({exc})") from exc
    if not isinstance(document, dict) or document.get("schema") != METRICS_SCHEMA:
        found = document.get("schema") if isinstance(document, dict) else None
        raise DataError(f"{path}: not a {METRICS_SCHEMA} file (schema {found!r}); rewrite it with this version")
    missing = [key for key in METRICS_KEYS if key not in document]
    strategies = document.get("strategies")
    if missing or not isinstance(strategies, dict) or not all(isinstance(v, dict) for v in strategies.values()):
        what = f"no {missing[0]!r}" if missing else "'strategies' is not {name: {metric: value}}"
        raise DataError(f"{path}: a broken metrics file ({what})")
    return document


def _plain(value: Any) -> Any:
    """`value` as plain JSON: NaN and infinities as null, numpy scalars as numbers, dates as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)
