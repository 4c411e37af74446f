"""Encoders learn planted structure, are deterministic, cache their work, and validate their inputs.

The synthetic market: stock returns share a strong market factor (so one stock's indicators can be
reconstructed from the others'), today's volume encodes the next 5-day return, and today's high
encodes the next day's return. Encoders are fitted on the first part of the timeline and judged on
days after the training window (held out), against a zero predictor (returns) and the training mean
(masked indicators). Networks are tiny so the file runs in seconds; torch runs on one thread here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trustfolio.data.features import FeatureConfig, build_features
from trustfolio.data.panel import Panel
from trustfolio.encoders import (
    EncoderConfig,
    FittedEncoder,
    build_inputs,
    compute_states,
    encode,
    encode_market,
    fit_encoder,
    long_term_predictions,
    state_columns,
)
from trustfolio.encoders import market as market_module
from trustfolio.encoders.pretrain import branch_days, mask_indicators
from trustfolio.errors import UserError

T, N, TRAIN_START, TRAIN_END = 500, 6, 60, 399  # day indices; days 400..494 are held out
TINY = dict(lookback=8, out_dim=8, batch_size=32, lr=5e-3, patience=8)  # small noisy validation slice
TINY_LIGHT = EncoderConfig(kind="light", hidden=32, max_epochs=15, **TINY)
TINY_STOCKFORMER = EncoderConfig(kind="stockformer", d_model=16, n_heads=2, encoder_layers=1, decoder_layers=1,
                                 d_ff=32, max_epochs=12, **TINY)  # fmt: skip


def planted_market(T: int = T, N: int = N, seed: int = 0) -> Panel:
    """One-factor market; volume[t] encodes the 5-day forward return, high[t] the 1-day one."""
    rng = np.random.default_rng(seed)
    returns = rng.uniform(0.6, 1.4, N) * rng.normal(0, 0.015, T)[:, None] + rng.normal(0, 0.008, (T, N))
    close = 20 * np.exp(np.cumsum(returns, axis=0))

    def standardized_forward_return(h: int) -> np.ndarray:
        forward = np.zeros_like(close)
        forward[:-h] = close[h:] / close[:-h] - 1
        return np.clip(forward / forward.std(), -3, 3)

    dates = np.datetime64("2015-01-01") + np.arange(T)
    return Panel(dates=dates, tickers=[f"S{n}" for n in range(N)], open=close, close=close,
                 high=close * np.exp(0.01 * (standardized_forward_return(1) + 3.5)), low=close * np.exp(-0.01),
                 volume=1e6 * np.exp(0.5 * standardized_forward_return(5)))  # fmt: skip


@pytest.fixture(scope="module")
def panel() -> Panel:
    return planted_market()


@pytest.fixture(scope="module")
def window(panel: Panel) -> dict[str, np.datetime64]:
    return {"train_start": panel.dates[TRAIN_START], "train_end": panel.dates[TRAIN_END]}


@pytest.fixture(scope="module")
def inputs(panel: Panel, window: dict, tmp_path_factory: pytest.TempPathFactory):
    return build_inputs(panel, build_features(panel, cache_dir=tmp_path_factory.mktemp("features"), **window))


@pytest.mark.parametrize("config", [TINY_LIGHT, TINY_STOCKFORMER], ids=["light", "stockformer"])
def test_branches_learn_the_planted_structure_on_held_out_days(inputs, config: EncoderConfig) -> None:
    fitted = fit_encoder(inputs, config, progress=False)
    h, long_term, short_term = compute_states(fitted, inputs, progress=False)
    held_out = np.arange(TRAIN_END + 1, T - 5)
    for predicted, k in ((short_term, 0), (long_term, 1)):
        truth = inputs.labels[held_out, :, k]
        assert np.isfinite(truth).all()
        model_mse, zero_mse = np.mean((predicted[held_out] - truth) ** 2), np.mean(truth**2)
        assert model_mse < 0.5 * zero_mse, (
            f"horizon {inputs.horizons[k]}: {model_mse:.3g} vs zero {zero_mse:.3g}"
        )

    # Relational: reconstruct the indicators of half the stocks of each held-out day from the rest.
    rows = torch.from_numpy(inputs.relational[held_out])
    masked, hidden = mask_indicators(rows, N, config.mask_ratio, torch.Generator().manual_seed(7))
    with torch.no_grad():
        _, reconstruction = fitted.model.relat(masked)
    truth = rows[..., N:]
    i0, i1 = inputs.train_span
    training_mean = torch.from_numpy(inputs.relational[i0:i1, :, N:].mean(axis=0)).expand_as(truth)
    model_mse = ((reconstruction - truth) ** 2)[hidden].mean().item()
    mean_mse = ((training_mean - truth) ** 2)[hidden].mean().item()
    assert model_mse < 0.8 * mean_mse, f"relational: {model_mse:.3g} vs training mean {mean_mse:.3g}"

    # The state: 3 branches x out_dim, zero (and predictions NaN) before the first full window.
    assert h.shape == (T, N, 3 * config.out_dim) and h.dtype == np.float32
    first = config.lookback - 1
    assert (
        (h[:first] == 0).all() and np.isnan(long_term[:first]).all() and np.isfinite(long_term[first:]).all()
    )
    assert np.isfinite(h).all() and (np.abs(h[first:]).sum(axis=-1) > 0).all()
    # Early stopping kept the best validation epoch and never ran past max_epochs.
    for branch, epochs in fitted.history.items():
        assert 1 <= len(epochs) <= config.max_epochs, branch


def test_same_seed_gives_identical_weights_and_states_other_seed_differs(inputs) -> None:
    config = TINY_LIGHT.with_(max_epochs=2)
    rng_before = torch.get_rng_state()
    first, second = (fit_encoder(inputs, config, progress=False) for _ in range(2))
    assert torch.equal(torch.get_rng_state(), rng_before), "fitting must not move the caller's torch RNG"
    assert first.weights_hash() == second.weights_hash()
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), second.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert all(np.array_equal(a, b, equal_nan=True) for a, b in
               zip(compute_states(first, inputs, progress=False), compute_states(second, inputs, progress=False),
                   strict=True))  # fmt: skip
    other = fit_encoder(inputs, config.with_(seed=1), progress=False)
    assert other.weights_hash() != first.weights_hash()


def test_stockformer_same_seed_identical(inputs) -> None:
    config = TINY_STOCKFORMER.with_(max_epochs=1, steps_per_epoch=3)
    first, second = (fit_encoder(inputs, config, progress=False) for _ in range(2))
    assert first.weights_hash() == second.weights_hash()


def test_encode_market_caches_weights_and_states(panel, window, tmp_path: Path, monkeypatch) -> None:
    calls = {"fit": 0, "encode": 0}
    real_fit, real_compute = market_module.fit_encoder, market_module.compute_states

    def counting_fit(*args, **kwargs):
        calls["fit"] += 1
        return real_fit(*args, **kwargs)

    def counting_compute(*args, **kwargs):
        calls["encode"] += 1
        return real_compute(*args, **kwargs)

    monkeypatch.setattr(market_module, "fit_encoder", counting_fit)
    monkeypatch.setattr(market_module, "compute_states", counting_compute)
    config = TINY_LIGHT.with_(max_epochs=2)
    first = encode_market(panel, config, cache_dir=tmp_path, progress=False, **window)
    second = encode_market(panel, config, cache_dir=tmp_path, progress=False, **window)
    assert calls == {"fit": 1, "encode": 1}
    assert np.array_equal(first.h, second.h) and first.columns == second.columns == state_columns(config)
    assert first.columns[0] == "relat:0" and first.columns[-1] == f"short:{config.out_dim - 1}"
    assert np.array_equal(first.dates, panel.dates) and first.tickers == panel.tickers
    predictions = long_term_predictions(panel, config, cache_dir=tmp_path, progress=False, **window)
    encoded = encode(panel, config, cache_dir=tmp_path, progress=False, **window)
    assert calls == {"fit": 1, "encode": 1} and np.array_equal(predictions, encoded.long_term, equal_nan=True)
    # The weights file loads back (torch.load weights_only) to the very same encoder.
    (weights_file,) = tmp_path.glob("weights-*.pt")
    assert FittedEncoder.load(weights_file).weights_hash() == encoded.weights_hash

    # Another config is another encoder: fitted and encoded again.
    encode(panel, config.with_(seed=3), cache_dir=tmp_path, progress=False, **window)
    assert calls == {"fit": 2, "encode": 2}


def test_predictor_days_never_read_a_label_past_the_training_end(inputs) -> None:
    i0, i1 = inputs.train_span
    config = EncoderConfig(lookback=8)
    for branch, h in (("short", inputs.horizons[0]), ("long", inputs.horizons[1])):
        train, validation = branch_days(inputs, config, branch)
        assert (train + h < validation.min()).all(), "training labels reach into the validation slice"
        assert validation.max() + h == i1 - 1, "the last usable label is the training end's close"
        assert train.min() >= max(i0, config.lookback - 1)
    train, validation = branch_days(inputs, config, "relat")
    assert train.max() + 1 == validation.min() and validation.max() == i1 - 1


def test_bad_configs_and_mismatched_features_raise_user_errors(panel, window, inputs, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="kind"):
        EncoderConfig(kind="lstm")
    with pytest.raises(UserError, match="divisible"):
        EncoderConfig(d_model=30, n_heads=4)
    with pytest.raises(UserError, match="unknown encoder config keys"):
        EncoderConfig.from_dict({"d_modle": 64})
    with pytest.raises(UserError, match="budget"):
        EncoderConfig.preset("huge")
    assert EncoderConfig.preset("paper") == EncoderConfig(kind="stockformer")  # the release's settings
    assert EncoderConfig.preset("quick", "light", seed=4).seed == 4
    with pytest.raises(UserError, match="too short"):
        fit_encoder(inputs, EncoderConfig(lookback=400), progress=False)
    other_window = build_features(panel, FeatureConfig(), train_start=panel.dates[TRAIN_START],
                                  train_end=panel.dates[TRAIN_END - 50], cache_dir=tmp_path)  # fmt: skip
    with pytest.raises(UserError, match="normalized on"):
        encode_market(panel, TINY_LIGHT, features=other_window, cache_dir=tmp_path, progress=False, **window)
