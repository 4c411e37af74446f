"""SARL (Ye et al. 2020, "Reinforcement-Learning based Portfolio Management with Augmented Asset
Movement Prediction States"), SAC flavour: the raw-feature state augmented with predicted movement.

SARL's idea is that a policy learns faster when its state carries a supervised forecast of each
asset's next move beside the prices. Here the state of stock i on day t is

    [ normalized OHLCV + 8 indicators (13, FinRL-SAC's state) ‖ predicted 1-day return ‖ predicted 5-day return ]

The predictions come from an encoder's short- and long-term branches (`trustfolio.encoders`; the
light MLP encoder by default, the StockFormer transformer by option), pretrained on the training
window only and frozen. The RL algorithm is `SACAgent` unchanged (the paper's SARL used DPG; the
issue asks for a SAC variant, so that SAC, StockFormer and SARL differ only in their states).

Decisions: each prediction column is divided by its root mean square over the training days (a
scale fitted on training days only, sign kept: positive means "predicted up"), clipped to
±`prediction_clip`, and set to 0 ("no forecast") on the first days without a full look-back window.
Row t depends on data up to the close of t only (`tests/test_agents_stockformer_sarl.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trustfolio.agents.off_policy import with_paper_settings
from trustfolio.agents.sac import PAPER_SAC, SACAgent, SACConfig
from trustfolio.agents.stockformer import encoder_config
from trustfolio.data.features import MarketStates, build_features
from trustfolio.data.panel import Panel
from trustfolio.encoders import EncoderConfig, encode
from trustfolio.errors import UserError

PREDICTION_COLUMNS = ("predicted_return_short", "predicted_return_long")


@dataclass(frozen=True)
class SARLConfig(SACConfig):
    """SAC's config plus the movement predictor (an encoder's short/long-term branches).

    `predictor_budget` picks `EncoderConfig.preset` for `predictor_kind` (``light`` or
    ``stockformer``); `predictor` overrides single fields of it.
    """

    predictor_budget: str = "quick"
    predictor_kind: str = "light"
    predictor: dict[str, Any] = field(default_factory=dict)
    prediction_clip: float = 5.0  # scaled predictions beyond ± this many training RMS are clipped

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "predictor", dict(self.predictor))
        if not self.prediction_clip > 0:
            raise UserError(f"sarl: prediction_clip must be positive, got {self.prediction_clip}")
        self.predictor_config()  # a bad budget, kind or field fails when the config is made

    def predictor_config(self) -> EncoderConfig:
        return encoder_config(self.predictor_budget, self.predictor_kind, self.predictor, "sarl: predictor")


def augment_with_predictions(
    states: MarketStates, predictions: np.ndarray, train_span: tuple[int, int], clip: float = 5.0
) -> MarketStates:
    """`states` with one column per prediction appended: ``predictions[T, N, P]`` (NaN = no forecast)
    divided by each column's root mean square over the training days ``[i0, i1)``, clipped to ±`clip`,
    NaN set to 0. Names: `PREDICTION_COLUMNS` for P = 2, else ``predicted_k``."""
    T, N, P = predictions.shape
    if states.h.shape[:2] != (T, N):
        raise UserError(f"predictions of shape {predictions.shape} do not match states {states.h.shape}")
    i0, i1 = train_span
    train = predictions[i0:i1].reshape(-1, P).astype(np.float64)
    scale = np.empty(P, dtype=np.float64)
    for k in range(P):
        known = train[np.isfinite(train[:, k]), k]
        rms = float(np.sqrt(np.mean(known**2))) if known.size else 0.0
        scale[k] = rms if rms > 0 else 1.0  # a constant-zero (or absent) forecast stays zero
    scaled = np.clip(predictions / scale.astype(np.float32), -clip, clip)
    scaled = np.where(np.isfinite(scaled), scaled, np.float32(0.0)).astype(np.float32)
    names = PREDICTION_COLUMNS if P == len(PREDICTION_COLUMNS) else tuple(f"predicted_{k}" for k in range(P))
    return MarketStates(
        h=np.concatenate([states.h, scaled], axis=-1),
        columns=(*states.columns, *names),
        dates=states.dates,
        tickers=states.tickers,
    )


class SARLAgent(SACAgent):
    """SAC on raw features augmented with predicted movement (same networks and updates as `SACAgent`)."""

    name = "sarl"
    config_class = SARLConfig
    # The light predictor is cheap enough for the release's full pretraining schedule beyond quick.
    budgets = with_paper_settings(PAPER_SAC, predictor_budget=lambda budget: "quick" if budget == "quick" else "paper")

    @classmethod
    def market_states(cls, panel: Panel, train_start: Any, train_end: Any, config: SARLConfig, *,
                      cache_dir: str | Path | None = None, progress: bool = True) -> MarketStates:  # fmt: skip
        """SARL's market states `h[T, N, 13 + 2]`: FinRL-SAC's raw features ‖ the predictor's 1-day and
        5-day return forecasts (scaled, see `augment_with_predictions`). Features, normalizer and
        predictor are fitted on ``[train_start, train_end]`` only; cached in `cache_dir` (default
        ``<cache_root>``)."""
        features_dir = None if cache_dir is None else Path(cache_dir) / "features"
        features = build_features(panel, train_start=train_start, train_end=train_end, cache_dir=features_dir)
        encoded = encode(
            panel,
            config.predictor_config(),
            train_start=train_start,
            train_end=train_end,
            features=features,
            cache_dir=cache_dir,
            progress=progress,
        )
        predictions = np.stack([encoded.short_term, encoded.long_term], axis=-1)
        i0, i1 = panel.span(train_start, train_end)
        return augment_with_predictions(features.market_states(), predictions, (i0, i1), config.prediction_clip)


__all__ = ["PREDICTION_COLUMNS", "SARLAgent", "SARLConfig", "augment_with_predictions"]
