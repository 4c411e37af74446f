"""The Panel core type: construction, validation messages, slicing, selection, returns, I/O."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trustfolio.data import Calendar, Panel
from trustfolio.errors import DataError, UserError


def make_panel(T: int = 6, N: int = 3, *, benchmark: bool = True) -> Panel:
    dates = pd.bdate_range("2021-01-04", periods=T).values
    close = (10.0 + np.arange(T)[:, None] * 1.0 + np.arange(N)[None, :] * 5.0).astype(np.float32)
    return Panel(
        dates=dates,
        tickers=tuple(f"S{n}" for n in range(N)),
        open=close - 0.5,
        high=close + 1.0,
        low=close - 1.0,
        close=close,
        volume=np.full((T, N), 1000.0, dtype=np.float32),
        benchmark=(100.0 + np.arange(T)).astype(np.float32) if benchmark else None,
        benchmark_name="IDX" if benchmark else None,
        calendar=Calendar.china(),
        name="toy",
    )


def test_arrays_are_float32_read_only_and_the_callers_array_untouched():
    panel = make_panel()
    assert panel.close.dtype == np.float32 and panel.dates.dtype == np.dtype("datetime64[D]")
    with pytest.raises(ValueError):
        panel.close[0, 0] = 1.0
    mine = np.ones((2, 1), dtype=np.float32)
    Panel(dates=pd.bdate_range("2021-01-04", periods=2).values, tickers=("A",), open=mine, high=mine,
          low=mine, close=mine, volume=mine)
    mine[0, 0] = 2.0  # still writable for its owner


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.update(dates=f["dates"][[1, 0, 2, 3, 4, 5]]), "not sorted"),
        (lambda f: f.update(dates=f["dates"][[0, 0, 2, 3, 4, 5]]), "duplicate date"),
        (lambda f: f["close"].__setitem__((2, 1), -3.0), "non-positive"),
        (lambda f: f["high"].__setitem__((2, 1), 1.0), "high < low"),
        (lambda f: f.update(tickers=("S0", "S0", "S2")), "duplicate tickers"),
        (lambda f: f["volume"].__setitem__((0, 0), -1.0), "negative volume"),
    ],
)
def test_validation_names_what_and_where(change, message):
    base = make_panel()
    kwargs = {k: getattr(base, k).copy() if isinstance(getattr(base, k), np.ndarray) else getattr(base, k)
              for k in ("dates", "tickers", "open", "high", "low", "close", "volume")}
    change(kwargs)
    with pytest.raises(DataError, match=message):
        Panel(**kwargs, name="toy")


def test_nan_is_allowed_and_marks_an_unclean_panel():
    panel = make_panel()
    close = panel.close.copy()
    close[3, 0] = np.nan
    other = Panel(dates=panel.dates, tickers=panel.tickers, open=panel.open, high=panel.high, low=panel.low,
                  close=close, volume=panel.volume)
    assert panel.is_clean and not other.is_clean


def test_slice_is_inclusive_snaps_to_trading_days_and_rejects_bad_ranges():
    panel = make_panel(T=10)
    part = panel.slice("2021-01-05", "2021-01-08")
    assert [str(d) for d in part.dates] == ["2021-01-05", "2021-01-06", "2021-01-07", "2021-01-08"]
    np.testing.assert_array_equal(part.close, panel.close[1:5])
    np.testing.assert_array_equal(part.benchmark, panel.benchmark[1:5])
    weekend = panel.slice("2021-01-09", "2021-01-12")  # Saturday → Monday; end inclusive
    assert [str(d) for d in weekend.dates] == ["2021-01-11", "2021-01-12"]
    with pytest.raises(UserError, match="inverted"):
        panel.slice("2021-01-08", "2021-01-05")
    with pytest.raises(UserError, match="after the last date"):
        panel.slice("2030-01-01", None)
    with pytest.raises(UserError, match="no trading days"):
        panel.slice("2021-01-09", "2021-01-10")
    with pytest.raises(UserError, match="as a date"):
        panel.slice("yesterday-ish", None)


def test_take_days_is_a_cheap_view_with_the_same_content():
    panel = make_panel(T=10)
    head = panel.take_days(slice(0, 4))
    assert head.T == 4 and np.shares_memory(head.close, panel.close)
    assert head.content_hash() == panel.slice(None, panel.dates[3]).content_hash()


def test_select_reorders_and_rejects_unknown_tickers():
    panel = make_panel()
    chosen = panel.select(["S2", "S0"])
    assert chosen.tickers == ("S2", "S0")
    np.testing.assert_array_equal(chosen.close[:, 0], panel.close[:, 2])
    with pytest.raises(UserError, match="unknown tickers NOPE"):
        panel.select(["S1", "NOPE"])


def test_returns_are_simple_close_to_close_with_a_zero_first_row():
    panel = make_panel(T=3, N=1, benchmark=True)
    np.testing.assert_allclose(panel.returns()[:, 0], [0.0, 11 / 10 - 1, 12 / 11 - 1], rtol=1e-6)
    np.testing.assert_allclose(panel.benchmark_returns(), [0.0, 101 / 100 - 1, 102 / 101 - 1], rtol=1e-6)


def test_frame_round_trip_and_hash_sensitivity():
    panel = make_panel()
    frame = panel.to_frame()
    assert list(frame.columns) == ["date", "ticker", "open", "high", "low", "close", "volume"]
    assert len(frame) == panel.T * panel.N
    bench = pd.Series(panel.benchmark, index=pd.to_datetime(panel.dates))
    again = Panel.from_frame(frame.sample(frac=1.0, random_state=0), benchmark=bench, benchmark_name="IDX",
                             calendar=Calendar.china(), name="toy")
    assert again.content_hash() == panel.content_hash()
    close = panel.close.copy()
    close[-1, -1] *= 1.0001
    changed = Panel(dates=panel.dates, tickers=panel.tickers, open=panel.open, high=np.maximum(panel.high, close),
                    low=panel.low, close=close, volume=panel.volume, benchmark=panel.benchmark,
                    calendar=Calendar.china())
    assert changed.content_hash() != panel.content_hash()


def test_from_frame_reports_duplicates_and_missing_columns():
    frame = make_panel().to_frame()
    with pytest.raises(DataError, match="duplicate row for S0"):
        Panel.from_frame(pd.concat([frame, frame.iloc[:1]]), name="toy")
    with pytest.raises(DataError, match="missing columns close"):
        Panel.from_frame(frame.drop(columns="close"), name="toy")


def test_missing_rows_become_nan():
    frame = make_panel().to_frame()
    panel = Panel.from_frame(frame.drop(index=4), name="toy")  # day 1 of S1
    assert np.isnan(panel.close[1, 1]) and not panel.is_clean


@pytest.mark.parametrize("text", ["01/04/2019", "04.01.2019", "2019/01/04", "20190104", "2019-1-4", "Jan 4 2019", "2019-02-30"])
def test_to_day_refuses_anything_but_iso_text(text):
    from trustfolio.data.panel import to_day

    with pytest.raises(UserError, match="YYYY-MM-DD"):
        to_day(text)


def test_to_day_reads_iso_text_and_python_date_objects():
    import datetime

    from trustfolio.data.panel import to_day

    expected = np.datetime64("2019-01-04", "D")
    for value in ("2019-01-04", datetime.date(2019, 1, 4), datetime.datetime(2019, 1, 4, 15, 30),
                  pd.Timestamp("2019-01-04"), np.datetime64("2019-01-04"), np.datetime64("2019-01-04T10:00")):  # fmt: skip
        assert to_day(value) == expected
    with pytest.raises(UserError, match="YYYY-MM-DD"):
        to_day(20190104)
