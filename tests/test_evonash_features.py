"""EvoNash features and regimes (§III-C, eq. 1, 3-4): trailing only, regimes on constructed paths."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from synthetic import corrupt_after, panel_from_prices
from trustfolio.agents.evonash.config import EvoNashConfig
from trustfolio.agents.evonash.features import (
    BEAR,
    BULL,
    FACTORS,
    SHOCK,
    SIDEWAYS,
    Standardizer,
    agent_inputs,
    build_features,
    clipped_returns,
    long_short_factor,
    regime_labels,
    trailing_return,
)


def random_panel(T: int = 330, N: int = 6, seed: int = 0, with_index: bool = True):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, (T, N)), axis=0))
    panel = replace(panel_from_prices(close), volume=rng.lognormal(10, 0.5, (T, N)).astype(np.float32))
    if with_index:
        index = 1000 * np.exp(np.cumsum(rng.normal(0.0003, 0.01, T)))
        panel = replace(panel, benchmark=index.astype(np.float32), benchmark_name="INDEX")
    return panel


def corrupt_everything_after(panel, t: int, seed: int):
    """corrupt_after, and the benchmark index after t as well."""
    bad = corrupt_after(panel, t, seed)
    if panel.benchmark is not None:
        index = np.array(panel.benchmark, copy=True)
        index[t + 1 :] = np.random.default_rng(seed + 1).lognormal(5, 1, panel.T - t - 1)
        bad = replace(bad, benchmark=index)
    return bad


def arrays_up_to(features, standardized, t):
    asset_z, market_z = standardized
    return {
        "asset": features.asset[: t + 1], "market": features.market[: t + 1],
        "returns": features.returns[: t + 1], "benchmark": features.benchmark_returns[: t + 1],
        "factors": features.factor_returns[: t + 1], "asset_vol": features.asset_volatility[: t + 1],
        "regimes": features.regimes.labels[: t + 1], "regime_vol": features.regimes.volatility[: t + 1],
        "regime_baseline": features.regimes.baseline_volatility[: t + 1],
        "asset_z": asset_z[: t + 1], "market_z": market_z[: t + 1],
    }  # fmt: skip


@pytest.mark.parametrize("with_index", [True, False])
@pytest.mark.parametrize("t", [0, 3, 19, 64, 130, 250, 328])
def test_no_look_ahead_garbage_after_t(t, with_index):
    """Everything after day t replaced with garbage: every feature, regime and z-score up to t is
    bit-identical (the standardizer fitted on days up to t, as a training window ending at t)."""
    config = EvoNashConfig()
    panel = random_panel(with_index=with_index)
    train_end = max(t, 1)
    outputs = []
    for candidate in (panel, corrupt_everything_after(panel, t, seed=t + 7)):
        features = build_features(candidate, config)
        standardizer = Standardizer.fit(features, 0, min(train_end, t), clip=config.feature_clip)
        outputs.append(arrays_up_to(features, standardizer.transform(features), t))
    for name, clean in outputs[0].items():
        assert np.array_equal(clean, outputs[1][name], equal_nan=True), name


def test_shapes_names_and_finite_inputs():
    config = EvoNashConfig()
    panel = random_panel()
    features = build_features(panel, config)
    assert features.asset.shape == (panel.T, panel.N, len(features.asset_names))
    assert features.market.shape == (panel.T, len(features.market_names))
    assert features.factor_returns.shape == (panel.T, len(FACTORS))
    x = agent_inputs(*Standardizer.fit(features, 0, 200).transform(features))
    assert x.shape == (panel.T, panel.N, len(features.asset_names) + len(features.market_names))
    assert x.dtype == np.float32 and np.isfinite(x).all() and np.abs(x).max() <= config.feature_clip
    # market features are the same for every asset of a day
    assert np.array_equal(x[100, 0, -features.market.shape[1] :], x[100, 3, -features.market.shape[1] :])


def test_returns_clipped_at_20_percent_and_benchmark_choice():
    close = np.array([[10.0, 10.0], [15.0, 9.0], [15.0, 4.0], [15.3, 4.0]])
    panel = panel_from_prices(close)
    returns = clipped_returns(panel, 0.20)
    assert np.allclose(returns[:, 0], [0.0, 0.20, 0.0, 0.02]) and np.allclose(returns[:, 1], [0, -0.1, -0.2, 0])
    features = build_features(panel, EvoNashConfig(momentum_windows=(2, 3), volatility_windows=(2, 3)))
    assert np.allclose(features.benchmark_returns, returns.mean(axis=1))  # no index: the 1/N basket


def test_trailing_return_beta_and_factor_by_hand():
    rng = np.random.default_rng(3)
    r = rng.normal(0, 0.01, (40, 3))
    expected = np.prod(1 + r[35:40], axis=0) - 1
    assert np.allclose(trailing_return(r, 5)[39], expected) and np.isnan(trailing_return(r, 5)[3]).all()
    # an asset that is the benchmark has beta 1; twice the benchmark, beta 2
    bench = r[:, 0]
    from trustfolio.agents.evonash.features import trailing_beta

    beta = trailing_beta(np.stack([bench, 2 * bench], 1), bench, 20)
    assert np.allclose(beta[19:], [1.0, 2.0])
    # the factor on day t: the top third minus the bottom third ranked on day t-1's score
    score = rng.normal(size=(40, 3))
    stream = long_short_factor(r, score, 1 / 3)
    t = 17
    order = np.argsort(score[t - 1])
    assert np.isclose(stream[t], r[t, order[-1]] - r[t, order[0]]) and stream[0] == 0


# ---------------------------------------------------------------------------------------- regimes
def labels_of(bench_returns, **overrides):
    return regime_labels(np.asarray(bench_returns, dtype=np.float64), EvoNashConfig(**overrides)).labels


def alternating(n: int, up: float, down: float) -> np.ndarray:
    return np.where(np.arange(n) % 2 == 0, up, down)


def test_steady_rise_is_bull_steady_fall_is_bear_chop_is_sideways():
    rise = labels_of(alternating(150, 0.009, -0.001))  # +0.4 % a day on average, constant volatility
    fall = labels_of(alternating(150, 0.001, -0.009))
    chop = labels_of(alternating(150, 0.005, -0.005))
    assert (rise[:19] == SIDEWAYS).all() and (rise[20:] == BULL).all()
    assert (fall[20:] == BEAR).all()
    assert (chop == SIDEWAYS).all()


def test_a_crash_is_shock_and_precedence_is_a_switch():
    path = np.concatenate([alternating(120, 0.005, -0.005), np.full(5, -0.06), alternating(40, 0.005, -0.005)])
    labels = labels_of(path)
    assert (labels[:120] == SIDEWAYS).all()
    assert (labels[120:125] == SHOCK).all()  # volatility jumps: shock first (the default)
    literal = labels_of(path, shock_first=False)  # the paper's listing order: BEAR before SHOCK
    assert (literal[121:125] == BEAR).all()
    # a calm rally after a shock is not a shock: the volatility leaves the 20-day window
    assert labels[-5:].tolist() == [SIDEWAYS] * 5


def test_regime_thresholds_are_config_values():
    rise = alternating(100, 0.009, -0.001)  # about +8 % over 20 days
    assert (labels_of(rise, regime_bull=0.10)[20:] == SIDEWAYS).all()
    assert (labels_of(rise, regime_return="mean", regime_bull=0.003, regime_bear=-0.003)[20:] == BULL).all()
