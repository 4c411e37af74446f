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

Before the fill, two kinds of bad prints in the kept stocks are looked for (`on_outliers` decides
what happens to them: ``fail``, the default, refuses the panel with one line naming the first;
``warn`` keeps the data and lists them in the report; ``clip`` also lists them and treats each spike
day as a suspended day, filled by rule 3):

- an **isolated one-day spike**: a close that jumps by a factor of at least ``1 + SPIKE_MIN_MOVE``
  (×1.5 or ÷1.5) and reverts the next day (undoing at least half of the jump, by at least that
  factor too), both moves beyond ``SPIKE_VOL_MULTIPLE`` (10) times the stock's trailing daily
  volatility. The volatility is trailing: a robust scale (1.4826 × the median absolute log return)
  of the ``VOL_WINDOW`` (63) daily returns up to the day before the jump, so a past spike does not
  inflate it and nothing after the jump enters it; with fewer than 20 returns only the 50 % floor
  applies. A crash that does not revert is never a spike. None of the development datasets (csi88,
  stocknet88, the embedded sp500) has one: their largest reverting round trip is about 30 %.
- a **stale price**: the same close on more than ``MAX_FLAT_DAYS`` (10) consecutive trading days
  although volume was reported on each of them. The same run without reported volume is a
  suspension the source carried forward (csi88 has runs of up to 258 days; csi88 and sp500 report
  no volume at all): it is listed in the report as `suspended_runs` and never refused. (A zero or
  negative price never gets this far: `Panel` refuses it.)

Everything day t of the result holds is computed from days <= t of the input, with one opt-in
exception: deciding that day t is a spike takes day t+1 (the reversion), so ``clip`` repairs day t
with knowledge of day t+1. ``fail`` and ``warn`` change no price.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from trustfolio.data.panel import Panel
from trustfolio.errors import DataError, UserError

DEFAULT_MAX_GAP = 20  # about a trading month: longer suspensions are events, not noise to paper over

OUTLIER_POLICIES = ("fail", "warn", "clip")
SPIKE_VOL_MULTIPLE = 10.0  # both legs of a spike beyond this many trailing daily volatilities…
SPIKE_MIN_MOVE = 0.5  # …and beyond a factor 1.5 in price: no real round trip in our data is near
VOL_WINDOW = 63  # trading days (a quarter) of returns behind the trailing volatility
VOL_MIN_RETURNS = 20  # fewer returns than this: no volatility yardstick, the price floor alone decides
MAX_FLAT_DAYS = 10  # the same close with volume on more days than this is a stale feed

def _checked_policy(on_outliers: str) -> str:
    if on_outliers not in OUTLIER_POLICIES:
        raise UserError(f"on_outliers must be one of {', '.join(OUTLIER_POLICIES)}, not {on_outliers!r}")
    return on_outliers


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
    on_outliers: str = "fail"
    spikes: dict[str, list[str]] = field(default_factory=dict)  # ticker -> days of one-day spikes
    flat_runs: dict[str, list[str]] = field(default_factory=dict)  # ticker -> stale runs, with volume
    suspended_runs: dict[str, list[str]] = field(default_factory=dict)  # ticker -> same runs, no volume

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
        if self.spikes:
            what = "filled like suspended days" if self.on_outliers == "clip" else "kept as they are"
            text += f" One-day spikes ({what}): {_listing(self.spikes)}."
        if self.flat_runs:
            text += f" Stale prices (the same close for more than {MAX_FLAT_DAYS} days with volume): {_listing(self.flat_runs)}."
        if self.suspended_runs:
            runs = sum(len(r) for r in self.suspended_runs.values())
            text += (
                f" {runs} runs of more than {MAX_FLAT_DAYS} days with an unchanged close and no reported "
                f"volume (suspensions carried forward by the source) in {len(self.suspended_runs)} stocks."
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        out = asdict(self)
        out["kept"] = list(self.kept)
        return out


def _listing(runs: dict[str, list[str]], limit: int = 10) -> str:
    items = [f"{ticker} on {day}" for ticker, days in runs.items() for day in days]
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def clean(
    panel: Panel,
    *,
    train_start: Any = None,
    train_end: Any = None,
    min_coverage: float = 0.98,
    max_gap: int = DEFAULT_MAX_GAP,
    on_outliers: str = "fail",
) -> tuple[Panel, CleaningReport]:
    """A NaN-free copy of `panel` (`is_clean`) and a report of what was dropped and filled.

    `train_start`/`train_end` (default: the whole panel) bound the days on which coverage is
    measured. Raises `DataError` when a kept stock has a run of more than `max_gap` consecutive
    days without a close, when no stock is left, or (``on_outliers="fail"``, the default) on a one-day spike or a stale price (module docstring).
    """
    on_outliers = _checked_policy(on_outliers)
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
    suspended = ~traded
    spike_days = _find_spikes(panel.close.astype(np.float64), traded)
    flat_runs, suspended_runs = _find_flat_runs(panel, traded)
    if on_outliers == "fail":
        _refuse_outliers(panel, spike_days, flat_runs)
    if on_outliers == "clip":
        traded = traded & ~spike_days  # a spike day is filled like a suspended day
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
    filled_days = suspended.sum(axis=0)
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
        on_outliers=on_outliers,
        spikes=_days_by_ticker(panel, spike_days),
        flat_runs=_runs_by_ticker(panel, flat_runs),
        suspended_runs=_runs_by_ticker(panel, suspended_runs),
    )
    return cleaned, report


# ---------------------------------------------------------------------------------------- outliers
def trailing_volatility(log_returns: np.ndarray, t: int, j: int) -> float:
    """A robust daily volatility of stock j from the `VOL_WINDOW` returns before day t
    (``log_returns[t - VOL_WINDOW : t, j]``, NaN skipped): 1.4826 × their median absolute value,
    which equals the standard deviation for normal returns and ignores a few huge ones (an earlier
    spike). NaN with fewer than `VOL_MIN_RETURNS` known returns. Day t's own return never enters.
    """
    window = log_returns[max(0, t - VOL_WINDOW) : t, j]
    known = window[np.isfinite(window)]
    return 1.4826 * float(np.median(np.abs(known))) if len(known) >= VOL_MIN_RETURNS else math.nan


def _find_spikes(close: np.ndarray, traded: np.ndarray) -> np.ndarray:
    """Boolean [T, N]: day t is an isolated one-day spike (module docstring for the rule)."""
    both = traded[1:] & traded[:-1]
    log_returns = np.full(close.shape, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_returns[1:] = np.where(both, np.log(close[1:] / close[:-1]), np.nan)
    jump, back = log_returns[1:-1], log_returns[2:]  # into day t and out of it, t = 1 .. T-2
    smaller = np.minimum(np.abs(jump), np.abs(back))  # NaN when either is unknown: never a spike
    with np.errstate(invalid="ignore"):
        candidate = (
            (np.sign(jump) == -np.sign(back))
            & (smaller >= math.log1p(SPIKE_MIN_MOVE))
            & (np.abs(jump + back) <= 0.5 * np.abs(jump))  # undoes at least half of the jump
        )
    days = np.zeros(close.shape, dtype=bool)
    # Candidates are rare (none in our real data), so the trailing yardstick is computed for them only.
    for t, j in np.argwhere(candidate):
        sigma = trailing_volatility(log_returns, t + 1, j)
        days[t + 1, j] = not smaller[t, j] <= SPIKE_VOL_MULTIPLE * sigma  # beyond it, or none yet
    return days


def _find_flat_runs(panel: Panel, traded: np.ndarray) -> tuple[list, list]:
    """Runs ``(column, first day, last day)`` of more than `MAX_FLAT_DAYS` traded days with the same
    close: those with volume on every repeated day (stale), and the others (suspensions)."""
    close = panel.close
    repeated = np.zeros(close.shape, dtype=bool)  # day t has the close of day t-1
    repeated[1:] = traded[1:] & traded[:-1] & (close[1:] == close[:-1])
    with_volume = np.nan_to_num(panel.volume) > 0
    stale, quiet = [], []
    for j in range(panel.N):  # a loop over stocks, not days: each column is found with numpy
        edges = np.diff(np.r_[0, repeated[:, j].astype(np.int8), 0])
        for first_repeat, end in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
            first = first_repeat - 1  # the day whose close is repeated
            if end - first > MAX_FLAT_DAYS:
                (stale if with_volume[first_repeat:end, j].all() else quiet).append((j, first, end - 1))
    return stale, quiet


def _refuse_outliers(panel: Panel, spike_days: np.ndarray, flat_runs: list) -> None:
    """Raise `DataError` naming the first spike or stale run (in date order)."""
    how = "pass on_outliers='warn' (--on-outliers warn) to keep it"
    if spike_days.any():
        t, j = np.argwhere(spike_days)[np.argmin(np.argwhere(spike_days)[:, 0])]
        c = panel.close[:, j].astype(np.float64)
        raise DataError(
            f"{panel.name}: {panel.tickers[j]} has an isolated one-day spike on {panel.dates[t]}: the "
            f"close goes {c[t - 1]:.6g} → {c[t]:.6g} → {c[t + 1]:.6g}, beyond {SPIKE_VOL_MULTIPLE:g}× its "
            f"trailing daily volatility and {SPIKE_MIN_MOVE:.0%} both ways, most likely a data error; fix "
            f"the data, or pass on_outliers='clip' (--on-outliers clip) to fill that day like a "
            f"suspended day, or {how}"
        )
    if flat_runs:
        j, first, last = min(flat_runs, key=lambda run: run[1])
        raise DataError(
            f"{panel.name}: {panel.tickers[j]} has the same close {panel.close[first, j]:.6g} on "
            f"{last - first + 1} consecutive trading days, {panel.dates[first]} → {panel.dates[last]}, "
            f"with volume reported on each: a stale price feed; fix the data, or {how}"
        )


def _days_by_ticker(panel: Panel, days: np.ndarray) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for t, j in sorted(map(tuple, np.argwhere(days)), key=lambda tj: (tj[1], tj[0])):
        out.setdefault(panel.tickers[j], []).append(str(panel.dates[t]))
    return out


def _runs_by_ticker(panel: Panel, runs: list) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for j, first, last in runs:
        out.setdefault(panel.tickers[j], []).append(
            f"{panel.dates[first]} → {panel.dates[last]} ({last - first + 1} days)"
        )
    return out


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
