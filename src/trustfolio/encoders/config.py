"""`EncoderConfig`: what the market-state encoder is and how it is pretrained.

The defaults are the StockFormer release's settings (`gsyyysg/StockFormer`, `code/Transformer/script/*.sh`):
d_model 128, 4 heads, 2 encoder layers, 1 decoder layer, d_ff 256, dropout 0.05, sequence length 60,
batch 32 days, Adam at lr 1e-4, ranking-loss weight 0.5, 60 epochs. What the release leaves open and
we chose (see the package docstring): the state size per branch (`out_dim`), early stopping, the scaling
of the covariance rows and of the labels.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from trustfolio.errors import UserError

EncoderKind = Literal["light", "stockformer"]
BRANCHES = ("relat", "long", "short")  # order of the branches in the market state


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture and pretraining of a market-state encoder (three branches, `out_dim` features each)."""

    kind: EncoderKind = "light"
    lookback: int = 60  # days in each predictor's input window (StockFormer's seq_len)
    out_dim: int = 32  # state features per stock and branch: the market state has 3 * out_dim columns
    short_horizon: int = 1  # days ahead of the short-term branch's label
    long_horizon: int = 5  # days ahead of the long-term branch's label
    mask_ratio: float = 0.5  # share of stocks whose indicators the relational branch must reconstruct
    # stockformer (the release's sizes)
    d_model: int = 128
    n_heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 1
    d_ff: int = 256
    dropout: float = 0.05
    # light
    hidden: int = 64
    # pretraining (each branch on its own, early-stopped on its own validation loss)
    max_epochs: int = 60
    steps_per_epoch: int | None = None  # gradient steps per epoch; None: one pass over the training days
    batch_size: int = 32  # days per gradient step (every stock of a day is in the batch)
    lr: float = 1e-4
    rank_weight: float = 0.5  # weight of StockFormer's pairwise ranking loss beside the MSE (predictors)
    patience: int = 5  # epochs without a better validation loss before stopping
    validation_fraction: float = 0.1  # the last part of the training window, held out for early stopping
    validation_days: int | None = None  # evaluate on this many evenly spaced validation days (None: all)
    inference_batch_days: int = 16  # days per chunk when encoding the whole timeline (bounds memory)
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.kind not in ("light", "stockformer"):
            raise UserError(f"unknown encoder kind {self.kind!r}; choose 'light' or 'stockformer'")
        positive = ("lookback", "out_dim", "short_horizon", "long_horizon", "d_model", "n_heads",
                    "encoder_layers", "decoder_layers", "d_ff", "hidden", "max_epochs", "batch_size",
                    "patience", "inference_batch_days")  # fmt: skip
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise UserError(
                    f"encoder config: {name} must be a positive whole number, got {getattr(self, name)}"
                )
        for name in ("steps_per_epoch", "validation_days"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise UserError(f"encoder config: {name} must be positive or None, got {value}")
        if self.d_model % self.n_heads:
            raise UserError(
                f"encoder config: d_model {self.d_model} is not divisible by n_heads {self.n_heads}"
            )
        if not 0.0 < self.mask_ratio < 1.0:
            raise UserError(f"encoder config: mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if not 0.0 < self.validation_fraction < 0.5:
            raise UserError(
                f"encoder config: validation_fraction must be in (0, 0.5), got {self.validation_fraction}"
            )
        if not 0.0 <= self.dropout < 1.0 or self.lr <= 0 or self.rank_weight < 0:
            raise UserError("encoder config: need 0 <= dropout < 1, lr > 0 and rank_weight >= 0")

    @property
    def state_dim(self) -> int:
        """Columns of the market state per stock: `out_dim` for each of the three branches."""
        return len(BRANCHES) * self.out_dim

    @classmethod
    def preset(cls, budget: str, kind: EncoderKind = "stockformer", **changes: Any) -> EncoderConfig:
        """A config for a compute budget (`changes` override fields):

        - `quick` (CI, seconds): small networks (stockformer: d_model 32, 2 heads, 1+1 layers, d_ff 64;
          light: 32 hidden units), lookback 20, 3 epochs of 20 steps of 8 days.
        - `cpu` (minutes on 2 cores): the release's architecture, 3 epochs of 10 steps of 4 days,
          validation on 8 days. Measured in BENCHMARKS.md ("Encoders"): ~3 min of pretraining for the
          stockformer on csi88, ~20 min to encode the whole timeline (once; cached).
        - `paper`: the release's settings (60 epochs of full passes over the training days, batches
          of 32 days), early-stopped with patience 5 — about 33 h of pretraining on one CPU core.
        """
        budgets: dict[str, dict[str, Any]] = {
            "quick": dict(lookback=20, batch_size=8, steps_per_epoch=20, max_epochs=3, validation_days=16,
                          patience=2, lr=1e-3, hidden=32, d_model=32, n_heads=2, encoder_layers=1,
                          decoder_layers=1, d_ff=64),
            "cpu": dict(batch_size=4, steps_per_epoch=10, max_epochs=3, validation_days=8, patience=2),
            "paper": {},
        }  # fmt: skip
        if budget not in budgets:
            raise UserError(f"unknown encoder budget {budget!r}; choose one of {', '.join(budgets)}")
        return cls(kind=kind, **{**budgets[budget], **changes})

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> EncoderConfig:
        """Build from a plain mapping (a YAML section); unknown keys raise `UserError` naming them."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(
                f"unknown encoder config keys {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def with_(self, **changes: Any) -> EncoderConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)
