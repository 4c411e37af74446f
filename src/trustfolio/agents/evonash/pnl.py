"""Trading PnL with execution penalties (§III-E, eq. 10) and the position overlays, for K agents at once.

Positions ``p[K, T, N]`` are portfolio weights decided at the close of day t and held over day t+1.
Eq. 10's PnL of day t is then

    π_t = p_{t-1}·r_t − c_tc·u_t − λ_risk·|p_{t-1}|·σ_t − λ_imp·u_t² − λ_cap·|p_{t-1}|²·(1 + σ_t),
    u_t = |p_t − p_{t-1}|,  c_tc = bps / 10000,  p_{-1} = 0 (the span starts in cash).

In the default ``penalty_norm: portfolio`` reading (paper-notes), |·| of a position vector is its
gross exposure ||p||_1, u_t = ||p_t − p_{t−1}||_1, and σ_t is the benchmark's volatility; with
``per_asset`` every term is summed over assets with each asset's own volatility. These penalties are
the *training* objective; reported results come from the simulator's backtest (paper-notes).

From signals to positions (paper-notes): ``p = scale·max(0, s)/N``, gross capped at `max_gross`; then
the overlays the paper names without formulas (our forms, documented in docs/evonash.md):
- **rebalance schedule and smoothing** — the direction follows the signal only every
  `rebalance_every` days, moving a fraction `smoothing` of the way to the target (an EMA). This is a
  recurrence; it runs as a loop over the rebalance days on ``[K, N]`` tensors (T / 14 iterations);
- **volatility targeting** — exposure × min(max_scale, target / annualized benchmark vol), daily;
- **tail deleveraging** — exposure × tail_scale for `tail_cooldown` days after a benchmark day below
  −tail_sigma·σ_{t−1}, daily. Both exposure overlays read only data up to the close of t and act
  every day (risk control does not wait for the next rebalance day).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trustfolio.agents.evonash.config import EvoNashConfig


# ---------------------------------------------------------------------------------------- signals → positions
def cap_gross(positions: torch.Tensor, max_gross: float = 1.0) -> torch.Tensor:
    """Scale each (agent, day) row down so that its gross exposure Σ_i |p_i| is at most `max_gross`."""
    gross = positions.abs().sum(-1, keepdim=True)
    return positions * torch.clamp(max_gross / gross.clamp(min=1e-12), max=1.0)


def positions_from_signals(
    signals: torch.Tensor, scale: float | torch.Tensor = 1.0, *, long_only: bool = True, max_gross: float = 1.0
) -> torch.Tensor:
    """paper-notes: ``p = scale·max(0, s)/N`` (``scale·s/N`` when not long-only), gross ≤ `max_gross`.

    `scale` is eq. 29-30's execution scale (a number, or one per agent ``[K]``)."""
    n_assets = signals.shape[-1]
    held = signals.clamp(min=0.0) if long_only else signals
    scale = torch.as_tensor(scale, dtype=signals.dtype)
    if scale.ndim == 1:  # one scale per agent
        scale = scale[:, None, None]
    return cap_gross(scale * held / n_assets, max_gross)


def rebalance_and_smooth(targets: torch.Tensor, every: int = 14, smoothing: float = 1.0) -> torch.Tensor:
    """Positions that move only on rebalance days (day 0, every, 2·every, … of the span), each time
    ``p ← (1 − smoothing)·p + smoothing·target`` from ``p = 0``, held in between. ``[K, T, N]``.

    The EMA is a recurrence: a loop over the T / every rebalance days on ``[K, N]`` tensors."""
    K, T, N = targets.shape
    on_rebalance_days = targets[:, ::every]  # [K, R, N]
    if smoothing < 1.0:
        smoothed, held = [], torch.zeros(K, N, dtype=targets.dtype)
        for r in range(on_rebalance_days.shape[1]):
            held = (1.0 - smoothing) * held + smoothing * on_rebalance_days[:, r]
            smoothed.append(held)
        on_rebalance_days = torch.stack(smoothed, dim=1)
    return on_rebalance_days.repeat_interleave(every, dim=1)[:, :T]


def vol_target_scale(
    market_vol: torch.Tensor, target: float, periods_per_year: int = 252, max_scale: float = 1.0
) -> torch.Tensor:
    """Exposure multiplier ``min(max_scale, target / (σ_t·√periods))``, ``[T]``; `max_scale` where σ_t is
    0 or not yet defined, and 1 everywhere when ``target`` is 0 (overlay off)."""
    if target <= 0:
        return torch.ones_like(market_vol)
    annual = market_vol * periods_per_year**0.5
    defined = torch.isfinite(annual) & (annual > 0)
    scale = torch.where(defined, target / torch.where(defined, annual, 1.0), torch.full_like(annual, max_scale))
    return scale.clamp(max=max_scale)


def tail_deleverage_scale(
    bench: torch.Tensor, market_vol: torch.Tensor, tail_sigma: float, tail_scale: float, cooldown: int
) -> torch.Tensor:
    """Exposure multiplier ``tail_scale`` on a tail day and the ``cooldown − 1`` days after it, else 1.

    Day t is a tail day when ``b_t < −tail_sigma·σ_{t−1}`` (yesterday's trailing volatility, so that
    the crash does not widen its own yardstick). ``[T]``; all ones when `tail_sigma` or `cooldown` is 0."""
    if tail_sigma <= 0 or cooldown <= 0:
        return torch.ones_like(bench)
    previous_vol = torch.cat([bench.new_full((1,), float("nan")), market_vol[:-1]])
    tail_day = (bench < -tail_sigma * previous_vol).to(bench.dtype)  # NaN volatility: never a tail day
    count = torch.cumsum(tail_day, 0)
    in_window = count - torch.cat([count.new_zeros(cooldown), count[:-cooldown]])[: len(count)]
    return torch.where(in_window > 0, torch.full_like(bench, tail_scale), torch.ones_like(bench))


def executed_positions(
    signals: torch.Tensor, bench: torch.Tensor, market_vol: torch.Tensor, config: EvoNashConfig,
    scale: float | torch.Tensor = 1.0,
) -> torch.Tensor:  # fmt: skip
    """Signals ``[K, T, N]`` → executed positions: positions_from_signals, then the rebalance schedule
    with smoothing, then the daily vol-target and tail exposure multipliers, gross capped again."""
    c = config
    targets = positions_from_signals(signals, scale, long_only=c.long_only, max_gross=c.max_gross)
    scheduled = rebalance_and_smooth(targets, c.rebalance_every, c.smoothing)
    exposure = vol_target_scale(market_vol, c.vol_target, c.periods_per_year, c.vol_target_max_scale)
    exposure = exposure * tail_deleverage_scale(bench, market_vol, c.tail_sigma, c.tail_scale, c.tail_cooldown)
    return cap_gross(scheduled * exposure[None, :, None], c.max_gross)


# ---------------------------------------------------------------------------------------- eq. 10
@dataclass(frozen=True, eq=False)
class PnL:
    """Eq. 10 term by term, each ``[K, T]``: ``pnl = gross − cost − risk − impact − capacity``."""

    gross: torch.Tensor  # p_{t-1}·r_t
    cost: torch.Tensor  # c_tc·u_t
    risk: torch.Tensor  # λ_risk·|p_{t-1}|·σ_t
    impact: torch.Tensor  # λ_imp·u_t²
    capacity: torch.Tensor  # λ_cap·|p_{t-1}|²·(1 + σ_t)
    turnover: torch.Tensor  # u_t

    @property
    def pnl(self) -> torch.Tensor:
        return self.gross - self.cost - self.risk - self.impact - self.capacity


def charged_volatility(volatility: torch.Tensor) -> torch.Tensor:
    """σ_t for eq. 10: the trailing volatility known at the close of t−1, when p_{t−1} was chosen
    (the risk of the position held over day t); 0 where not yet defined. Same shape as the input."""
    lagged = torch.cat([torch.zeros_like(volatility[:1]), volatility[:-1]])
    return torch.nan_to_num(lagged, nan=0.0)


def trading_pnl(
    positions: torch.Tensor, returns: torch.Tensor, sigma: torch.Tensor, config: EvoNashConfig
) -> PnL:
    """Eq. 10 for K agents on T days at once (see the module docstring).

    `positions` ``[K, T, N]``, `returns` ``[T, N]`` (r_t, day t's return), `sigma` the volatility
    charged on day t: ``[T]`` in ``portfolio`` mode, ``[T, N]`` in ``per_asset`` mode (see
    `charged_volatility`). Day 0 earns nothing and pays for building p_0 from cash."""
    c = config
    held = torch.cat([torch.zeros_like(positions[:, :1]), positions[:, :-1]], dim=1)  # p_{t-1}
    trade = positions - held  # p_t − p_{t−1}
    gross = (held * returns[None]).sum(-1)
    if c.penalty_norm == "portfolio":
        turnover, exposure = trade.abs().sum(-1), held.abs().sum(-1)  # ||Δp||_1, ||p_{t-1}||_1
        risk = c.risk_penalty * exposure * sigma[None]
        impact = c.impact_penalty * turnover**2
        capacity = c.capacity_penalty * exposure**2 * (1.0 + sigma[None])
    else:
        turnover = trade.abs().sum(-1)
        risk = c.risk_penalty * (held.abs() * sigma[None]).sum(-1)
        impact = c.impact_penalty * (trade**2).sum(-1)
        capacity = c.capacity_penalty * (held**2 * (1.0 + sigma[None])).sum(-1)
    cost = c.transaction_cost_bps / 10_000 * turnover
    return PnL(gross=gross, cost=cost, risk=risk, impact=impact, capacity=capacity, turnover=turnover)
