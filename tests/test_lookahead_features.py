"""No look-ahead in features, on real data (csi88).

For several days t after the training window, every value after t is replaced with garbage (random
positive prices with high >= low, random volume). Everything known at the close of t — indicators,
covariance, normalizer parameters, normalized states, market states — must stay bit-identical.
Labels look ahead by definition; label[s, h] may change only when s + h > t.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from trustfolio.data.features import (
    FeatureConfig,
    FeatureSet,
    build_features,
    compute_indicators,
    trailing_covariance,
)
from trustfolio.data.panel import Panel

TRAIN = ("2011-01-17", "2018-12-31")  # the MetaTrader paper's training window
N_CUTS = 5


@pytest.fixture(scope="module")
def csi88(csi88_dir: Path) -> Panel:
    from trustfolio.data.loaders import load_stockformer

    return load_stockformer(csi88_dir)


@pytest.fixture(scope="module")
def reference(csi88: Panel, tmp_path_factory: pytest.TempPathFactory) -> FeatureSet:
    return build_once(csi88, tmp_path_factory.mktemp("features"))


def build_once(panel: Panel, cache_dir: Path) -> FeatureSet:
    """Build the features, then drop the cache file (about 120 MB; these tests never reload it)."""
    built = build_features(
        panel, FeatureConfig(), train_start=TRAIN[0], train_end=TRAIN[1], cache_dir=cache_dir
    )
    for path in cache_dir.glob("*.npz"):
        path.unlink()
    return built


def cut_days(panel: Panel) -> list[int]:
    """N_CUTS days from the last training day to the day before the last."""
    last_train_day = panel.index_of(TRAIN[1], side="right")
    return [int(t) for t in np.linspace(last_train_day, panel.T - 2, N_CUTS).round()]


def with_garbage_after(panel: Panel, t: int, seed: int) -> Panel:
    """`panel` with every field of every day after t replaced by random (but valid) values."""
    rng = np.random.default_rng(seed)
    shape = (panel.T - t - 1, panel.N)
    open_, close = rng.uniform(1.0, 500.0, shape), rng.uniform(1.0, 500.0, shape)
    garbage = {
        "open": open_,
        "close": close,
        "high": np.maximum(open_, close) * rng.uniform(1.0, 1.3, shape),
        "low": np.minimum(open_, close) * rng.uniform(0.7, 1.0, shape),
        "volume": rng.uniform(0.0, 1e9, shape),
    }
    fields = {name: np.concatenate([panel.field(name)[: t + 1], values]) for name, values in garbage.items()}
    if panel.benchmark is not None:
        bench = rng.uniform(1.0, 5000.0, panel.T - t - 1)
        fields["benchmark"] = np.concatenate([panel.benchmark[: t + 1], bench])
    return replace(panel, **fields)


@pytest.mark.parametrize("cut", range(N_CUTS))
def test_features_up_to_t_ignore_everything_after_t(
    csi88: Panel, reference: FeatureSet, cut: int, tmp_path: Path
) -> None:
    t = cut_days(csi88)[cut]
    spoiled = build_once(with_garbage_after(csi88, t, seed=cut), tmp_path)
    known = slice(0, t + 1)

    for name in ("indicators", "covariance", "normalized"):
        ours, theirs = getattr(spoiled, name), getattr(reference, name)
        assert np.array_equal(ours[known], theirs[known], equal_nan=True), f"{name} leaks after day {t}"
        # The garbage did change what comes after t, so this test can fail.
        assert not np.array_equal(ours[t + 1 :], theirs[t + 1 :], equal_nan=True), name
    for name, value in reference.normalizer.to_arrays().items():
        assert np.array_equal(spoiled.normalizer.to_arrays()[name], value), f"normalizer.{name} leaks"
    for covariance in (False, True):
        ours = spoiled.market_states(covariance=covariance).h
        theirs = reference.market_states(covariance=covariance).h
        assert np.array_equal(ours[known], theirs[known]), "market states leak"

    for k, h in enumerate(reference.config.label_horizons):
        # label[s, h] = close[s+h]/close[s] - 1 is known once s + h <= t ...
        assert np.array_equal(spoiled.labels[: t - h + 1, :, k], reference.labels[: t - h + 1, :, k])
        # ... and the later ones really read the (garbage) future.
        assert not np.array_equal(
            spoiled.labels[t - h + 1 : t + 1, :, k], reference.labels[t - h + 1 : t + 1, :, k]
        )


def test_features_of_a_truncated_history_equal_the_full_panel_up_to_t(
    csi88: Panel, reference: FeatureSet
) -> None:
    """What a policy computes from `history` (the panel cut at t) equals the precomputed rows."""
    t = cut_days(csi88)[N_CUTS // 2]
    history = csi88.take_days(slice(0, t + 1))
    assert np.array_equal(compute_indicators(history), reference.indicators[: t + 1], equal_nan=True)
    assert np.array_equal(trailing_covariance(history), reference.covariance[: t + 1], equal_nan=True)
