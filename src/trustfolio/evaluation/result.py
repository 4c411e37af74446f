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

Saved as ``daily.parquet`` (``date, value, return, costs, turnover, w_<ticker>…``) plus
``result.json`` (``name, label, tickers, trading_days_per_year, config, metrics``). In the file the
first day's ``return`` is NaN, not 0: that day has no return (the capital is only invested), and
tools that read the column (quantstats, empyrical, pandas) skip NaN but would count a 0 as a flat day
and shift the mean, Sharpe ratio and volatility. In memory ``returns[0]`` stays 0 so that
``values[0] * cumprod(1 + returns)`` is the value series.
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
RESULT_FILE = "result.json"
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
        """Write ``daily.parquet`` and ``result.json`` into `directory` (created if needed).

        Each file is written to a temporary name and renamed, so a crash never leaves a half file.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "name": self.name,
            "label": self.label,
            "tickers": list(self.tickers),
            "trading_days_per_year": self.trading_days_per_year,
            "config": self.config,
            "metrics": {k: _json_number(v) for k, v in self.metrics().items()},
        }
        write_atomic(directory / DAILY_FILE, lambda path: self.to_frame().to_parquet(path, index=False))
        text = json.dumps(meta, indent=2, default=str, allow_nan=False)
        write_atomic(directory / RESULT_FILE, text)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> BacktestResult:
        """Read a result written by `save`."""
        directory = Path(directory)
        try:
            meta = json.loads((directory / RESULT_FILE).read_text())
            frame = pd.read_parquet(directory / DAILY_FILE)
        except (OSError, ValueError) as exc:
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


def _json_number(x: float) -> float | None:
    """NaN is not JSON: store it as null."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
