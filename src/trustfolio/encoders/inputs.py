"""What the encoders read: per-day arrays built from a `Panel` and its `FeatureSet`, all causal.

- `temporal[T, N, 18]` — the predictors' per-day features: the 13 normalized columns of the feature
  set (`[OHLCV ‖ 8 indicators]`, normalizer fitted on the training window) and 5 scale-free candle
  features, the StockFormer release's `dopen … dvolume` in spirit: open, high, low and close of day t
  relative to the close of day t-1, and the log change of volume. Each candle column is divided by
  its standard deviation over the training window (all stocks) and clipped to ±`CANDLE_CLIP`, so a
  bad print cannot blow up a transformer's input.
- `relational[T, N, N + 8]` — the relational branch's per-stock rows `[covariance row ‖ normalized
  indicators]` of day t. The covariance (trailing 252 days, `FeatureSet.covariance`) is divided by
  the mean variance of the training window (the average of its diagonal over training days), so a
  typical variance is ~1 instead of ~4e-4; undefined entries (before `min_periods`) are 0.
- `labels[T, N, 2]` — raw forward returns (`forward_returns`) for the short and long horizons: targets,
  never inputs. Training masks them so that no label crosses the end of the training window.

Row t of `temporal` and `relational` depends on data up to the close of t only; scales are fitted on
training days only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trustfolio.data.features import INDICATORS, STATE_COLUMNS, FeatureSet, forward_returns
from trustfolio.data.panel import Panel
from trustfolio.errors import UserError

CANDLE_COLUMNS = ("open_ret", "high_ret", "low_ret", "close_ret", "volume_logchange")
TEMPORAL_COLUMNS = (*STATE_COLUMNS, *CANDLE_COLUMNS)
CANDLE_CLIP = 10.0  # candle features beyond 10 training standard deviations are clipped


@dataclass(frozen=True, eq=False)
class EncoderInputs:
    """Causal model inputs and labels of one panel, with the training window as day indices."""

    temporal: np.ndarray  # float32[T, N, len(TEMPORAL_COLUMNS)]
    relational: np.ndarray  # float32[T, N, N + len(INDICATORS)]
    labels: np.ndarray  # float32[T, N, 2]: forward returns (short, long horizon); NaN at the end
    horizons: tuple[int, int]  # (short, long)
    train_span: tuple[int, int]  # [i0, i1): the training days
    dates: np.ndarray
    tickers: tuple[str, ...]
    candle_scale: np.ndarray | None = None  # float64[5]: the training std each candle column was divided by

    @property
    def T(self) -> int:
        return self.temporal.shape[0]

    @property
    def N(self) -> int:
        return self.temporal.shape[1]

    @property
    def n_indicators(self) -> int:
        return len(INDICATORS)

    def label_scale(self) -> np.ndarray:
        """Std of each horizon's labels over training days whose label is known by the training end.

        The predictors learn standardized labels (`label / scale`) and report returns (`pred * scale`).
        """
        i0, i1 = self.train_span
        scales = []
        for k, h in enumerate(self.horizons):
            known = self.labels[i0 : max(i0, i1 - h), :, k].astype(np.float64)
            std = float(np.nanstd(known)) if np.isfinite(known).any() else 0.0
            scales.append(std if std > 0 else 1.0)
        return np.array(scales, dtype=np.float32)


def candle_features(panel: Panel) -> np.ndarray:
    """Open/high/low/close of day t relative to the close of day t-1 (minus 1) and the log change of
    volume, as float64[T, N, 5]; row 0 is 0 (no previous day)."""
    close = panel.close.astype(np.float64)
    out = np.zeros((panel.T, panel.N, len(CANDLE_COLUMNS)), dtype=np.float64)
    previous_close = close[:-1]
    for k, name in enumerate(("open", "high", "low", "close")):
        out[1:, :, k] = panel.field(name)[1:].astype(np.float64) / previous_close - 1.0
    volume = np.log1p(np.maximum(panel.volume.astype(np.float64), 0.0))
    out[1:, :, 4] = volume[1:] - volume[:-1]
    return out


def scale_candles(candles: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Candle features divided by their training std, clipped to ±`CANDLE_CLIP`, NaN-free."""
    return np.clip(np.nan_to_num(candles / std, nan=0.0), -CANDLE_CLIP, CANDLE_CLIP)


def build_inputs(panel: Panel, features: FeatureSet, horizons: tuple[int, int] = (1, 5)) -> EncoderInputs:
    """The encoders' inputs for `panel`, scaled with statistics of `features`' training window.

    `features` must be `build_features(panel, ...)` (same dates and tickers); its training window is
    the encoder's.
    """
    if features.normalized.shape[:2] != (panel.T, panel.N) or not np.array_equal(features.dates, panel.dates):
        raise UserError(
            f"{panel.name}: the feature set does not match the panel ({features.normalized.shape[0]} days, "
            f"{features.normalized.shape[1]} stocks vs {panel.T}, {panel.N}); build it from this panel"
        )
    if tuple(features.tickers) != tuple(panel.tickers):
        raise UserError(
            f"{panel.name}: the feature set's tickers differ from the panel's; rebuild the features"
        )
    i0, i1 = panel.span(features.train_start, features.train_end)

    candles = candle_features(panel)
    train_candles = candles[max(i0, 1) : i1]  # row 0 is a placeholder, not an observation
    std = train_candles.reshape(-1, len(CANDLE_COLUMNS)).std(axis=0) if len(train_candles) else np.ones(5)
    std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
    candles = scale_candles(candles, std)
    temporal = np.concatenate([features.normalized, candles.astype(np.float32)], axis=-1)

    covariance = features.covariance
    with np.errstate(invalid="ignore"):
        diagonal = np.diagonal(covariance[i0:i1], axis1=1, axis2=2).astype(np.float64)
    finite = diagonal[np.isfinite(diagonal)]
    variance_scale = float(finite.mean()) if finite.size and finite.mean() > 0 else 1.0
    # Divide in float32 (the covariance's dtype): an exact per-element operation, so row t stays causal.
    scaled_cov = covariance / np.float32(variance_scale)
    scaled_cov = np.where(np.isfinite(scaled_cov), scaled_cov, np.float32(0.0))
    indicators = features.normalized[..., len(STATE_COLUMNS) - len(INDICATORS) :]
    relational = np.concatenate([scaled_cov, indicators], axis=-1).astype(np.float32, copy=False)

    return EncoderInputs(
        temporal=np.ascontiguousarray(temporal, dtype=np.float32),
        relational=np.ascontiguousarray(relational),
        labels=forward_returns(panel, horizons),
        horizons=(int(horizons[0]), int(horizons[1])),
        train_span=(i0, i1),
        dates=panel.dates,
        tickers=panel.tickers,
        candle_scale=std,
    )


def gather_windows(temporal: torch.Tensor, days: torch.Tensor, lookback: int) -> torch.Tensor:
    """The look-back windows ending on `days`: `[B, N, lookback, F]` from `temporal[T, N, F]`.

    Window of day t = rows `t-lookback+1 .. t` (oldest first). Every day must have `lookback` rows of
    history (`t >= lookback - 1`).
    """
    offsets = torch.arange(-lookback + 1, 1, device=days.device)
    rows = days[:, None] + offsets[None, :]  # [B, L]
    return temporal[rows].permute(0, 2, 1, 3)  # [B, L, N, F] -> [B, N, L, F]
