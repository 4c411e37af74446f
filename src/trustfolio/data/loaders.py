"""Loaders: market data from the embedded default, from files, or from Yahoo Finance, as a `Panel`.

Every loader returns a `Panel` that may hold NaN (a stock not traded that day);
`trustfolio.data.cleaning.clean` turns it into the NaN-free panel the simulator needs. A malformed
file raises `DataError` naming the file, the line and the column, and how to fix it; a bad argument
(unknown dataset name, missing path) raises `UserError`.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from trustfolio.data.panel import Calendar, Panel, to_day
from trustfolio.errors import DataError, UserError
from trustfolio.files import write_atomic

DATASETS: dict[str, str] = {
    "sp500": "embedded default: 20 S&P 500 stocks, daily 1990-2022, close only, S&P 500 index as benchmark",
    "stockformer:PATH": "StockFormer-format directory, one CSV per stock (like csi88); trades on `price`",
    "yahoo-dir:PATH": "directory of Yahoo Finance CSVs (Date,Open,High,Low,Close,Adj Close,Volume)",
    "table:PATH": "long table, CSV or Parquet, with columns date,ticker,open,high,low,close,volume",
    "yahoo:T1,T2,...": "download from Yahoo Finance (needs the 'yahoo' extra and a network; cached on disk)",
}

_US = Calendar.us()
_PATH_LOADERS = ("stockformer", "yahoo-dir", "table")


def load_dataset(spec: str) -> Panel:
    """Load a dataset named as on the command line: `sp500`, `stockformer:PATH`, `yahoo-dir:PATH`,
    `table:PATH` or `yahoo:T1,T2,...` (see `DATASETS`)."""
    kind, has_arg, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "sp500" and not has_arg:
        return load_sp500()
    if kind in _PATH_LOADERS and arg.strip():
        path = Path(arg.strip()).expanduser()
        if not path.exists():
            raise UserError(f"dataset {spec!r}: {path} does not exist")
        if kind == "stockformer":
            return load_stockformer(path)
        return load_yahoo_dir(path) if kind == "yahoo-dir" else load_table(path)
    if kind == "yahoo" and arg.strip():
        return load_yahoo(arg.split(","))
    if kind in (*_PATH_LOADERS, "yahoo"):
        example = "AAPL,MSFT" if kind == "yahoo" else "path/to/data"
        raise UserError(f"dataset {spec!r} needs an argument, e.g. {kind}:{example}")
    raise UserError(f"unknown dataset {spec!r}; choose one of: {', '.join(DATASETS)}")


# ---------------------------------------------------------------------------------------- embedded
def load_sp500() -> Panel:
    """The embedded default: skfolio's bundled daily prices of 20 S&P 500 stocks (1990-01-02 to
    2022-12-28, 8,313 days, no gaps) with the S&P 500 index as benchmark. Works offline: the data
    ship inside the skfolio package.

    The source holds adjusted closes only, so this panel sets open = high = low = close and
    volume = 0. Indicators that need high/low still compute, on degenerate bars: the day's range is
    0 and the true range reduces to |close change|. Fills at "next open" become fills at the next
    close.
    """
    from skfolio.datasets import load_sp500_dataset, load_sp500_index

    prices = load_sp500_dataset()
    index = load_sp500_index().iloc[:, 0].reindex(prices.index)
    close = prices.to_numpy(dtype=np.float32)
    return Panel(
        dates=prices.index.to_numpy().astype("datetime64[D]"),
        tickers=tuple(prices.columns),
        open=close,
        high=close,
        low=close,
        close=close,
        volume=np.zeros_like(close),
        benchmark=index.to_numpy(dtype=np.float32),
        benchmark_name="S&P 500",
        calendar=Calendar.us(),
        name="sp500",
    )


# ---------------------------------------------------------------------------------------- StockFormer
def load_stockformer(path: str | Path) -> Panel:
    """A StockFormer-format directory (like csi88): one CSV per stock named `<ticker>.csv`, with
    `date`, whole-period-normalized `open close high low volume` (plus their differences) and
    `price`, the real adjusted close. China calendar (242 days a year, 100-share lots).

    The panel trades on `price` (close = price exactly). Real open/high/low are recovered by
    `recover_stockformer_ohlc`; the normalized columns themselves never leave this function,
    because their scaling uses the whole period (test data included). The normalized volume cannot
    be mapped back to shares, so volume is 0.
    """
    directory = Path(path)
    files = _csv_files(directory)
    series = {f.stem: _read_csv(f, ("open", "high", "low", "close", "price"), "date") for f in files}
    dates, wide = _align(series)
    ohlc = recover_stockformer_ohlc(wide["price"], wide["open"], wide["high"], wide["low"], wide["close"])
    broken = ~(np.isfinite(ohlc.slope) & (ohlc.slope > 0))
    if broken.any():
        ticker = list(series)[int(np.argmax(broken))]
        raise DataError(
            f"{directory / (ticker + '.csv')}: column 'close' does not track column 'price' "
            "(no positive affine fit); is this a StockFormer-format file?"
        )
    return Panel(
        dates=dates,
        tickers=tuple(series),
        open=ohlc.open,
        high=ohlc.high,
        low=ohlc.low,
        close=wide["price"],
        volume=np.zeros_like(wide["price"]),
        calendar=Calendar.china(),
        name=directory.name,
    )


@dataclass(frozen=True)
class StockformerOHLC:
    """Real open/high/low recovered from normalized columns; float64[T, N] arrays."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    slope: np.ndarray  # [N] affine fit price ≈ slope * close_norm + intercept
    intercept: np.ndarray  # [N]
    fit_error: np.ndarray  # [N] max |fit - price| / price over the days of each stock
    widening: np.ndarray  # [N] largest relative amount by which a high/low was widened to open/close


def recover_stockformer_ohlc(
    price: np.ndarray, open_n: np.ndarray, high_n: np.ndarray, low_n: np.ndarray, close_n: np.ndarray
) -> StockformerOHLC:
    """Recover real (dividend-adjusted) open/high/low, `[T, N]`, from StockFormer's normalized columns.

    1. A per-stock least-squares affine fit `price ≈ a * close_n + b` maps normalized prices back
       to currency (within 1.8% on csi88: the file's close and `price` were adjusted differently
       on a few early days).
    2. The normalized close is dividend-adjusted but open/high/low are not (on csi88 in 2010 the
       normalized low sits above the close on almost every day). The adjustment factor
       `f[t] = adjusted close / raw close` is a step function that steps up at each ex-date (and
       is 1 after the last), and the raw close lies in the day's [low, high], so
       `close/high <= f[t] <= close/low`. With
       `f` non-decreasing, the running max of the lower bounds and the running min (from the end)
       of the upper bounds bracket it; we take their geometric mean.
    3. open/high/low = raw value x f[t], rescaled to `price`. The day's high is then widened to
       max(open, close) and the low to min(open, close) where the estimate (or the raw data:
       a few 2010 rows have high < low) falls short; `widening` reports by how much at most.

    Leakage: the fit and the upper bounds of `f` use later days. That is acceptable here because
    they recover *measured* prices of day t (the same day's open/high/low relative to its close),
    not a scaling of features; what later data can change is only the estimation error, which
    keeps the implied raw close inside the day's own [low, high] (except on the few inconsistent
    rows that get widened). The normalized columns themselves are never exposed.
    """
    price, close_n = np.asarray(price, np.float64), np.asarray(close_n, np.float64)
    valid = np.isfinite(price) & np.isfinite(close_n)
    x, y = np.where(valid, close_n, np.nan), np.where(valid, price, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        x_dev, y_dev = x - np.nanmean(x, axis=0), y - np.nanmean(y, axis=0)
        slope = np.nansum(x_dev * y_dev, axis=0) / np.nansum(x_dev**2, axis=0)
        intercept = np.nanmean(y, axis=0) - slope * np.nanmean(x, axis=0)

        def to_money(normalized: np.ndarray) -> np.ndarray:
            return slope * np.asarray(normalized, np.float64) + intercept

        close_fit = to_money(close_n)
        fit_error = np.nanmax(np.abs(close_fit - y) / y, axis=0)
        raw_open = to_money(open_n)
        raw_high = np.fmax(np.fmax(raw_open, to_money(high_n)), to_money(low_n))
        raw_low = np.fmin(np.fmin(raw_open, to_money(high_n)), to_money(low_n))
        lower = np.fmax.accumulate(close_fit / raw_high, axis=0)
        upper = np.fmin.accumulate((close_fit / raw_low)[::-1], axis=0)[::-1]
        to_price = np.sqrt(lower * upper) * price / close_fit
    open_, estimated_high, estimated_low = raw_open * to_price, raw_high * to_price, raw_low * to_price
    high = np.fmax(estimated_high, np.fmax(open_, price))
    low = np.fmin(estimated_low, np.fmin(open_, price))
    with np.errstate(invalid="ignore", divide="ignore"):
        widening = np.nanmax(np.fmax(high / estimated_high - 1.0, 1.0 - low / estimated_low), axis=0)
    return StockformerOHLC(open_, high, low, slope, intercept, fit_error, widening)


# ---------------------------------------------------------------------------------------- Yahoo files
def load_yahoo_dir(path: str | Path, calendar: Calendar = _US) -> Panel:
    """A directory of Yahoo Finance CSVs, one per ticker (`<ticker>.csv` with
    `Date,Open,High,Low,Close,Adj Close,Volume`). Open/high/low/close are multiplied by
    `Adj Close / Close` (dividends and splits); volume is kept as is. Days a file lacks, and rows
    Yahoo wrote as `null`, stay NaN."""
    directory = Path(path)
    columns = ("Open", "High", "Low", "Close", "Adj Close", "Volume")
    series = {}
    for file in _csv_files(directory):
        dates, raw = _read_csv(file, columns, "Date")
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = raw["Adj Close"] / raw["Close"]
        adjusted = {name.lower(): raw[name] * factor for name in ("Open", "High", "Low")}
        series[file.stem] = (dates, {**adjusted, "close": raw["Adj Close"], "volume": raw["Volume"]})
    dates, wide = _align(series)
    return Panel(dates=dates, tickers=tuple(series), calendar=calendar, name=directory.name, **wide)


# ---------------------------------------------------------------------------------------- long table
def load_table(path: str | Path, calendar: Calendar = _US) -> Panel:
    """A long table, CSV (`.csv`, `.csv.gz`) or Parquet (`.parquet`, `.pq`), one row per (date,
    ticker) with columns `date, ticker, close` and optionally `open, high, low, volume` (absent
    open/high/low default to close and volume to 0). Row order does not matter; a (date, ticker)
    pair that is absent becomes NaN."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{file}: no such file")
    suffixes = [s.lower() for s in file.suffixes]
    if suffixes[-1:] in ([".parquet"], [".pq"]):
        try:
            frame = pd.read_parquet(file)
        except Exception as exc:  # pyarrow raises several unrelated types for a bad file
            raise DataError(f"{file}: not a readable Parquet file ({exc})") from exc
    elif ".csv" in suffixes:
        frame = _read_csv_frame(file)
    else:
        raise UserError(f"{file}: unknown table format; use a .csv, .csv.gz, .parquet or .pq file")
    missing = [c for c in ("date", "ticker", "close") if c not in frame.columns]
    if missing:
        raise DataError(
            f"{file}: missing column(s) {', '.join(missing)}; a table needs date,ticker,close "
            "(and optionally open,high,low,volume)"
        )
    where = _row_locator(file)
    tidy = pd.DataFrame({"date": _parse_dates(frame["date"], where)})
    blank = frame["ticker"].isna() | (frame["ticker"].astype(str).str.strip() == "")
    if blank.any():
        raise DataError(f"{where(int(np.argmax(blank.to_numpy())))}: empty ticker; fill in the ticker")
    tidy["ticker"] = frame["ticker"].astype(str).str.strip().to_numpy()
    for column in ("open", "high", "low", "close", "volume"):
        if column in frame.columns:
            tidy[column] = _parse_numbers(frame[column], where, column)
    return Panel.from_frame(tidy, calendar=calendar, name=file.name.split(".")[0])


# ---------------------------------------------------------------------------------------- yfinance
def load_yahoo(tickers: Sequence[str], start=None, end=None, cache_dir: str | Path | None = None) -> Panel:
    """Daily prices of `tickers` from Yahoo Finance via yfinance (the optional `yahoo` extra),
    adjusted for dividends and splits, from `start` (default: all history) to `end` (inclusive,
    default: today). US calendar, no benchmark.

    Downloads are cached as Parquet in `cache_dir` (default `$TRUSTFOLIO_CACHE/yahoo`, else
    `~/.cache/trustfolio/yahoo`), keyed by tickers and dates; with `end=None` the key holds today's
    date, so the cache refreshes daily.
    """
    symbols = list(dict.fromkeys(t.strip().upper() for t in tickers if t and t.strip()))
    if not symbols:
        raise UserError("yahoo: give at least one ticker, e.g. yahoo:AAPL,MSFT")
    first = None if start is None else to_day(start)
    last = to_day(datetime.date.today() if end is None else end)
    if first is not None and first > last:
        raise UserError(f"yahoo: inverted date range: start {first} is after end {last}")
    name = "yahoo:" + ",".join(symbols)
    key = hashlib.sha256(json.dumps([symbols, str(first), str(last)]).encode()).hexdigest()[:16]
    cached = _yahoo_cache_dir(cache_dir) / f"{key}.parquet"
    if cached.is_file():
        return Panel.from_frame(pd.read_parquet(cached), calendar=Calendar.us(), name=name)

    try:
        import yfinance
    except ImportError as exc:
        raise UserError("yahoo: needs the yfinance package: pip install 'trustfolio[yahoo]'") from exc
    span = {"period": "max"} if first is None else {"start": str(first)}
    try:  # yfinance's `end` is exclusive; its log lines and warnings are noise here
        with _quiet_yfinance():
            frame = yfinance.download(
                symbols,
                **span,
                end=str(last + 1),
                auto_adjust=True,
                actions=False,
                progress=False,
                group_by="column",
                multi_level_index=True,
            )
    except Exception as exc:  # network and parsing failures come in many types
        raise DataError(f"yahoo: download failed ({exc}); check the network and the ticker symbols") from exc
    panel = _panel_from_yfinance(frame, symbols, name)
    write_atomic(cached, lambda path: panel.to_frame().to_parquet(path, index=False))
    return panel


def _panel_from_yfinance(frame: pd.DataFrame | None, symbols: list[str], name: str) -> Panel:
    """A panel from yfinance's layout: a date index and (Price, Ticker) MultiIndex columns."""
    if frame is None or frame.empty or not isinstance(frame.columns, pd.MultiIndex):
        raise DataError(f"{name}: Yahoo Finance returned no prices; check the ticker symbols and the network")
    fields = {"open": "Open", "high": "High", "low": "Low", "close": "Close", "volume": "Volume"}
    wide = {
        ours: frame[theirs].reindex(columns=symbols).to_numpy(np.float64) for ours, theirs in fields.items()
    }
    if "Adj Close" in frame.columns.get_level_values(0):  # an unadjusted download: adjust as Yahoo files
        factor = frame["Adj Close"].reindex(columns=symbols).to_numpy(np.float64) / wide["close"]
        for field in ("open", "high", "low", "close"):
            wide[field] = wide[field] * factor
    unknown = [s for j, s in enumerate(symbols) if not np.isfinite(wide["close"][:, j]).any()]
    if unknown:
        raise UserError(f"{name}: unknown tickers {', '.join(unknown)} (Yahoo Finance returned no prices)")
    dates = pd.DatetimeIndex(frame.index).tz_localize(None).to_numpy().astype("datetime64[D]")
    return Panel(dates=dates, tickers=tuple(symbols), calendar=Calendar.us(), name=name, **wide)


@contextlib.contextmanager
def _quiet_yfinance():
    """yfinance logs "1 Failed download: ['XYZ']: possibly delisted" on stderr and pandas warns about
    its calls; `_panel_from_yfinance` says the same in one line naming the tickers, so both are muted."""
    logger = logging.getLogger("yfinance")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _yahoo_cache_dir(cache_dir: str | Path | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    root = os.environ.get("TRUSTFOLIO_CACHE")
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "trustfolio") / "yahoo"


# ---------------------------------------------------------------------------------------- file helpers
def _csv_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise UserError(f"{directory}: not a directory (expected one CSV file per ticker)")
    files = sorted(directory.glob("*.csv"))
    if not files:
        raise DataError(f"{directory}: no .csv files found (expected one CSV file per ticker)")
    return files


def _read_csv_frame(file: Path, columns: set[str] | None = None) -> pd.DataFrame:
    try:
        return pd.read_csv(
            file, usecols=None if columns is None else (lambda c: c in columns), na_values=["null"]
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{file}: not a readable CSV file ({exc})") from exc


def _read_csv(
    file: Path, columns: Sequence[str], date_column: str
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Dates (`datetime64[D]`, strictly increasing) and float64 columns of one per-ticker CSV."""
    frame = _read_csv_frame(file, {date_column, *columns})
    missing = [c for c in (date_column, *columns) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{file}: missing column(s) {', '.join(missing)}; expected {', '.join((date_column, *columns))}"
        )
    where = _row_locator(file)
    dates = _parse_dates(frame[date_column], where)
    steps = np.diff(dates.astype(np.int64))
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        problem = "duplicate date" if steps[i - 1] == 0 else "date out of order"
        raise DataError(
            f"{where(i)}: {problem} {dates[i]} after {dates[i - 1]}; sort the file by date and "
            "remove repeated rows"
        )
    return dates, {c: _parse_numbers(frame[c], where, c) for c in columns}


def _row_locator(file: Path):
    """A function that names data row `i` of `file` the way an editor shows it."""
    if ".csv" in [s.lower() for s in file.suffixes]:
        return lambda i: f"{file}, line {i + 2}"  # line 1 is the header
    return lambda i: f"{file}, row {i + 1}"


def _parse_dates(column: pd.Series, where) -> np.ndarray:
    parsed = pd.to_datetime(column, errors="coerce", format="ISO8601")
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where(i)}: cannot read {column.iloc[i]!r} as a date; write dates as YYYY-MM-DD")
    return parsed.to_numpy().astype("datetime64[D]")


def _parse_numbers(column: pd.Series, where, name: str) -> np.ndarray:
    """Float64 values; a blank cell is NaN (not traded), text that is not a number is an error."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return column.to_numpy(np.float64, na_value=np.nan)
    parsed = pd.to_numeric(column, errors="coerce")
    bad = (parsed.isna() & column.notna()).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{where(i)}, column {name!r}: cannot read {column.iloc[i]!r} as a number; "
            "fix the value or leave the cell empty (empty = not traded)"
        )
    return parsed.to_numpy(np.float64, na_value=np.nan)


def _align(series: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]) -> tuple[np.ndarray, dict]:
    """Put per-ticker series on the union of their dates: `float32[T, N]` per field, NaN where a
    ticker has no row."""
    dates = np.unique(np.concatenate([d for d, _ in series.values()]))
    fields = next(iter(series.values()))[1].keys()
    wide = {f: np.full((len(dates), len(series)), np.nan, dtype=np.float32) for f in fields}
    for j, (ticker_dates, values) in enumerate(series.values()):
        rows = np.searchsorted(dates, ticker_dates)
        for f in fields:
            wide[f][rows, j] = values[f]
    return dates, wide
