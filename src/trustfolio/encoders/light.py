"""The light encoder: the same three branches and tasks as StockFormer, with small MLPs.

For quick runs and tests. Same interfaces as `trustfolio.encoders.stockformer`:

- `MLPPredictor`: each stock's look-back window flattened (`lookback x F` numbers) → two GELU layers of
  `hidden` units → `out_dim` state → linear head (predicted standardized forward return).
- `SetRelational`: a masked autoencoder over the stocks of one day without attention. Each stock's row
  is embedded on its own, the mean embedding over stocks is the day's context (a Deep Sets pooling, so
  a masked stock can be reconstructed from the others), and `[own ‖ context]` → `out_dim` state →
  linear head (the masked indicators).
"""

from __future__ import annotations

import torch
from torch import nn

from trustfolio.encoders.config import EncoderConfig


class MLPPredictor(nn.Module):
    """A forward-return predictor: an MLP over each stock's flattened look-back window."""

    def __init__(self, n_features: int, config: EncoderConfig) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(config.lookback * n_features, config.hidden),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden, config.hidden),
            nn.GELU(),
        )
        self.to_state = nn.Linear(config.hidden, config.out_dim)
        self.head = nn.Linear(config.out_dim, 1)

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`windows [B, N, L, F]` -> state `[B, N, out_dim]`, predicted standardized return `[B, N]`."""
        state = self.to_state(self.body(windows.flatten(start_dim=2)))
        return state, self.head(state).squeeze(-1)


class SetRelational(nn.Module):
    """The relational masked autoencoder with mean pooling over the stocks of a day."""

    def __init__(self, n_features: int, n_indicators: int, config: EncoderConfig) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(n_features, config.hidden), nn.GELU())
        self.combine = nn.Sequential(nn.Linear(2 * config.hidden, config.hidden), nn.GELU())
        self.to_state = nn.Linear(config.hidden, config.out_dim)
        self.head = nn.Linear(config.out_dim, n_indicators)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`rows [B, N, N+I]` (masked stocks' indicators zeroed) -> state `[B, N, out_dim]`, indicators `[B, N, I]`."""
        own = self.embed(rows)
        context = own.mean(dim=1, keepdim=True).expand_as(own)
        state = self.to_state(self.combine(torch.cat([own, context], dim=-1)))
        return state, self.head(state)
