"""The one observation every learning agent reads, built here and nowhere else.

Per portfolio and day ``t``:

    obs_t = [ h[t] flattened (N·D) ‖ cash_t / initial_cash ‖ w_t (N) ]

``h[t]`` is the action-free market state of day ``t`` (`MarketStates`, e.g. the normalized OHLCV +
indicators of `FeatureSet.market_states()`, or an encoder's embedding) and ``w_t = holdings ·
close[t] / value`` the portfolio weights. The N + 1 balance features are the paper's balance state
``z_t`` (cash and holdings), made scale-free so one network serves any capital.

The agents' training loops, the deterministic rollout (evaluation callback, value-overestimation
diagnostic), backtest policies and `TradingEnv` all assemble observations with these functions.
"""

from __future__ import annotations

import torch


def observation_dim(n_stocks: int, n_features: int) -> int:
    """Length of an observation: market state (N·D), cash share (1), weights (N)."""
    return n_stocks * n_features + 1 + n_stocks


def balance_features(cash: torch.Tensor, weights: torch.Tensor, initial_cash: float) -> torch.Tensor:
    """``[cash / initial_cash ‖ weights]`` as float32 ``[B, N + 1]`` (cash ``[B]``, weights ``[B, N]``)."""
    return torch.cat([(cash / initial_cash).unsqueeze(-1), weights], dim=-1).float()


def observation(market_rows: torch.Tensor, balance: torch.Tensor) -> torch.Tensor:
    """``[B, obs_dim]``: market rows ``h[t]`` ``[B, N·D]`` beside balance features ``[B, N + 1]``."""
    return torch.cat([market_rows, balance], dim=-1)


def split_observation(obs: torch.Tensor, n_stocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inverse of `observation`: (market rows ``[..., N·D]``, balance features ``[..., N + 1]``)."""
    return obs[..., : -(n_stocks + 1)], obs[..., -(n_stocks + 1) :]


__all__ = ["balance_features", "observation", "observation_dim", "split_observation"]
