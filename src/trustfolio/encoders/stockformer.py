"""StockFormer's three branches (Gao et al. 2023), built from `torch.nn` transformer layers.

Each branch is the release's `Transformer_base`: an input embedding plus sinusoidal positions, an
encoder (self-attention), a decoder whose queries attend to the encoder output, then — our addition —
a linear bottleneck to `out_dim` features (the branch's market state) and a linear head that reads the
task's output from that state only, so the state carries what the pretraining task needed.

- Predictors (long-term: 5-day return, short-term: 1-day return): tokens are the `lookback` days of
  one stock (each stock is its own sequence, as in the release); the decoder's single query is the
  last day. Output `[B, N]` predicted (standardized) returns.
- Relational (masked autoencoder): tokens are the N stocks of one day, each a row `[covariance row ‖
  indicators]`; the caller zeroes the indicators of masked stocks and the head reconstructs them.
  (The release's decoder self-attention is causal over stocks; stocks have no order, so ours is not.)

Sizes: `EncoderConfig` (release: d_model 128, 4 heads, 2 encoder + 1 decoder layers, d_ff 256,
dropout 0.05, GELU).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from trustfolio.encoders.config import EncoderConfig


def sinusoidal_positions(length: int, d_model: int) -> torch.Tensor:
    """The transformer's fixed sine/cosine position table, `[length, d_model]`."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: d_model // 2])
    return table


class TransformerBranch(nn.Module):
    """Encoder–decoder transformer with an `out_dim` bottleneck: `(tokens, queries) -> (state, output)`."""

    def __init__(self, in_features: int, n_outputs: int, max_tokens: int, config: EncoderConfig) -> None:
        super().__init__()
        d = config.d_model
        self.embed_tokens = nn.Linear(in_features, d)
        self.embed_queries = nn.Linear(in_features, d)
        self.register_buffer("positions", sinusoidal_positions(max_tokens, d), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        layer = dict(d_model=d, nhead=config.n_heads, dim_feedforward=config.d_ff, dropout=config.dropout,
                     activation="gelu", batch_first=True)  # fmt: skip
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(**layer), config.encoder_layers, norm=nn.LayerNorm(d),
            enable_nested_tensor=False,
        )  # fmt: skip
        self.decoder = nn.TransformerDecoder(
            nn.TransformerDecoderLayer(**layer), config.decoder_layers, norm=nn.LayerNorm(d)
        )
        self.to_state = nn.Linear(d, config.out_dim)
        self.head = nn.Linear(config.out_dim, n_outputs)

    def forward(self, tokens: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`tokens [B, S, F]`, `queries [B, Q, F]` -> state `[B, Q, out_dim]`, output `[B, Q, n_outputs]`."""
        memory = self.dropout(self.embed_tokens(tokens) + self.positions[: tokens.shape[1]])
        memory = self.encoder(memory)
        decoded = self.dropout(self.embed_queries(queries) + self.positions[: queries.shape[1]])
        decoded = self.decoder(decoded, memory)
        state = self.to_state(decoded)
        return state, self.head(state)


class TransformerPredictor(nn.Module):
    """A forward-return predictor: one sequence per stock over its look-back window."""

    def __init__(self, n_features: int, config: EncoderConfig) -> None:
        super().__init__()
        self.transformer = TransformerBranch(n_features, 1, config.lookback, config)

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`windows [B, N, L, F]` -> state `[B, N, out_dim]`, predicted standardized return `[B, N]`."""
        B, N, L, F = windows.shape
        sequences = windows.reshape(B * N, L, F)
        state, prediction = self.transformer(sequences, sequences[:, -1:])  # the query is the last day
        return state.reshape(B, N, -1), prediction.reshape(B, N)


class TransformerRelational(nn.Module):
    """The relational masked autoencoder: one sequence per day whose tokens are the stocks."""

    def __init__(self, n_features: int, n_indicators: int, n_stocks: int, config: EncoderConfig) -> None:
        super().__init__()
        self.transformer = TransformerBranch(n_features, n_indicators, n_stocks, config)

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`rows [B, N, N+I]` (masked stocks' indicators zeroed) -> state `[B, N, out_dim]`, indicators `[B, N, I]`."""
        return self.transformer(rows, rows)
