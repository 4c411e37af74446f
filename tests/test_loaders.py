"""Loaders: embedded default, StockFormer and Yahoo directories, long tables, yfinance (no network)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trustfolio.data.loaders import (
    DATASETS,
    load_dataset,
    load_sp500,
    load_stockformer,
    load_table,
    load_yahoo,
    load_yahoo_dir,
    recover_stockformer_ohlc,
)
from trustfolio.data.panel import Calendar, Panel
from trustfolio.errors import DataError, UserError

FIXTURES = Path(__file__).parent / "fixtures"


# ------------------------------------------------------------------------------------------ sp500
def test_sp500_is_close_only_with_the_index_as_benchmark(monkeypatch):
    from skfolio.datasets import load_sp500_dataset, load_sp500_index

    def no_network(*args, **kwargs):
        raise AssertionError("load_sp500 tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)  # the data are bundled inside skfolio
    panel = load_sp500()
    prices, index = load_sp500_dataset(), load_sp500_index()
    assert (panel.T, panel.N) == (8313, 20)
    assert (str(panel.start), str(panel.end)) == ("1990-01-02", "2022-12-28")
    assert panel.tickers == tuple(prices.columns)
    np.testing.assert_array_equal(panel.close, prices.to_numpy(np.float32))
    for field in ("open", "high", "low"):
        np.testing.assert_array_equal(getattr(panel, field), panel.close)
    assert not panel.volume.any()
    assert panel.benchmark_name == "S&P 500"
    np.testing.assert_array_equal(panel.benchmark, index.iloc[:, 0].to_numpy(np.float32))
    assert panel.calendar == Calendar.us() and panel.is_clean


# ------------------------------------------------------------------------------------------ StockFormer
def _stockformer_frame(raw: dict[str, np.ndarray], factor: np.ndarray, dates) -> pd.DataFrame:
    """A StockFormer-format file: open/high/low raw, close adjusted, all divided by the max high."""
    scale = raw["high"].max()
    adjusted_close = raw["close"] * factor
    frame = pd.DataFrame({"date": dates})
    for name in ("open", "close", "high", "low"):
        frame[name] = (adjusted_close if name == "close" else raw[name]) / scale
    frame["volume"] = np.linspace(0, 1, len(dates))
    for name in ("open", "close", "high", "low", "volume"):
        frame["d" + name] = frame[name].diff().fillna(frame[name])
    frame["price"] = adjusted_close
    return frame


def test_stockformer_recovers_dividend_adjusted_ohlc(tmp_path):
    # Raw (unadjusted) bars; a dividend goes ex on day 4, so the adjustment factor is 0.9 before
    # and 1 from then on. Each factor period opens with a day closing at its high (pins the factor
    # from below for later days) and ends with one closing at its low (pins it from above for
    # earlier days), so the recovery must be exact.
    raw = {
        "open": np.array([10.0, 10.4, 10.1, 10.6, 9.7, 9.9, 10.2, 10.0]),
        "high": np.array([10.5, 10.6, 10.3, 10.8, 10.0, 10.3, 10.4, 10.2]),
        "low": np.array([9.8, 10.2, 9.9, 10.4, 9.5, 9.8, 10.0, 9.9]),
        "close": np.array([10.5, 10.3, 9.9, 10.4, 10.0, 10.1, 10.0, 9.9]),
    }
    factor = np.array([0.9] * 4 + [1.0] * 4)
    dates = pd.bdate_range("2020-01-01", periods=8).strftime("%Y-%m-%d")
    _stockformer_frame(raw, factor, dates).to_csv(tmp_path / "600000.SS.csv")
    half = {name: values / 2 for name, values in raw.items()}  # a second stock, no dividend
    _stockformer_frame(half, np.ones(8), dates).to_csv(tmp_path / "000001.SZ.csv")

    panel = load_stockformer(tmp_path)
    assert panel.tickers == ("000001.SZ", "600000.SS")
    assert panel.calendar == Calendar.china() and panel.name == tmp_path.name
    np.testing.assert_array_equal(panel.close[:, 1], (raw["close"] * factor).astype(np.float32))
    for name in ("open", "high", "low"):
        np.testing.assert_allclose(panel.field(name)[:, 1], raw[name] * factor, rtol=1e-6)
        np.testing.assert_allclose(panel.field(name)[:, 0], half[name], rtol=1e-6)
    assert not panel.volume.any()  # the normalized volume is not exposed


def test_stockformer_widens_high_low_to_cover_open_and_close():
    # Day 1's raw high is below its open (a data error, as on a few csi88 rows in 2010).
    price = np.array([[10.0], [10.0], [11.0]])
    close_n = price / 20
    open_n, high_n, low_n = (
        np.array([[0.5], [0.52], [0.55]]),
        np.array([[0.5], [0.51], [0.56]]),
        close_n.copy(),
    )
    result = recover_stockformer_ohlc(price, open_n, high_n, low_n, close_n)
    assert (result.high >= np.maximum(result.open, price) - 1e-12).all()
    assert (result.low <= np.minimum(result.open, price) + 1e-12).all()
    np.testing.assert_allclose(result.slope, [20.0])
    np.testing.assert_allclose(result.intercept, [0.0], atol=1e-12)
    assert result.fit_error[0] < 1e-12


def test_csi88_loads_and_trades_on_price(csi88_dir):
    # (load time is a benchmark matter, not a test: ~0.5 s for 88 files on the dev machine)
    panel = load_stockformer(csi88_dir)
    assert (panel.T, panel.N) == (2995, 88)
    assert (str(panel.start), str(panel.end)) == ("2010-01-04", "2022-05-06")
    assert panel.calendar.lot_size == 100 and panel.is_clean
    moutai = pd.read_csv(csi88_dir / "600519.SS.csv")
    np.testing.assert_array_equal(
        panel.close[:, panel.tickers.index("600519.SS")], moutai["price"].to_numpy(np.float32)
    )
    assert (panel.high >= np.maximum(panel.open, panel.close)).all()
    assert (panel.low <= np.minimum(panel.open, panel.close)).all()


def test_csi88_fit_error_and_price_limits(csi88_dir):
    files = sorted(csi88_dir.glob("*.csv"))
    frames = [pd.read_csv(f) for f in files]
    stack = {
        c: np.stack([f[c].to_numpy() for f in frames], axis=1)
        for c in ("price", "open", "high", "low", "close")
    }
    result = recover_stockformer_ohlc(
        stack["price"], stack["open"], stack["high"], stack["low"], stack["close"]
    )
    worst = int(np.argmax(result.fit_error))
    print(
        f"\nmax affine fit error {result.fit_error[worst]:.2%} ({files[worst].stem}); "
        f"max high/low widening {result.widening.max():.2%}"
    )
    assert (result.fit_error < 0.02).all()
    assert (result.widening < 0.02).all()
    # A-shares move at most 10% from the previous close (main boards), so the recovered highs and
    # lows must stay within 10% plus a tick of it. Applying the fit to the raw (unadjusted) open,
    # high and low without the dividend factor puts the median high 10% above the previous close.
    panel = load_stockformer(csi88_dir)
    main_board = np.array([not t.startswith(("300", "688")) for t in panel.tickers])
    up = panel.high[1:, main_board] / panel.close[:-1, main_board]
    down = panel.low[1:, main_board] / panel.close[:-1, main_board]
    assert np.quantile(up, 0.999) < 1.105 and np.quantile(down, 0.001) > 0.895
    assert abs(np.median(up) - 1) < 0.02


# ------------------------------------------------------------------------------------------ Yahoo dir
YAHOO_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"


def test_yahoo_dir_adjusts_ohlc_by_adj_close(tmp_path):
    (tmp_path / "AAA.csv").write_text(
        YAHOO_HEADER
        + "2020-01-02,10,11,9,10,5,100\n"
        + "2020-01-03,null,null,null,null,null,null\n"
        + "2020-01-06,12,13,11,12,9,200\n"
    )
    (tmp_path / "BBB.csv").write_text(YAHOO_HEADER + "2020-01-03,4,5,3,4,4,50\n2020-01-06,4,4,4,4,4,0\n")
    panel = load_yahoo_dir(tmp_path)
    assert panel.tickers == ("AAA", "BBB") and panel.calendar == Calendar.us()
    assert [str(d) for d in panel.dates] == ["2020-01-02", "2020-01-03", "2020-01-06"]
    np.testing.assert_allclose(panel.open[:, 0], [5.0, np.nan, 9.0])  # 10 * 5/10, 12 * 9/12
    np.testing.assert_allclose(panel.high[:, 0], [5.5, np.nan, 9.75])
    np.testing.assert_allclose(panel.low[:, 0], [4.5, np.nan, 8.25])
    np.testing.assert_allclose(panel.close[:, 0], [5.0, np.nan, 9.0])
    np.testing.assert_allclose(panel.volume[:, 0], [100, np.nan, 200])
    np.testing.assert_allclose(panel.close[:, 1], [np.nan, 4.0, 4.0])  # BBB starts a day later


def test_stocknet_dir(stocknet_price_dir):
    panel = load_yahoo_dir(stocknet_price_dir)
    assert (panel.T, panel.N) == (837, 87)
    aapl = panel.tickers.index("AAPL")
    first = pd.read_csv(stocknet_price_dir / "AAPL.csv").iloc[0]
    factor = first["Adj Close"] / first["Close"]
    assert panel.close[0, aapl] == np.float32(first["Adj Close"])
    np.testing.assert_allclose(panel.open[0, aapl], first["Open"] * factor, rtol=1e-6)
    abbv = panel.tickers.index("ABBV")
    first_abbv = int(np.flatnonzero(np.isfinite(panel.close[:, abbv]))[0])
    assert str(panel.dates[first_abbv]) == "2013-01-02" and np.isnan(panel.close[:first_abbv, abbv]).all()


# ------------------------------------------------------------------------------------------ long table
def test_table_csv_and_parquet_round_trip(tmp_path):
    panel = load_yahoo_dir_fixture(tmp_path / "dir")
    frame = panel.to_frame().sample(frac=1.0, random_state=0)  # row order must not matter
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    for file in ("t.csv", "t.parquet"):
        loaded = load_table(tmp_path / file)
        assert loaded.tickers == tuple(dict.fromkeys(frame["ticker"]))
        again = loaded.select(list(panel.tickers))
        np.testing.assert_array_equal(again.dates, panel.dates)
        for field in ("open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(again.field(field), panel.field(field))


def test_table_with_close_only(tmp_path):
    (tmp_path / "t.csv").write_text("date,ticker,close\n2021-01-04,X,10\n2021-01-05,X,11\n2021-01-04,Y,5\n")
    panel = load_table(tmp_path / "t.csv", calendar=Calendar.china())
    assert panel.calendar == Calendar.china() and panel.name == "t"
    np.testing.assert_array_equal(panel.open, panel.close)
    np.testing.assert_array_equal(panel.close[:, 1], [5.0, np.nan])
    assert not np.nan_to_num(panel.volume).any()


def load_yahoo_dir_fixture(directory: Path) -> Panel:
    directory.mkdir()
    (directory / "AAA.csv").write_text(
        YAHOO_HEADER + "2020-01-02,10,11,9,10,5,100\n2020-01-03,12,13,11,12,9,200\n"
    )
    (directory / "BBB.csv").write_text(YAHOO_HEADER + "2020-01-03,4,5,3,4,4,50\n")
    return load_yahoo_dir(directory)


# ------------------------------------------------------------------------------------------ bad input
GOOD_ROW = "2020-01-03,10,11,9,10,10,100\n"
BAD_FILES = {
    "missing column": (
        "Date,Open,High,Low,Close,Volume\n2020-01-02,10,11,9,10,1\n",
        "missing column(s) Adj Close",
    ),
    "bad number": (
        YAHOO_HEADER + "2020-01-02,10,1l,9,10,10,100\n",
        "line 2, column 'High': cannot read '1l'",
    ),
    "bad date": (
        YAHOO_HEADER + GOOD_ROW + "2020-13-45,10,11,9,10,10,100\n",
        "line 3: cannot read '2020-13-45' as a date",
    ),
    "unsorted": (
        YAHOO_HEADER + GOOD_ROW + "2020-01-02,10,11,9,10,10,100\n",
        "line 3: date out of order 2020-01-02",
    ),
    "duplicate": (YAHOO_HEADER + GOOD_ROW + GOOD_ROW, "line 3: duplicate date 2020-01-03"),
    "empty": ("", "not a readable CSV file"),
    "non-positive": (
        YAHOO_HEADER + "2020-01-02,10,11,9,-10,-10,100\n",
        "non-positive or infinite close price",
    ),
    "high below low": (YAHOO_HEADER + "2020-01-02,10,9,11,10,10,100\n", "high < low for BAD on 2020-01-02"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_malformed_yahoo_file_is_one_clear_data_error(tmp_path, case):
    content, expected = BAD_FILES[case]
    (tmp_path / "GOOD.csv").write_text(YAHOO_HEADER + GOOD_ROW)
    (tmp_path / "BAD.csv").write_text(content)
    with pytest.raises(DataError) as info:
        load_yahoo_dir(tmp_path)
    message = str(info.value)
    assert expected in message and "\n" not in message
    if case not in ("non-positive", "high below low"):  # those are found by Panel, by ticker and date
        assert "BAD.csv" in message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("date,ticker,open\n2020-01-02,X,1\n", "missing column(s) close"),
        ("date,ticker,close\n2020-01-02,X,1\n2020-01-02,,2\n", "t.csv, line 3: empty ticker"),
        ("date,ticker,close\n2020-01-02,X,abc\n", "t.csv, line 2, column 'close': cannot read 'abc'"),
        ("date,ticker,close\n2020-01-02,X,1\n2020-01-02,X,2\n", "duplicate row for X on 2020-01-02"),
    ],
)
def test_malformed_table(tmp_path, content, expected):
    (tmp_path / "t.csv").write_text(content)
    with pytest.raises(DataError) as info:
        load_table(tmp_path / "t.csv")
    assert expected in str(info.value)


def test_directories_and_paths(tmp_path):
    with pytest.raises(DataError, match="no .csv files"):
        load_stockformer(tmp_path)
    with pytest.raises(UserError, match="not a directory"):
        load_yahoo_dir(tmp_path / "nowhere")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(UserError, match="unknown table format"):
        load_table(tmp_path / "t.xlsx")


# ------------------------------------------------------------------------------------------ load_dataset
def test_load_dataset_parses_names(tmp_path):
    assert load_dataset("sp500").name == "sp500"
    directory = tmp_path / "dir"
    panel = load_yahoo_dir_fixture(directory)
    assert load_dataset(f"yahoo-dir:{directory}").tickers == panel.tickers
    panel.to_frame().to_csv(tmp_path / "t.csv", index=False)
    assert load_dataset(f"table:{tmp_path / 't.csv'}").tickers == panel.tickers
    assert set(DATASETS) == {"sp500", "stockformer:PATH", "yahoo-dir:PATH", "table:PATH", "yahoo:T1,T2,..."}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nasdaq", "unknown dataset 'nasdaq'; choose one of: sp500, stockformer:PATH"),
        ("sp500:x", "unknown dataset"),
        ("stockformer:", "needs an argument, e.g. stockformer:path/to/data"),
        ("yahoo:", "needs an argument, e.g. yahoo:AAPL,MSFT"),
        ("table:/no/such/file.csv", "/no/such/file.csv does not exist"),
    ],
)
def test_load_dataset_user_errors(spec, expected):
    with pytest.raises(UserError) as info:
        load_dataset(spec)
    assert expected in str(info.value)


# ------------------------------------------------------------------------------------------ yfinance
def recorded_download() -> pd.DataFrame:
    """A synthetic frame in the layout of `yfinance.download(..., group_by="column")` 1.x:
    a Date index and (Price, Ticker) MultiIndex columns."""
    return pd.read_csv(FIXTURES / "yfinance_download.csv", header=[0, 1], index_col=0, parse_dates=True)


@pytest.fixture()
def fake_yfinance(monkeypatch):
    yfinance = pytest.importorskip("yfinance")
    calls = []

    def download(tickers, **kwargs):
        calls.append((list(tickers), kwargs))
        frame = recorded_download()
        return frame.loc[:, frame.columns.get_level_values("Ticker").isin(tickers)]

    monkeypatch.setattr(yfinance, "download", download)
    return calls


def test_yahoo_downloads_once_then_reads_the_cache(tmp_path, fake_yfinance):
    panel = load_yahoo(["aapl", "MSFT"], start="2024-01-02", end="2024-01-08", cache_dir=tmp_path)
    assert len(fake_yfinance) == 1
    tickers, kwargs = fake_yfinance[0]
    assert tickers == ["AAPL", "MSFT"] and kwargs["start"] == "2024-01-02" and kwargs["end"] == "2024-01-09"
    assert panel.tickers == ("AAPL", "MSFT") and panel.T == 5 and panel.name == "yahoo:AAPL,MSFT"
    frame = recorded_download()
    np.testing.assert_array_equal(panel.close[:, 0], frame[("Close", "AAPL")].to_numpy(np.float32))
    assert np.isnan(panel.close[2, 1])  # MSFT's missing day stays NaN for cleaning
    assert len(list(tmp_path.glob("*.parquet"))) == 1

    again = load_yahoo(["AAPL", "MSFT"], start="2024-01-02", end="2024-01-08", cache_dir=tmp_path)
    assert len(fake_yfinance) == 1  # served from the cache
    for field in ("dates", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(again, field), getattr(panel, field))
    assert again.tickers == panel.tickers


def test_yahoo_cache_dir_from_environment(tmp_path, monkeypatch, fake_yfinance):
    monkeypatch.setenv("TRUSTFOLIO_CACHE", str(tmp_path))
    load_dataset("yahoo:AAPL")
    assert fake_yfinance[0][1]["period"] == "max"
    assert len(list((tmp_path / "yahoo").glob("*.parquet"))) == 1


def test_yahoo_errors(tmp_path, monkeypatch, fake_yfinance):
    with pytest.raises(UserError, match="unknown tickers NOPE"):
        load_yahoo(["AAPL", "NOPE"], cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.parquet"))  # nothing cached for a failed request
    with pytest.raises(UserError, match="inverted date range"):
        load_yahoo(["AAPL"], start="2024-02-01", end="2024-01-01", cache_dir=tmp_path)
    monkeypatch.setitem(sys.modules, "yfinance", None)  # as if the extra were not installed
    with pytest.raises(UserError, match=r"pip install 'trustfolio\[yahoo\]'"):
        load_yahoo(["AAPL"], cache_dir=tmp_path)
