"""`encode_market`: a panel's market states `h[T, N, 3 * out_dim]` from a pretrained, frozen encoder.

Two on-disk caches (in `cache_dir`, default `<cache_root()>/encoders`):
- `weights-<key>.pt`, key = hash of (the panel's days up to the training end, encoder config, feature
  config, training window, torch version). The fit reads nothing after the training end, so a panel
  that differs only later (more days, a test period) reuses the same weights.
- `states-<key>.npz`, key = hash of (the whole panel, configs, training window, the weights' hash):
  states and the predictors' outputs for the whole timeline, computed in one batched pass.

State columns, in order: `relat:0..D-1`, `long:0..D-1`, `short:0..D-1` (D = `out_dim`). Day t's state
is computed from day t's own inputs (the window `t-lookback+1 .. t`), in chunks of
`inference_batch_days` whose boundaries do not depend on the data, so row t is bit-identical whatever
comes after t (`tests/test_lookahead_encoders.py`). Days before `lookback - 1` have no full window:
their states are 0 and their predictions NaN.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustfolio.data.cache import cache_root, content_key, load_npz, save_npz_atomic
from trustfolio.data.features import (
    FeatureConfig,
    FeatureSet,
    MarketStates,
    build_features,
    features_cache_dir,
)
from trustfolio.data.panel import Panel
from trustfolio.encoders.config import BRANCHES, EncoderConfig
from trustfolio.encoders.inputs import EncoderInputs, build_inputs, gather_windows
from trustfolio.encoders.pretrain import FittedEncoder, fit_encoder
from trustfolio.errors import UserError
from trustfolio.progress import track

FORMAT_VERSION = 1  # bump when a computation here or in the models changes, so old cache files are not reused


@dataclass(frozen=True, eq=False)
class EncodedMarket:
    """Everything one encoding pass produces for a panel's whole timeline."""

    states: MarketStates  # h[T, N, 3 * out_dim]
    long_term: np.ndarray  # float32[T, N]: predicted long-horizon (5-day) return; NaN without a full window
    short_term: np.ndarray  # float32[T, N]: predicted short-horizon (1-day) return
    weights_hash: str


def state_columns(config: EncoderConfig) -> tuple[str, ...]:
    """Names of the state's columns: `relat:0`, …, `long:0`, …, `short:0`, …"""
    return tuple(f"{branch}:{k}" for branch in BRANCHES for k in range(config.out_dim))


def encoders_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where encoder weights and states are cached: `cache_dir` if given, else `<cache_root()>/encoders`."""
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "encoders"


# ------------------------------------------------------------------------------------------- inference
def encode_days(fitted: FittedEncoder, inputs: EncoderInputs, days: np.ndarray) -> tuple[np.ndarray, ...]:
    """States `[len(days), N, 3*out_dim]` and predicted (long, short) returns `[len(days), N]` for `days`.

    Every day needs a full window (`day >= lookback - 1`). One batched forward pass per branch.
    """
    config, device = fitted.config, torch.device(fitted.config.device)
    index = torch.as_tensor(np.asarray(days, dtype=np.int64), device=device)
    temporal = torch.from_numpy(inputs.temporal).to(device)
    relational = torch.from_numpy(inputs.relational).to(device)
    with torch.no_grad():
        windows = gather_windows(temporal, index, config.lookback)
        relat_state, _ = fitted.model.relat(relational[index])
        long_state, long_prediction = fitted.model.long(windows)
        short_state, short_prediction = fitted.model.short(windows)
        states = torch.cat([relat_state, long_state, short_state], dim=-1)
    short_scale, long_scale = (float(s) for s in fitted.label_scale)
    return (
        states.cpu().numpy().astype(np.float32, copy=False),
        (long_prediction * long_scale).cpu().numpy().astype(np.float32, copy=False),
        (short_prediction * short_scale).cpu().numpy().astype(np.float32, copy=False),
    )


def compute_states(
    fitted: FittedEncoder, inputs: EncoderInputs, *, progress: bool = True
) -> tuple[np.ndarray, ...]:
    """`encode_days` over the whole timeline in fixed chunks: (h[T,N,D], long[T,N], short[T,N])."""
    config = fitted.config
    first = config.lookback - 1
    h = np.zeros((inputs.T, inputs.N, config.state_dim), dtype=np.float32)
    long_term = np.full((inputs.T, inputs.N), np.nan, dtype=np.float32)
    short_term = np.full((inputs.T, inputs.N), np.nan, dtype=np.float32)
    starts = range(first, inputs.T, config.inference_batch_days)
    for start in track(starts, "encoding market states", unit="chunks", enabled=progress):
        days = np.arange(start, min(start + config.inference_batch_days, inputs.T))
        h[days], long_term[days], short_term[days] = encode_days(fitted, inputs, days)
    return h, long_term, short_term


# ------------------------------------------------------------------------------------------- API
def pretrained_encoder(
    panel: Panel,
    config: EncoderConfig | None = None,
    *,
    train_start: Any,
    train_end: Any,
    features: FeatureSet | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[FittedEncoder, EncoderInputs]:
    """The encoder pretrained on `[train_start, train_end]` (loaded from the cache, or fitted and cached),
    and the inputs it reads for `panel`."""
    config = config or EncoderConfig()
    features, (start, end) = _features_for(panel, train_start, train_end, features, cache_dir)
    inputs = build_inputs(panel, features, (config.short_horizon, config.long_horizon))
    key = content_key(
        "encoder-weights",
        FORMAT_VERSION,
        panel.take_days(slice(0, inputs.train_span[1])).content_hash(),
        asdict(config),
        asdict(features.config),
        [str(start), str(end)],
        torch.__version__,
    )
    path = encoders_cache_dir(cache_dir) / f"weights-{key}.pt"
    if path.is_file():
        return FittedEncoder.load(path), inputs
    fitted = fit_encoder(inputs, config, progress=progress)
    fitted.save(path)
    return fitted, inputs


def encode(
    panel: Panel,
    config: EncoderConfig | None = None,
    *,
    train_start: Any,
    train_end: Any,
    features: FeatureSet | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> EncodedMarket:
    """Pretrain (or load) the encoder and encode `panel`'s whole timeline; cached on disk (see module doc)."""
    config = config or EncoderConfig()
    features, (start, end) = _features_for(panel, train_start, train_end, features, cache_dir)
    fitted, inputs = pretrained_encoder(panel, config, train_start=start, train_end=end,
                                        features=features, cache_dir=cache_dir, progress=progress)  # fmt: skip
    weights_hash = fitted.weights_hash()
    key = content_key(
        "encoder-states",
        FORMAT_VERSION,
        panel.content_hash(),
        asdict(config),
        asdict(features.config),
        [str(start), str(end)],
        weights_hash,
    )
    path = encoders_cache_dir(cache_dir) / f"states-{key}.npz"
    cached = load_npz(path)
    if cached is not None:
        h, long_term, short_term = cached["h"], cached["long_term"], cached["short_term"]
    else:
        h, long_term, short_term = compute_states(fitted, inputs, progress=progress)
        save_npz_atomic(path, {"h": h, "long_term": long_term, "short_term": short_term})
    states = MarketStates(h=h, columns=state_columns(config), dates=panel.dates, tickers=panel.tickers)
    return EncodedMarket(states, long_term, short_term, weights_hash)


def encode_market(panel: Panel, config: EncoderConfig | None = None, **options: Any) -> MarketStates:
    """Market states `h[T, N, 3*out_dim]` of `panel` from an encoder pretrained on the training window only
    (`encode(...).states`; `options`: ``train_start``, ``train_end`` (required), ``features``,
    ``cache_dir``, ``progress``).

    The encoder is fitted on `[train_start, train_end]` (early-stopped on the window's last
    `validation_fraction`), frozen, then applied to every day; `h[t]` depends on data up to day t
    only. Weights and states are cached in `cache_dir`; a second call with the same inputs reuses them.
    `features` defaults to `build_features(panel, train_start=..., train_end=...)`.
    """
    return encode(panel, config, **options).states


def long_term_predictions(panel: Panel, config: EncoderConfig | None = None, **kwargs: Any) -> np.ndarray:
    """The long-term branch's predicted `long_horizon`-day return, float32[T, N] (NaN without a full
    window). Same arguments and cache as `encode_market`."""
    return encode(panel, config, **kwargs).long_term


def short_term_predictions(panel: Panel, config: EncoderConfig | None = None, **kwargs: Any) -> np.ndarray:
    """The short-term branch's predicted `short_horizon`-day return, float32[T, N]; see `long_term_predictions`."""
    return encode(panel, config, **kwargs).short_term


def _features_for(
    panel: Panel, train_start: Any, train_end: Any, features: FeatureSet | None, cache_dir: str | Path | None
) -> tuple[FeatureSet, tuple[np.datetime64, np.datetime64]]:
    """The feature set for the training window (built and cached if not given), checked against it."""
    i0, i1 = panel.span(train_start, train_end)
    start, end = panel.dates[i0], panel.dates[i1 - 1]
    if features is None:
        where = features_cache_dir(None if cache_dir is None else Path(cache_dir) / "features")
        features = build_features(panel, FeatureConfig(), train_start=start, train_end=end, cache_dir=where)
    elif (features.train_start, features.train_end) != (start, end):
        raise UserError(
            f"{panel.name}: the feature set was normalized on {features.train_start}→{features.train_end}, "
            f"not on the encoder's training window {start}→{end}; build the features with the same window"
        )
    return features, (start, end)
