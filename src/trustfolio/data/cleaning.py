"""Cleaning: from a loader's panel (NaN = not traded) to the NaN-free panel the simulator needs.

Three rules, in this order (the MetaTrader paper's S2 filter plus a causal fill):

1. A stock without a price on the panel's first day (listed later) is dropped: filling its first
   days would need its future prices.
2. A stock traded on fewer than `min_coverage` of the *training* days is dropped. Only the
   training window decides, so the stock universe never depends on test-period data.
3. A remaining suspended day is filled causally: `close[t] = close[t-1] * (1 + r[t])`, where `r[t]`
   is the benchmark's daily change, else the equal-weight average change of the kept stocks traded
   on both t-1 and t (0 when there are none). Open/high/low of a filled day equal its close and
   volume is 0. A run of more than `max_gap` consecutive missing days is an error, not a fill.

Everything day t of the result holds is computed from days <= t of the input.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from trustfolio.data.panel import Panel
from trustfolio.errors import DataError, UserError

DEFAULT_MAX_GAP = 20  # about a trading month: longer suspensions are events, not noise to paper over


@dataclass(frozen=True)
class CleaningReport:
    """What `clean` did: which stocks it dropped (and why) and how many days it filled."""

    name: str
    days: int
    train_start: str
    train_end: str
    min_coverage: float
    max_gap: int
    kept: tuple[str, ...]
    dropped: dict[str, str]  # ticker -> reason
    filled: dict[str, int]  # ticker -> suspended days filled (only tickers with at least one)
    completed: dict[str, int]  # ticker -> days with a close but no open/high/low (set to the close)
    fill_source: str  # what the daily change rate of a filled day came from
    benchmark_filled: int  # days the benchmark level was carried forward

    def summary(self) -> str:
        """One readable paragraph."""
        total = len(self.kept) + len(self.dropped)
        text = (
            f"{self.name}: {self.days} days; coverage measured on {self.train_start} → {self.train_end} "
            f"(threshold {self.min_coverage:.0%}). Kept {len(self.kept)} of {total} stocks"
        )
        if self.dropped:
            reasons = "; ".join(f"{t} ({why})" for t, why in list(self.dropped.items())[:10])
            more = f"; and {len(self.dropped) - 10} more" if len(self.dropped) > 10 else ""
            text += f", dropped {len(self.dropped)}: {reasons}{more}."
        else:
            text += ", dropped none."
        cells = sum(self.filled.values())
        if cells:
            worst = sorted(self.filled.items(), key=lambda kv: -kv[1])[:10]
            text += (
                f" Filled {cells} suspended stock-days in {len(self.filled)} stocks "
                f"({', '.join(f'{t} {n}' for t, n in worst)}{', …' if len(self.filled) > 10 else ''}) "
                f"with the daily change of the {self.fill_source}."
            )
        else:
            text += " No suspended days to fill."
        if self.completed:
            text += f" Set missing open/high/low to the close on {sum(self.completed.values())} stock-days."
        if self.benchmark_filled:
            text += f" Carried the benchmark forward on {self.benchmark_filled} days."
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["kept"] = list(self.kept)
        return out


def clean(
    panel: Panel,
    *,
    train_start: Any = None,
    train_end: Any = None,
    min_coverage: float = 0.98,
    max_gap: int = DEFAULT_MAX_GAP,
) -> tuple[Panel, CleaningReport]:
    """A NaN-free copy of `panel` (`is_clean`) and a report of what was dropped and filled.

    `train_start`/`train_end` (default: the whole panel) bound the days on which coverage is
    measured. Raises `DataError` when a kept stock has a run of more than `max_gap` consecutive
    days without a close, or when no stock is left.
    """
    if not 0.0 <= min_coverage <= 1.0:
        raise UserError(f"min_coverage must be between 0 and 1, not {min_coverage}")
    if int(max_gap) != max_gap or max_gap < 0:
        raise UserError(f"max_gap must be a whole number of days >= 0, not {max_gap}")
    t0, t1 = panel.span(train_start, train_end)  # UserError on empty or inverted ranges

    traded = np.isfinite(panel.close)
    coverage = traded[t0:t1].mean(axis=0)
    dropped: dict[str, str] = {}
    for j, ticker in enumerate(panel.tickers):
        if not traded[0, j]:
            first = np.flatnonzero(traded[:, j])
            dropped[ticker] = (
                f"listed after the panel start, first price on {panel.dates[first[0]]}: back-filling "
                "would look ahead; start the panel then to keep it"
                if first.size
                else "no price on any day"
            )
        elif coverage[j] < min_coverage:
            dropped[ticker] = f"traded on {coverage[j]:.1%} of training days, below {min_coverage:.0%}"
    kept = tuple(t for t in panel.tickers if t not in dropped)
    if not kept:
        raise DataError(f"{panel.name}: no stock left after cleaning ({len(dropped)} dropped)")
    if dropped:
        panel = panel.select(kept)
        traded = np.isfinite(panel.close)
    _check_gaps(panel, traded, int(max_gap))

    rate, source = _market_change_rate(panel, traded)
    close = _fill_forward(panel.close.astype(np.float64), traded, rate)
    # A suspended day gets the filled close for open/high/low. A traded day missing some of them
    # gets the close for a missing open, and the extremes of open and close for a missing high/low.
    open_ = np.where(traded & np.isfinite(panel.open), panel.open, close)
    high = np.where(traded & np.isfinite(panel.high), panel.high, np.maximum(open_, close))
    low = np.where(traded & np.isfinite(panel.low), panel.low, np.minimum(open_, close))
    volume = np.where(traded & np.isfinite(panel.volume), panel.volume, 0.0)
    partial = traded & ~(np.isfinite(panel.open) & np.isfinite(panel.high) & np.isfinite(panel.low))
    completed = partial.sum(axis=0)
    fields = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    benchmark, benchmark_filled, bench_note = _fill_benchmark(panel)
    if bench_note:
        source += f" ({bench_note})"

    cleaned = replace(
        panel,
        benchmark=benchmark,
        benchmark_name=panel.benchmark_name if benchmark is not None else None,
        **{name: values.astype(np.float32) for name, values in fields.items()},
    )
    filled_days = (~traded).sum(axis=0)
    report = CleaningReport(
        name=panel.name,
        days=panel.T,
        train_start=str(panel.dates[t0]),
        train_end=str(panel.dates[t1 - 1]),
        min_coverage=float(min_coverage),
        max_gap=int(max_gap),
        kept=kept,
        dropped=dropped,
        filled={t: int(n) for t, n in zip(kept, filled_days, strict=True) if n},
        completed={t: int(n) for t, n in zip(kept, completed, strict=True) if n},
        fill_source=source,
        benchmark_filled=benchmark_filled,
    )
    return cleaned, report


def _check_gaps(panel: Panel, traded: np.ndarray, max_gap: int) -> None:
    """Raise `DataError` on the first run of more than `max_gap` days without a close."""
    days = np.arange(panel.T)[:, None]
    last_traded = np.maximum.accumulate(np.where(traded, days, -1), axis=0)
    run_length = days - last_traded  # 0 on traded days, k on the k-th missing day of a run
    too_long = run_length > max_gap
    if not too_long.any():
        return
    t, j = np.argwhere(too_long)[0]
    run_start = int(last_traded[t, j]) + 1
    later = np.flatnonzero(traded[run_start:, j])
    run_end = run_start + int(later[0]) - 1 if later.size else panel.T - 1
    raise DataError(
        f"{panel.name}: {panel.tickers[j]} has no price from {panel.dates[run_start]} to "
        f"{panel.dates[run_end]} ({run_end - run_start + 1} trading days), a NaN run beyond the fill "
        f"policy (max_gap={max_gap}); drop the ticker, end the panel before the gap, or raise max_gap"
    )


def _market_change_rate(panel: Panel, traded: np.ndarray) -> tuple[np.ndarray, str]:
    """Daily change rate `r[t]` (float64[T], r[0] = 0) used to fill suspended days, and its source."""
    close = panel.close.astype(np.float64)
    both = traded[1:] & traded[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        change = np.where(both, close[1:] / close[:-1] - 1.0, 0.0)
    count = both.sum(axis=1)
    rate = np.zeros(panel.T)
    rate[1:] = np.where(count > 0, change.sum(axis=1) / np.maximum(count, 1), 0.0)
    source = "equal-weight average of the traded stocks"
    if panel.benchmark is not None:
        bench = panel.benchmark.astype(np.float64)
        known = np.isfinite(bench[1:]) & np.isfinite(bench[:-1])
        with np.errstate(invalid="ignore", divide="ignore"):
            rate[1:] = np.where(known, bench[1:] / bench[:-1] - 1.0, rate[1:])
        source = f"benchmark {panel.benchmark_name or ''}".rstrip()
        if not known.all():
            source += " (equal-weight average where it is missing)"
    return rate, source


def _fill_forward(close: np.ndarray, traded: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """`close[t] = close[t-1] * (1 + rate[t])` on every untraded day. Each pass fills the next day
    of every gap at once, so the number of passes is the longest gap (at most `max_gap`)."""
    known = traded.copy()
    while not known.all():
        fillable = ~known[1:] & known[:-1]
        rows, cols = np.nonzero(fillable)
        rows += 1
        close[rows, cols] = close[rows - 1, cols] * (1.0 + rate[rows])
        known[rows, cols] = True
    return close


def _fill_benchmark(panel: Panel) -> tuple[np.ndarray | None, int, str]:
    """The benchmark with missing levels carried forward (no level published = no change).
    A benchmark missing on the first day cannot be filled causally and is dropped."""
    if panel.benchmark is None:
        return None, 0, ""
    bench = panel.benchmark
    known = np.isfinite(bench)
    if known.all():
        return bench, 0, ""
    if not known[0]:
        return None, 0, f"benchmark dropped: no level on the first day {panel.start}"
    last_known = np.maximum.accumulate(np.where(known, np.arange(panel.T), 0))
    return bench[last_known], int((~known).sum()), ""
