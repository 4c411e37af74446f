"""Features: stockstats indicators, trailing covariance, labels, train-only normalizer, cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import stockstats

from trustfolio.data import features
from trustfolio.data.features import (
    INDICATOR_WARMUP,
    INDICATORS,
    PRICE_UNIT_INDICATORS,
    STATE_COLUMNS,
    FeatureConfig,
    Normalizer,
    build_features,
    compute_indicators,
    daily_returns,
    forward_returns,
    trailing_covariance,
)
from trustfolio.data.panel import FIELDS, Panel
from trustfolio.errors import DataError, UserError

TRAIN = ("2020-04-01", "2020-12-31")  # starts after the 60-day warm-up


def random_panel(T: int = 400, N: int = 4, seed: int = 0) -> Panel:
    """A random-walk OHLCV panel on business days from 2020-01-01 (high >= open, close >= low)."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.01, (T, N)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, (T, N)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, (T, N)))
    volume = rng.uniform(1e5, 1e6, (T, N))
    dates = pd.bdate_range("2020-01-01", periods=T).to_numpy().astype("datetime64[D]")
    return Panel(
        dates=dates,
        tickers=tuple(f"S{n}" for n in range(N)),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=volume,
        name="random",
    )


def stockstats_reference(panel: Panel, n: int, first: int = 0) -> np.ndarray:
    """What stockstats itself gives on stock n's OHLCV frame from day `first`, as float32."""
    frame = pd.DataFrame({name: panel.field(name)[first:, n].astype(np.float64) for name in FIELDS})
    return stockstats.wrap(frame)[list(INDICATORS)].to_numpy().astype(np.float32)


def with_field(panel: Panel, **fields: np.ndarray) -> Panel:
    return replace(panel, **fields)


# ---------------------------------------------------------------------------------------- indicators
def test_indicators_are_exactly_stockstats_per_stock() -> None:
    panel = random_panel()
    before = {name: panel.field(name).copy() for name in FIELDS}
    values = compute_indicators(panel)
    assert values.shape == (panel.T, panel.N, 8) and values.dtype == np.float32
    for n in range(panel.N):
        assert np.array_equal(values[:, n], stockstats_reference(panel, n), equal_nan=True)
    for name in FIELDS:  # the panel is not mutated
        assert np.array_equal(panel.field(name), before[name])
    # stockstats' own warm-up NaN: Bollinger bands on day 0 (std of one value); nothing after.
    assert np.isnan(values[0, :, 1:3]).all()
    assert np.isfinite(values[1:]).all()


def test_indicators_match_stockstats_on_csi88(csi88_dir: Path) -> None:
    panel = _load_csi88(csi88_dir)
    values = compute_indicators(panel)
    for n in (0, 37, panel.N - 1):
        assert np.array_equal(values[:, n], stockstats_reference(panel, n), equal_nan=True)


def test_late_listed_stock_starts_its_own_history_and_untraded_days_are_nan() -> None:
    panel = random_panel()
    close = panel.close.copy()
    close[:100, 2] = np.nan  # listed on day 100
    close[250, 1] = np.nan  # one suspended day
    panel = with_field(panel, close=close)
    values = compute_indicators(panel)
    assert np.isnan(values[:100, 2]).all()
    assert np.array_equal(values[100:, 2], stockstats_reference(panel, 2, first=100), equal_nan=True)
    assert np.isnan(values[250, 1]).all() and np.isfinite(values[251:, 1]).any()


def test_close_only_prices_give_finite_indicators_after_warmup(tmp_path: Path) -> None:
    """The sp500 case: skfolio's closes with open = high = low = close and volume = 0."""
    from skfolio.datasets import load_sp500_dataset

    prices = load_sp500_dataset().iloc[:1500]
    close = prices.to_numpy(dtype=np.float32)
    panel = Panel(
        dates=prices.index.to_numpy().astype("datetime64[D]"),
        tickers=tuple(prices.columns),
        open=close,
        high=close,
        low=close,
        close=close,
        volume=np.zeros_like(close),
    )
    values = compute_indicators(panel)
    # Finite after the warm-up, except dx_30 while a stock's price has not moved yet: its average true
    # range is 0 and stockstats' +DI/-DI are 0/0 (one stock here, RRC, is flat for its first 69 days).
    moved = np.zeros_like(close, dtype=bool)
    moved[1:] = np.logical_or.accumulate(close[1:] != close[:-1], axis=0)
    after_warmup = np.arange(panel.T)[:, None] >= INDICATOR_WARMUP
    assert np.isfinite(values[after_warmup & moved]).all()
    dx = values[:, :, INDICATORS.index("dx_30")]
    assert np.isnan(dx[~moved]).all() and np.isfinite(np.delete(values, 5, axis=2)[after_warmup[:, 0]]).all()
    assert np.array_equal(values[:, 5], stockstats_reference(panel, 5), equal_nan=True)
    states = build_features(
        panel, train_start=panel.dates[100], train_end=panel.dates[999], cache_dir=tmp_path
    ).market_states()
    assert np.isfinite(states.h).all()
    assert (states.h[:, :, STATE_COLUMNS.index("volume")] == 0).all()  # constant volume scales to 0


# ---------------------------------------------------------------------------------------- covariance, labels
def test_trailing_covariance_matches_np_cov() -> None:
    panel = random_panel(T=320, N=5)
    window, min_periods = 60, 20
    cov = trailing_covariance(panel, window, min_periods=min_periods)
    returns = daily_returns(panel)
    assert cov.shape == (320, 5, 5) and cov.dtype == np.float32
    assert np.isnan(cov[:min_periods]).all()
    for t in (min_periods, 45, window, window + 1, 200, 319):
        expected = np.cov(returns[max(1, t - window + 1) : t + 1], rowvar=False)
        np.testing.assert_allclose(cov[t], expected, rtol=1e-5, atol=1e-12)
        assert np.array_equal(cov[t], cov[t].T)


def test_trailing_covariance_rejects_bad_windows() -> None:
    panel = random_panel(T=50, N=2)
    with pytest.raises(UserError, match="window"):
        trailing_covariance(panel, 1)
    with pytest.raises(UserError, match="min_periods"):
        trailing_covariance(panel, 30, min_periods=40)


def test_forward_returns_are_future_close_ratios_with_nan_tail() -> None:
    panel = random_panel(T=30, N=3)
    labels = forward_returns(panel, (1, 5))
    close = panel.close.astype(np.float64)
    assert labels.shape == (30, 3, 2) and labels.dtype == np.float32
    np.testing.assert_allclose(labels[10, :, 0], close[11] / close[10] - 1, rtol=1e-6)
    np.testing.assert_allclose(labels[10, :, 1], close[15] / close[10] - 1, rtol=1e-6)
    assert np.isnan(labels[-1:, :, 0]).all() and np.isfinite(labels[:-1, :, 0]).all()
    assert np.isnan(labels[-5:, :, 1]).all() and np.isfinite(labels[:-5, :, 1]).all()
    with pytest.raises(UserError, match="horizons"):
        forward_returns(panel, (0,))


# ---------------------------------------------------------------------------------------- normalizer
def test_normalizer_follows_paper_eq_6_7_on_the_training_window() -> None:
    panel = random_panel()
    indicators = compute_indicators(panel)
    norm = Normalizer.fit(panel, indicators, train_start=TRAIN[0], train_end=TRAIN[1])
    state = norm.transform(panel, indicators)
    assert state.shape == (panel.T, panel.N, len(STATE_COLUMNS)) and state.dtype == np.float32
    assert np.isfinite(state).all()  # day-0 Bollinger NaN became 0
    assert (state[0, :, STATE_COLUMNS.index("boll_ub")] == 0).all()
    i0, i1 = panel.span(*TRAIN)
    train = state[i0:i1].astype(np.float64)
    col = {name: k for k, name in enumerate(STATE_COLUMNS)}
    # One price factor per stock: min(low) -> 0 and max(high) -> 1 over the training days.
    np.testing.assert_allclose(train[:, :, col["low"]].min(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(train[:, :, col["high"]].max(axis=0), 1, atol=1e-6)
    np.testing.assert_allclose(train[:, :, col["volume"]].min(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(train[:, :, col["volume"]].max(axis=0), 1, atol=1e-6)
    low, high = panel.low[i0:i1].astype(np.float64), panel.high[i0:i1].astype(np.float64)
    for name in PRICE_UNIT_INDICATORS:
        raw = indicators[:, :, INDICATORS.index(name)].astype(np.float64)
        expected = (raw - low.min(axis=0)) / (high.max(axis=0) - low.min(axis=0))
        np.testing.assert_allclose(state[1:, :, col[name]], expected[1:], rtol=1e-5, atol=1e-6)
    for name in ("macd", "rsi_30", "cci_30", "dx_30"):
        np.testing.assert_allclose(train[:, :, col[name]].mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(train[:, :, col[name]].std(axis=0), 1, atol=1e-5)


def test_normalizer_ignores_data_outside_the_training_window(tmp_path: Path) -> None:
    panel = random_panel()
    i0, i1 = panel.span(*TRAIN)
    fitted = Normalizer.fit(panel, compute_indicators(panel), train_start=TRAIN[0], train_end=TRAIN[1])

    def scramble(rows: slice) -> Panel:
        fields = {name: panel.field(name).copy() for name in FIELDS}
        for name in FIELDS:
            fields[name][rows] *= 3.0
        return with_field(panel, **fields)

    after = scramble(slice(i1, None))
    refit = Normalizer.fit(after, compute_indicators(after), train_start=TRAIN[0], train_end=TRAIN[1])
    for name, value in fitted.to_arrays().items():
        assert np.array_equal(refit.to_arrays()[name], value), name
    # Before the window only the indicators' look-back changes; price and volume factors do not.
    before = scramble(slice(0, i0))
    refit = Normalizer.fit(before, compute_indicators(before), train_start=TRAIN[0], train_end=TRAIN[1])
    for name in ("price_min", "price_scale", "volume_min", "volume_scale"):
        assert np.array_equal(getattr(refit, name), getattr(fitted, name)), name

    fitted.save(tmp_path / "norm.npz")
    loaded = Normalizer.load(tmp_path / "norm.npz")
    for name, value in fitted.to_arrays().items():
        assert np.array_equal(loaded.to_arrays()[name], value)


def test_normalizer_rejects_a_training_window_inside_the_warmup() -> None:
    panel = random_panel()
    with pytest.raises(UserError, match="warm-up"):
        Normalizer.fit(
            panel, compute_indicators(panel), train_start=panel.dates[0], train_end=panel.dates[30]
        )


# ---------------------------------------------------------------------------------------- build + cache
def test_build_features_caches_and_second_call_does_not_recompute(tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = features.compute_indicators
    monkeypatch.setattr(features, "compute_indicators", lambda panel: calls.append(1) or real(panel))
    panel = random_panel()
    config = FeatureConfig(covariance_window=60)
    first = build_features(panel, config, train_start=TRAIN[0], train_end=TRAIN[1], cache_dir=tmp_path)
    second = build_features(panel, config, train_start=TRAIN[0], train_end=TRAIN[1], cache_dir=tmp_path)
    assert len(calls) == 1
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]  # no temporary file left behind
    for name in ("indicators", "covariance", "labels", "normalized"):
        assert np.array_equal(getattr(first, name), getattr(second, name), equal_nan=True), name
    assert np.array_equal(first.dates, second.dates) and first.tickers == second.tickers
    assert (second.train_start, second.train_end) == (first.train_start, first.train_end)
    for name, value in first.normalizer.to_arrays().items():
        assert np.array_equal(second.normalizer.to_arrays()[name], value)
    # Another training window or config is another cache entry; so is changed data.
    build_features(panel, config, train_start=TRAIN[0], train_end="2020-11-30", cache_dir=tmp_path)
    build_features(panel, FeatureConfig(), train_start=TRAIN[0], train_end=TRAIN[1], cache_dir=tmp_path)
    assert len(calls) == 3
    # A corrupt cache file is recomputed, not trusted.
    for path in tmp_path.iterdir():
        path.write_bytes(b"garbage")
    build_features(panel, config, train_start=TRAIN[0], train_end=TRAIN[1], cache_dir=tmp_path)
    assert len(calls) == 4


def test_build_features_uses_the_cache_env_variable(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TRUSTFOLIO_CACHE", str(tmp_path))
    build_features(random_panel(T=120, N=2), train_start="2020-03-30", train_end="2020-05-29")
    assert len(list((tmp_path / "features").glob("features-*.npz"))) == 1


def test_market_states_are_nan_free_float32_with_named_columns(tmp_path: Path) -> None:
    panel = random_panel()
    built = build_features(panel, train_start=TRAIN[0], train_end=TRAIN[1], cache_dir=tmp_path)
    states = built.market_states()
    assert states.h.shape == (panel.T, panel.N, 13) and states.h.dtype == np.float32
    assert states.columns == (*FIELDS, *INDICATORS) and np.array_equal(states.dates, panel.dates)
    assert np.isfinite(states.h).all()
    with_cov = built.market_states(covariance=True)
    assert with_cov.h.shape == (panel.T, panel.N, 13 + panel.N) and with_cov.h.dtype == np.float32
    assert with_cov.columns[13:] == tuple(f"cov:{t}" for t in panel.tickers)
    assert np.isfinite(with_cov.h).all()
    t = 300
    np.testing.assert_array_equal(with_cov.h[t, :, 13:], built.covariance[t])
    assert built.labels.shape == (panel.T, panel.N, 2)
    assert built.label_columns == ("forward_return_1d", "forward_return_5d")
    assert not set(states.columns) & set(built.label_columns)  # labels never enter the state


def test_build_features_refuses_missing_prices_and_bad_windows(tmp_path: Path) -> None:
    panel = random_panel()
    close = panel.close.copy()
    close[5, 0] = np.nan
    with pytest.raises(DataError, match="clean"):
        build_features(
            with_field(panel, close=close), train_start=TRAIN[0], train_end=TRAIN[1], cache_dir=tmp_path
        )
    with pytest.raises(UserError, match="inverted"):
        build_features(panel, train_start=TRAIN[1], train_end=TRAIN[0], cache_dir=tmp_path)


# ---------------------------------------------------------------------------------------- helpers
def _load_csi88(csi88_dir: Path) -> Panel:
    from trustfolio.data.loaders import load_stockformer

    return load_stockformer(csi88_dir)
