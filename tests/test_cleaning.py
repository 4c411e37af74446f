"""Cleaning: coverage filter, causal fill, gap policy, report, and the no-look-ahead guarantee."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from trustfolio.data.cleaning import clean
from trustfolio.data.loaders import load_sp500, load_stockformer, load_yahoo_dir
from trustfolio.data.panel import FIELDS, Panel
from trustfolio.errors import DataError, UserError

nan = np.nan


def f32(x: float) -> np.float64:
    """A value as the panel stores it (float32), widened back to float64 as cleaning computes."""
    return np.float64(np.float32(x))


def make_panel(close, *, benchmark=None, open_=None, tickers=None) -> Panel:
    close = np.asarray(close, dtype=np.float64).T  # rows of the literal are stocks; the panel wants [T, N]
    T, N = close.shape
    opened = close if open_ is None else np.asarray(open_, dtype=np.float64).T
    return Panel(
        dates=np.datetime64("2021-01-04") + np.arange(T),  # calendar days are fine for a toy panel
        tickers=tickers or tuple("ABCDEFGH"[:N]),
        open=opened,
        high=np.fmax(close, opened),
        low=np.fmin(close, opened),
        close=close,
        volume=np.where(np.isfinite(close), 100.0, nan),
        benchmark=benchmark,
        benchmark_name=None if benchmark is None else "Index",
        name="toy",
    )


def test_fill_with_equal_weight_market_change():
    panel = make_panel(
        [
            [10.0, 11.0, nan, nan, 12.0],
            [20.0, 22.0, 24.2, 26.62, 26.0],
            [5.0, 5.0, 5.0, 5.5, 5.0],
        ]
    )
    cleaned, report = clean(panel, min_coverage=0.5)
    # day 2: B +10%, C +0% -> +5%; day 3: B +10%, C +10% -> +10% (A is not traded on either).
    day2 = 11.0 * (1 + ((f32(24.2) / f32(22.0) - 1) + (5.0 / 5.0 - 1)) / 2)
    day3 = day2 * (1 + ((f32(26.62) / f32(24.2) - 1) + (5.5 / 5.0 - 1)) / 2)
    assert abs(day2 / 11.0 - 1.05) < 1e-6 and abs(day3 / day2 - 1.10) < 1e-6
    expected = np.array([10.0, 11.0, day2, day3, 12.0], dtype=np.float32)
    np.testing.assert_array_equal(cleaned.close[:, 0], expected)
    for field in ("open", "high", "low"):
        np.testing.assert_array_equal(cleaned.field(field)[2:4, 0], expected[2:4])
    np.testing.assert_array_equal(cleaned.volume[:, 0], [100, 100, 0, 0, 100])
    np.testing.assert_array_equal(cleaned.close[:, 1:], panel.close[:, 1:])
    assert cleaned.is_clean
    assert report.filled == {"A": 2} and report.dropped == {}
    assert report.fill_source == "equal-weight average of the traded stocks"


def test_fill_with_benchmark_change_and_fallback_where_it_is_missing():
    benchmark = np.array([100.0, 102.0, 99.0, nan, 110.0])
    panel = make_panel([[10.0, nan, nan, nan, 11.0], [20.0, 21.0, 22.0, 23.1, 24.0]], benchmark=benchmark)
    cleaned, report = clean(panel, min_coverage=0.0)
    day1 = 10.0 * (1 + (102.0 / 100.0 - 1))
    day2 = day1 * (1 + (99.0 / 102.0 - 1))
    day3 = day2 * (1 + (f32(23.1) / f32(22.0) - 1))  # index missing that day: the stocks' average
    np.testing.assert_array_equal(
        cleaned.close[:, 0], np.array([10.0, day1, day2, day3, 11.0], dtype=np.float32)
    )
    # The benchmark itself is carried forward where missing.
    np.testing.assert_array_equal(cleaned.benchmark, np.array([100, 102, 99, 99, 110], dtype=np.float32))
    assert report.benchmark_filled == 1
    assert report.fill_source == "benchmark Index (equal-weight average where it is missing)"


def test_coverage_is_measured_on_training_days_only():
    # A misses 1 of the first 4 days (75%) and B misses 1 day after them.
    panel = make_panel([[1.0, nan, 1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0, nan, 2.0], [3.0] * 6])
    cleaned, report = clean(panel, train_end="2021-01-07", min_coverage=0.98)
    assert cleaned.tickers == ("B", "C")
    assert report.dropped == {"A": "traded on 75.0% of training days, below 98%"}
    assert report.filled == {"B": 1}
    _, lenient = clean(panel, train_end="2021-01-07", min_coverage=0.75)
    assert lenient.kept == ("A", "B", "C")


def test_stock_listed_after_the_start_is_dropped():
    panel = make_panel([[nan, nan, 5.0, 5.0], [1.0, 1.0, 1.0, 1.0]])
    cleaned, report = clean(panel, min_coverage=0.0)
    assert cleaned.tickers == ("B",)
    assert report.dropped["A"].startswith("listed after the panel start, first price on 2021-01-06")


@pytest.mark.parametrize("where", ["interior", "trailing"])
def test_gap_longer_than_max_gap_is_an_error(where):
    gap = [1.0, nan, nan, nan, 1.0] if where == "interior" else [1.0, 1.0, nan, nan, nan]
    panel = make_panel([gap, [2.0] * 5])
    clean(panel, min_coverage=0.0, max_gap=3)  # a run of exactly max_gap days is filled
    with pytest.raises(DataError) as info:
        clean(panel, min_coverage=0.0, max_gap=2)
    first, last = ("2021-01-05", "2021-01-07") if where == "interior" else ("2021-01-06", "2021-01-08")
    message = str(info.value)
    assert f"A has no price from {first} to {last} (3 trading days)" in message
    assert "beyond the fill policy (max_gap=2)" in message


def test_traded_day_missing_open_high_low_is_completed():
    panel = make_panel([[10.0, 11.0, 12.0]], open_=[[10.0, 11.5, 12.0]])
    panel = replace(panel, high=np.array([[10.0], [nan], [12.0]]), low=np.array([[10.0], [nan], [nan]]))
    cleaned, report = clean(panel)
    np.testing.assert_array_equal(cleaned.high[:, 0], [10.0, 11.5, 12.0])
    np.testing.assert_array_equal(cleaned.low[:, 0], [10.0, 11.0, 12.0])
    assert report.completed == {"A": 2} and report.filled == {}


def test_report_summary_and_dict():
    panel = make_panel([[nan, 1.0, 1.0], [1.0, nan, 1.0], [1.0, 1.0, 1.0]])
    _, report = clean(panel, min_coverage=0.5)
    text = report.summary()
    assert "Kept 2 of 3 stocks, dropped 1: A (listed after the panel start" in text
    assert "Filled 1 suspended stock-days in 1 stocks (B 1)" in text and "\n" not in text
    assert json.loads(json.dumps(report.to_dict()))["dropped"] == report.dropped


def test_bad_arguments():
    panel = make_panel([[1.0, 1.0, 1.0]])
    with pytest.raises(UserError, match="inverted date range"):
        clean(panel, train_start="2021-01-06", train_end="2021-01-04")
    with pytest.raises(UserError, match="after the last date"):
        clean(panel, train_start="2022-01-01")
    with pytest.raises(UserError, match="min_coverage"):
        clean(panel, min_coverage=98)
    with pytest.raises(DataError, match="no stock left"):
        clean(make_panel([[nan, 1.0, 1.0]]))


# ------------------------------------------------------------------------------------------ real data
def test_csi88_comes_out_unchanged(csi88_dir):
    panel = load_stockformer(csi88_dir)
    cleaned, report = clean(panel, train_end="2019-03-29")
    assert cleaned.tickers == panel.tickers and not report.dropped and not report.filled
    for field in FIELDS:
        np.testing.assert_array_equal(cleaned.field(field), panel.field(field))


def test_stocknet_drops_the_late_starters(stocknet_price_dir):
    cleaned, report = clean(load_yahoo_dir(stocknet_price_dir))
    assert sorted(report.dropped) == ["ABBV", "AGFS", "BABA"]
    assert cleaned.N == 84 and cleaned.is_clean and np.isfinite(cleaned.high).all()


def punch_holes(panel: Panel, rng: np.random.Generator, before: int) -> Panel:
    """The same panel with short suspensions (1-5 days) at random places before day `before`."""
    fields = {name: panel.field(name).copy() for name in FIELDS}
    for _ in range(40):
        j, t, length = rng.integers(panel.N), rng.integers(1, before - 5), rng.integers(1, 6)
        for name in FIELDS:
            fields[name][t : t + length, j] = nan
    bench = None if panel.benchmark is None else panel.benchmark.copy()
    if bench is not None:
        bench[rng.integers(1, before, 5)] = nan
    return replace(panel, benchmark=bench, **fields)


def garbage_after(panel: Panel, t: int, rng: np.random.Generator) -> Panel:
    """`panel` with every value after day t replaced by random positive prices, 5% of them NaN."""
    rows = panel.T - t - 1
    close = rng.uniform(0.5, 500.0, (rows, panel.N))
    open_ = close * rng.uniform(0.8, 1.2, close.shape)
    missing = rng.random(close.shape) < 0.05
    new = {
        "close": close,
        "open": open_,
        "high": np.maximum(open_, close) * rng.uniform(1.0, 1.1, close.shape),
        "low": np.minimum(open_, close) * rng.uniform(0.9, 1.0, close.shape),
        "volume": rng.uniform(0, 1e6, close.shape),
    }
    fields = {
        name: np.concatenate([panel.field(name)[: t + 1], np.where(missing, nan, new[name])])
        for name in FIELDS
    }
    bench = None
    if panel.benchmark is not None:
        tail = np.where(rng.random(rows) < 0.05, nan, rng.uniform(1.0, 1e4, rows))
        bench = np.concatenate([panel.benchmark[: t + 1], tail])
    return replace(panel, benchmark=bench, **fields)


@pytest.mark.parametrize("dataset", ["csi88", "sp500"])
def test_cleaning_never_looks_ahead(dataset, request):
    if dataset == "csi88":
        panel = load_stockformer(request.getfixturevalue("csi88_dir"))
        train_end, checkpoints = 400, (450, 1200, 2500)
    else:
        panel = load_sp500()
        train_end, checkpoints = 1500, (1600, 5000, 8000)
    rng = np.random.default_rng(7)
    holed = punch_holes(panel, rng, before=checkpoints[0])
    for t in checkpoints:
        # Three stocks are also suspended on days t-2..t, so day t itself holds filled values.
        fields = {name: holed.field(name).copy() for name in FIELDS}
        for name in FIELDS:
            fields[name][t - 2 : t + 1, :3] = nan
        suspended = replace(holed, **fields)
        # The garbage is full of one-day spikes, which the default policy would refuse; `warn` keeps
        # every price, so the comparison below is about the fill, as before.
        reference, reference_report = clean(suspended, train_end=holed.dates[train_end], on_outliers="warn")
        assert sum(reference_report.filled.values()) > 3 * 3  # the fill path is exercised
        cleaned, report = clean(
            garbage_after(suspended, t, rng), train_end=holed.dates[train_end], on_outliers="warn"
        )
        assert cleaned.tickers == reference.tickers and report.dropped == reference_report.dropped
        for field in FIELDS:
            assert np.array_equal(
                cleaned.field(field)[: t + 1], reference.field(field)[: t + 1], equal_nan=False
            )
        if reference.benchmark is not None:
            assert np.array_equal(cleaned.benchmark[: t + 1], reference.benchmark[: t + 1])


# ------------------------------------------------------------------------------------------ outliers
def walk_panel(days: int = 300, *, volume: float = 100.0, seed: int = 3) -> Panel:
    """Three calm random walks (1 % daily volatility) on business days, as a loader returns them."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (3, days)), axis=1))
    panel = make_panel(close)
    dates = np.busday_offset(np.datetime64("2021-01-04"), np.arange(days), roll="forward")
    return replace(panel, dates=dates, volume=np.full((days, 3), volume))


def with_close(panel: Panel, column: int, rows, factor) -> Panel:
    """`panel` with the close (and open/high/low) of one stock multiplied by `factor` on `rows`."""
    fields = {name: panel.field(name).astype(np.float64) for name in FIELDS}
    for name in ("open", "high", "low", "close"):
        fields[name][rows, column] *= factor
    return replace(panel, **fields)


def test_a_close_multiplied_by_100_for_one_day_is_refused_in_one_line_naming_ticker_and_date():
    spiked = with_close(walk_panel(), 1, 200, 100.0)
    with pytest.raises(DataError) as info:
        clean(spiked)
    message = str(info.value)
    assert "B" in message and str(spiked.dates[200]) in message and "\n" not in message
    assert "on_outliers" in message  # says how to go on anyway


def test_warn_keeps_the_data_and_reports_the_spike():
    spiked = with_close(walk_panel(), 1, 200, 100.0)
    cleaned, report = clean(spiked, on_outliers="warn")
    np.testing.assert_array_equal(cleaned.close, spiked.close)
    assert report.spikes == {"B": [str(spiked.dates[200])]} and report.on_outliers == "warn"
    assert f"B on {spiked.dates[200]}" in report.summary()
    assert json.loads(json.dumps(report.to_dict()))["spikes"] == report.spikes


def test_clip_fills_the_spike_day_like_a_suspended_day():
    calm = walk_panel()
    spiked = with_close(calm, 1, 200, 0.01)  # a close divided by 100 is a spike too
    cleaned, report = clean(spiked, on_outliers="clip")
    assert report.spikes == {"B": [str(spiked.dates[200])]}
    untouched, _ = clean(calm)
    rate = np.mean([f32(calm.close[200, j]) / f32(calm.close[199, j]) - 1 for j in (0, 2)])
    assert cleaned.close[200, 1] == np.float32(f32(calm.close[199, 1]) * (1 + rate))
    mask = np.ones(calm.close.shape, bool)
    mask[200, 1] = False
    np.testing.assert_array_equal(cleaned.close[mask], untouched.close[mask])


@pytest.mark.parametrize(
    ("rows", "factor", "why"),
    [
        (slice(200, None), 0.35, "a crash that does not revert"),
        (slice(200, 201), 1.3, "a 30 % one-day round trip: under the 50 % floor"),
    ],
)
def test_real_moves_are_not_spikes(rows, factor, why):
    _, report = clean(with_close(walk_panel(), 1, rows, factor))
    assert report.spikes == {}, why


def test_the_volatility_yardstick_is_trailing():
    # A wild stock (20 % daily moves) makes a ×1.8 round trip ordinary; the same round trip after a
    # calm history is a spike, however wild the days after it are.
    rng = np.random.default_rng(5)
    panel = walk_panel()
    close = panel.close.astype(np.float64)
    wild = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.2, 300)))
    close[:, 2] = np.where(np.arange(300) < 150, wild, close[:, 2])  # wild before day 150 only
    close[:, 0] = np.where(np.arange(300) > 201, wild, close[:, 0])  # wild after day 201 only
    panel = replace(panel, close=close, open=close, high=close, low=close)
    spiked = with_close(with_close(panel, 2, 100, 1.8), 0, 200, 1.8)
    _, report = clean(spiked, on_outliers="warn")
    assert report.spikes == {"A": [str(panel.dates[200])]}


def test_a_constant_close_with_trading_volume_is_refused_but_a_suspension_is_reported():
    calm = walk_panel()
    close = calm.close.astype(np.float64)
    close[100:115, 0] = close[99, 0]  # 15 more days at the same close
    stale = replace(calm, close=close, open=close, high=close, low=close)
    with pytest.raises(DataError, match=f"A .*same close.*{stale.dates[99]}"):
        clean(stale)
    volume = stale.volume.copy()
    volume[100:115, 0] = 0.0  # no trading: a suspension the source carried forward
    _, report = clean(replace(stale, volume=volume))
    assert report.flat_runs == {} and report.suspended_runs == {"A": [f"{stale.dates[99]} → {stale.dates[114]} (16 days)"]}


def test_outlier_option_is_checked():
    with pytest.raises(UserError, match="fail, warn, clip"):
        clean(walk_panel(), on_outliers="ignore")


def test_sp500_loads_with_the_default_outlier_policy():
    _, report = clean(load_sp500())
    assert report.spikes == {} and report.flat_runs == {}
