"""`Panel`: immutable daily market data of N stocks over T trading days.

Every field is a `float32[T, N]` array (`open high low close volume`), dates are `datetime64[D]`,
tickers are strings. A panel may hold NaN (a stock not traded that day) straight out of a loader;
`trustfolio.data.cleaning.clean` turns it into a NaN-free panel that the simulator accepts.
"""

from __future__ import annotations

import datetime
import hashlib
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from trustfolio.errors import DataError, UserError

FIELDS = ("open", "high", "low", "close", "volume")
PRICE_FIELDS = ("open", "high", "low", "close")


@dataclass(frozen=True)
class Calendar:
    """Market conventions that metrics and the simulator need."""

    trading_days_per_year: int = 252
    lot_size: int = 1
    currency: str = "USD"

    @classmethod
    def china(cls) -> Calendar:
        """China A-shares: about 242 trading days a year, 100-share lots."""
        return cls(trading_days_per_year=242, lot_size=100, currency="CNY")

    @classmethod
    def us(cls) -> Calendar:
        return cls(trading_days_per_year=252, lot_size=1, currency="USD")


def to_day(value: Any) -> np.datetime64:
    """A date as `datetime64[D]`: ISO text ``YYYY-MM-DD``, or a `datetime.date`/`datetime`,
    `pd.Timestamp` or `numpy.datetime64` (their time of day is dropped).

    Text in any other layout is refused rather than guessed: ``01/04/2019`` is 4 January to some
    readers and 1 April to others, and a silently misread test window is worse than an error.
    """
    if isinstance(value, str):
        text = value.strip()
        if _ISO_DAY.fullmatch(text):
            try:
                return np.datetime64(datetime.date.fromisoformat(text), "D")
            except ValueError:
                pass  # 2019-02-30: the right layout but no such day
        raise UserError(f"cannot read {value!r} as a date: write it as YYYY-MM-DD, e.g. 2019-04-01")
    if isinstance(value, np.datetime64) and not np.isnat(value):
        return value.astype("datetime64[D]")
    if isinstance(value, datetime.date) and not isinstance(value, type(pd.NaT)):
        day = value.date() if isinstance(value, datetime.datetime) else value  # pd.Timestamp too
        return np.datetime64(day, "D")
    raise UserError(f"cannot read {value!r} as a date: write it as YYYY-MM-DD, e.g. 2019-04-01")


_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, eq=False)
class Panel:
    """Daily OHLCV of N stocks on T trading days, plus an optional benchmark level series.

    Arrays are read-only so that a panel can be shared (and cached) without defensive copies.
    """

    dates: np.ndarray  # datetime64[D], [T], strictly increasing
    tickers: tuple[str, ...]  # [N], unique
    open: np.ndarray  # float32[T, N]
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    benchmark: np.ndarray | None = None  # float32[T] index level, or None
    benchmark_name: str | None = None
    calendar: Calendar = field(default_factory=Calendar)
    name: str = "panel"

    def __post_init__(self) -> None:
        dates = np.asarray(self.dates).astype("datetime64[D]")
        tickers = tuple(str(t) for t in self.tickers)
        object.__setattr__(self, "dates", _frozen(dates))
        object.__setattr__(self, "tickers", tickers)
        T, N = len(dates), len(tickers)
        if T == 0 or N == 0:
            raise DataError(f"{self.name}: empty panel ({T} days, {N} stocks)")
        for name in FIELDS:
            arr = np.asarray(getattr(self, name), dtype=np.float32)
            if arr.shape != (T, N):
                raise DataError(f"{self.name}: field {name} has shape {arr.shape}, expected {(T, N)}")
            object.__setattr__(self, name, _frozen(arr))
        if self.benchmark is not None:
            bench = np.asarray(self.benchmark, dtype=np.float32)
            if bench.shape != (T,):
                raise DataError(f"{self.name}: benchmark has shape {bench.shape}, expected {(T,)}")
            object.__setattr__(self, "benchmark", _frozen(bench))
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise `DataError` on structurally bad data (NaN is allowed: it means "not traded")."""
        if len(set(self.tickers)) != len(self.tickers):
            dup = sorted({t for t in self.tickers if self.tickers.count(t) > 1})
            raise DataError(f"{self.name}: duplicate tickers {dup}")
        steps = np.diff(self.dates.astype(np.int64))
        if (steps == 0).any():
            day = self.dates[1:][steps == 0][0]
            raise DataError(f"{self.name}: duplicate date {day}")
        if (steps < 0).any():
            day = self.dates[1:][steps < 0][0]
            raise DataError(f"{self.name}: dates are not sorted (at {day}); sort the file by date")
        for name in PRICE_FIELDS:
            arr = getattr(self, name)
            bad = np.isfinite(arr) & (arr <= 0) | np.isinf(arr)
            if bad.any():
                t, n = np.argwhere(bad)[0]
                raise DataError(
                    f"{self.name}: non-positive or infinite {name} price {arr[t, n]} for "
                    f"{self.tickers[n]} on {self.dates[t]}"
                )
        with np.errstate(invalid="ignore"):
            inverted = self.high < self.low
        if inverted.any():
            t, n = np.argwhere(inverted)[0]
            raise DataError(
                f"{self.name}: high < low for {self.tickers[n]} on {self.dates[t]} "
                f"(high {self.high[t, n]}, low {self.low[t, n]})"
            )
        vol = self.volume
        if (np.isfinite(vol) & (vol < 0)).any():
            t, n = np.argwhere(np.isfinite(vol) & (vol < 0))[0]
            raise DataError(f"{self.name}: negative volume for {self.tickers[n]} on {self.dates[t]}")
        if self.benchmark is not None:
            b = self.benchmark
            if (np.isfinite(b) & (b <= 0)).any():
                raise DataError(f"{self.name}: non-positive benchmark level")

    @property
    def is_clean(self) -> bool:
        """True when every price of every stock on every day is present (what the simulator needs)."""
        return bool(np.isfinite(self.close).all() and np.isfinite(self.open).all())

    # ------------------------------------------------------------------ shape
    @property
    def T(self) -> int:
        return len(self.dates)

    @property
    def N(self) -> int:
        return len(self.tickers)

    @property
    def start(self) -> np.datetime64:
        return self.dates[0]

    @property
    def end(self) -> np.datetime64:
        return self.dates[-1]

    def field(self, name: str) -> np.ndarray:
        if name not in FIELDS:
            raise UserError(f"unknown field {name!r}; choose one of {', '.join(FIELDS)}")
        return getattr(self, name)

    def __repr__(self) -> str:
        bench = f", benchmark={self.benchmark_name!r}" if self.benchmark is not None else ""
        return (
            f"Panel({self.name!r}, {self.T} days {self.start}→{self.end}, {self.N} stocks{bench}, "
            f"{self.calendar.currency}, lot {self.calendar.lot_size})"
        )

    # ------------------------------------------------------------------ indexing
    def index_of(self, date: Any, side: str = "left") -> int:
        """Position of `date` in `dates`; for a non-trading day, the next (`left`) or previous
        (`right`) trading day. Raises `UserError` when the date is outside the panel."""
        day = to_day(date)
        if side == "left":
            i = int(np.searchsorted(self.dates, day, side="left"))
            if i >= self.T:
                raise UserError(f"{self.name}: {day} is after the last date {self.end}")
        elif side == "right":
            i = int(np.searchsorted(self.dates, day, side="right")) - 1
            if i < 0:
                raise UserError(f"{self.name}: {day} is before the first date {self.start}")
        else:
            raise ValueError(f"side must be 'left' or 'right', not {side!r}")
        return i

    def span(self, start: Any = None, end: Any = None) -> tuple[int, int]:
        """Index range `[i0, i1)` of the trading days in `[start, end]` (both inclusive)."""
        i0 = 0 if start is None else self.index_of(start, "left")
        i1 = self.T if end is None else self.index_of(end, "right") + 1
        if start is not None and end is not None and to_day(start) > to_day(end):
            raise UserError(f"inverted date range: start {to_day(start)} is after end {to_day(end)}")
        if i1 <= i0:
            raise UserError(f"{self.name}: no trading days between {start} and {end}")
        return i0, i1

    def slice(self, start: Any = None, end: Any = None) -> Panel:
        """The panel restricted to trading days in `[start, end]` (both inclusive)."""
        i0, i1 = self.span(start, end)
        return self.take_days(slice(i0, i1))

    def take_days(self, rows: slice) -> Panel:
        """The panel restricted to a slice of day positions.

        Arrays are read-only views, not copies, and nothing is re-validated: any run of days of a
        valid panel is valid. This is cheap enough to call once per backtest day.
        """
        part = object.__new__(Panel)
        for f in fields(Panel):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = value[rows]
            object.__setattr__(part, f.name, value)
        if part.T == 0:
            raise UserError(f"{self.name}: no trading days in {rows}")
        return part

    def select(self, tickers: list[str] | tuple[str, ...]) -> Panel:
        """The panel restricted to `tickers`, in the order given."""
        position = {t: i for i, t in enumerate(self.tickers)}
        unknown = [t for t in tickers if t not in position]
        if unknown:
            raise UserError(f"{self.name}: unknown tickers {', '.join(map(str, unknown))}")
        cols = [position[t] for t in tickers]
        return replace(self, tickers=tuple(tickers), **{name: getattr(self, name)[:, cols] for name in FIELDS})

    # ------------------------------------------------------------------ derived
    def returns(self, field_name: str = "close") -> np.ndarray:
        """Simple daily returns `x[t]/x[t-1] - 1` as `float32[T, N]`; row 0 is 0 (no previous day)."""
        x = self.field(field_name).astype(np.float64)
        out = np.zeros_like(x)
        out[1:] = x[1:] / x[:-1] - 1.0
        return out.astype(np.float32)

    def benchmark_returns(self) -> np.ndarray | None:
        """Daily returns of the benchmark level (`float32[T]`, row 0 is 0), or None."""
        if self.benchmark is None:
            return None
        b = self.benchmark.astype(np.float64)
        out = np.zeros_like(b)
        out[1:] = b[1:] / b[:-1] - 1.0
        return out.astype(np.float32)

    def content_hash(self) -> str:
        """A hash of everything in the panel; keys caches of market-derived arrays."""
        h = hashlib.sha256()
        h.update(self.dates.astype(np.int64).tobytes())
        h.update("\x1f".join(self.tickers).encode())
        for name in FIELDS:
            h.update(np.ascontiguousarray(getattr(self, name)).tobytes())
        if self.benchmark is not None:
            h.update(np.ascontiguousarray(self.benchmark).tobytes())
        h.update(repr(self.calendar).encode())
        return h.hexdigest()[:20]

    # ------------------------------------------------------------------ pandas I/O
    def to_frame(self) -> pd.DataFrame:
        """Long table with columns `date, ticker, open, high, low, close, volume`."""
        T, N = self.T, self.N
        frame = pd.DataFrame(
            {
                "date": np.repeat(self.dates, N),
                "ticker": np.tile(np.array(self.tickers, dtype=object), T),
                **{name: getattr(self, name).reshape(-1) for name in FIELDS},
            }
        )
        return frame

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        benchmark: pd.Series | None = None,
        benchmark_name: str | None = None,
        calendar: Calendar | None = None,
        name: str = "panel",
    ) -> Panel:
        """Build a panel from a long table (`date, ticker, open, high, low, close, volume`); tickers sorted.

        A missing (date, ticker) row becomes NaN. `open/high/low` default to `close` and `volume` to 0
        when absent. `benchmark` is a level series indexed by date (missing dates become NaN).
        """
        required = {"date", "ticker", "close"}
        missing = required - set(frame.columns)
        if missing:
            raise DataError(f"{name}: missing columns {', '.join(sorted(missing))}")
        frame = frame.copy()
        try:
            frame["date"] = pd.to_datetime(frame["date"]).dt.normalize()
        except (ValueError, TypeError) as exc:
            raise DataError(f"{name}: unreadable dates in column 'date' ({exc})") from exc
        frame["ticker"] = frame["ticker"].astype(str)
        dup = frame.duplicated(["date", "ticker"])
        if dup.any():
            row = frame.loc[dup].iloc[0]
            raise DataError(f"{name}: duplicate row for {row['ticker']} on {row['date'].date()}")
        for col in FIELDS:
            if col not in frame.columns:
                frame[col] = frame["close"] if col != "volume" else 0.0
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
        dates = np.sort(frame["date"].unique())
        tickers = sorted(frame["ticker"].unique())  # independent of row order
        wide = {
            col: frame.pivot(index="date", columns="ticker", values=col).reindex(index=dates, columns=tickers)
            for col in FIELDS
        }
        bench = None
        if benchmark is not None:
            b = benchmark.copy()
            b.index = pd.to_datetime(b.index).normalize()
            bench = b.reindex(dates).to_numpy(dtype=np.float32)
        return cls(
            dates=np.asarray(dates).astype("datetime64[D]"),
            tickers=tuple(tickers),
            benchmark=bench,
            benchmark_name=benchmark_name,
            calendar=calendar or Calendar(),
            name=name,
            **{col: wide[col].to_numpy(dtype=np.float32) for col in FIELDS},
        )


def _frozen(arr: np.ndarray) -> np.ndarray:
    """A read-only view: the panel cannot be mutated, and the caller's array keeps its flags."""
    view = np.asarray(arr).view()
    view.flags.writeable = False
    return view
