"""No look-ahead in the encoders.

1. Fitting reads nothing after the training end: garbage after it leaves the weights bit-identical
   (and garbage inside the window changes them, so the check can fail). This covers the labels: a
   label at day s reads close[s+h], so a label crossing the training end would change the weights.
2. With the fitted (frozen) encoder, states and predictions up to day t are bit-identical when every
   value after t is garbage — for several t from the training end to the last day. Each day's state
   is computed from its own window, in chunks whose boundaries do not depend on the data.
3. End to end through `encode_market`'s cache: a panel that differs only after the training end reuses
   the cached weights (no refit) and its states agree up to the first changed day.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from trustfolio.data.features import build_features
from trustfolio.data.panel import Panel
from trustfolio.encoders import EncoderConfig, build_inputs, compute_states, encode, fit_encoder
from trustfolio.encoders import market as market_module

T, N, TRAIN_START, TRAIN_END = 320, 5, 60, 219  # day indices
CONFIGS = {
    "light": EncoderConfig(kind="light", lookback=8, out_dim=4, hidden=16, max_epochs=2, batch_size=32),
    "stockformer": EncoderConfig(kind="stockformer", lookback=8, out_dim=4, d_model=16, n_heads=2, encoder_layers=1,
                                 decoder_layers=1, d_ff=32, max_epochs=1, steps_per_epoch=3, batch_size=16),
}  # fmt: skip


def random_market(seed: int = 0) -> Panel:
    rng = np.random.default_rng(seed)
    close = 30 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, (T, N)))
    dates = np.datetime64("2016-01-04") + np.arange(T)
    return Panel(dates=dates, tickers=[f"S{n}" for n in range(N)], open=open_, close=close,
                 high=np.maximum(open_, close) * 1.01, low=np.minimum(open_, close) * 0.99,
                 volume=rng.uniform(1e5, 1e6, (T, N)))  # fmt: skip


def with_garbage_after(panel: Panel, t: int, seed: int) -> Panel:
    """`panel` with every field of every day after t replaced by random (but valid) values."""
    rng = np.random.default_rng(1000 + seed)
    shape = (panel.T - t - 1, panel.N)
    open_, close = rng.uniform(1.0, 500.0, shape), rng.uniform(1.0, 500.0, shape)
    garbage = {"open": open_, "close": close, "high": np.maximum(open_, close) * rng.uniform(1.0, 1.3, shape),
               "low": np.minimum(open_, close) * rng.uniform(0.7, 1.0, shape), "volume": rng.uniform(0, 1e9, shape)}  # fmt: skip
    return replace(panel, **{k: np.concatenate([panel.field(k)[: t + 1], v]) for k, v in garbage.items()})


@pytest.fixture(scope="module")
def panel() -> Panel:
    return random_market()


@pytest.fixture(scope="module")
def window(panel: Panel) -> dict:
    return {"train_start": panel.dates[TRAIN_START], "train_end": panel.dates[TRAIN_END]}


def inputs_of(panel: Panel, window: dict, cache_dir: Path):
    return build_inputs(panel, build_features(panel, cache_dir=cache_dir, **window))


@pytest.fixture(scope="module", params=list(CONFIGS))
def fitted(request, panel: Panel, window: dict, tmp_path_factory: pytest.TempPathFactory):
    inputs = inputs_of(panel, window, tmp_path_factory.mktemp("features"))
    encoder = fit_encoder(inputs, CONFIGS[request.param], progress=False)
    return encoder, inputs, compute_states(encoder, inputs, progress=False)


def test_fitting_ignores_everything_after_the_training_end(fitted, panel, window, tmp_path: Path) -> None:
    encoder, _, _ = fitted
    spoiled = inputs_of(with_garbage_after(panel, TRAIN_END, seed=0), window, tmp_path)
    refitted = fit_encoder(spoiled, encoder.config, progress=False)
    assert refitted.weights_hash() == encoder.weights_hash(), "the fit read data after the training end"
    # ... while garbage from 10 days before the end is seen (so this test can fail).
    inside = inputs_of(with_garbage_after(panel, TRAIN_END - 10, seed=0), window, tmp_path)
    assert fit_encoder(inside, encoder.config, progress=False).weights_hash() != encoder.weights_hash()


@pytest.mark.parametrize("t", [TRAIN_END, TRAIN_END + 37, T - 60, T - 2])
def test_states_up_to_t_ignore_everything_after_t(fitted, panel, window, t: int, tmp_path: Path) -> None:
    encoder, _, reference = fitted
    spoiled = compute_states(
        encoder, inputs_of(with_garbage_after(panel, t, seed=t), window, tmp_path), progress=False
    )
    for name, ours, theirs in zip(("states", "long-term", "short-term"), spoiled, reference, strict=True):
        assert np.array_equal(ours[: t + 1], theirs[: t + 1], equal_nan=True), f"{name} leak after day {t}"
        assert not np.array_equal(ours[t + 1 :], theirs[t + 1 :], equal_nan=True), f"{name}: garbage unseen"


def test_encode_market_reuses_weights_for_a_panel_changed_after_training(
    panel, window, tmp_path, monkeypatch
):
    fits = []
    real_fit = market_module.fit_encoder
    monkeypatch.setattr(market_module, "fit_encoder", lambda *a, **k: fits.append(1) or real_fit(*a, **k))
    config = CONFIGS["light"]
    reference = encode(panel, config, cache_dir=tmp_path, progress=False, **window)
    t = TRAIN_END + 30
    spoiled = encode(
        with_garbage_after(panel, t, seed=5), config, cache_dir=tmp_path, progress=False, **window
    )
    assert len(fits) == 1 and spoiled.weights_hash == reference.weights_hash
    assert np.array_equal(spoiled.states.h[: t + 1], reference.states.h[: t + 1])
    assert not np.array_equal(spoiled.states.h[t + 1 :], reference.states.h[t + 1 :])
    assert len(list(tmp_path.glob("states-*.npz"))) == 2  # each panel its own states file
