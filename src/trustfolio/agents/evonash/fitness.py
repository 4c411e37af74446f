"""Utility, constraint violation, fitness and diversity (§III-G, eq. 15-18), and the evolution operators.

Every function takes the daily PnL of all K agents at once, ``pnl[K, T]`` (eq. 10's π), and the
benchmark's daily returns ``bench[T]`` (b_t), and returns one number per agent ``[K]``.

Conventions (the paper names these statistics without defining them; ours, in docs/evonash.md):
- SR and DownDev are annualized with √periods_per_year; a series with zero spread has SR 0;
- MDD is the most negative drawdown of the wealth ``Π(1 + π)`` (≤ 0);
- ``CVaR_α(x)`` is the signed mean of the worst ``ceil(α·T)`` days of x (negative in a loss tail), so
  ``min(0, CVaR)`` in eq. 15 penalizes a loss tail and eq. 16 compares it with the floor c*_cvar.

The evolution operators (§III-K: elite retention, mutation; tournament selection) are pure functions
of a `torch.Generator`: the same generator state gives the same next generation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from trustfolio.agents.evonash.config import EvoNashConfig
from trustfolio.agents.evonash.population import PopulationParams


# ---------------------------------------------------------------------------------------- statistics
def sharpe_ratio(returns: torch.Tensor, periods_per_year: int = 252) -> torch.Tensor:
    """Annualized Sharpe ratio of each row of ``[K, T]`` (risk-free 0, std with ddof 1; 0 if flat)."""
    std = returns.std(dim=-1)
    ratio = returns.mean(dim=-1) / torch.where(std > 0, std, torch.ones_like(std))
    return torch.where(std > 0, ratio, torch.zeros_like(ratio)) * math.sqrt(periods_per_year)


def downside_deviation(returns: torch.Tensor, periods_per_year: int = 252) -> torch.Tensor:
    """Annualized ``√(mean(min(0, x)²))`` of each row."""
    return returns.clamp(max=0.0).pow(2).mean(dim=-1).sqrt() * math.sqrt(periods_per_year)


def max_drawdown(returns: torch.Tensor) -> torch.Tensor:
    """The deepest fall of the wealth ``Π(1 + x)`` from its running peak (starting at 1), ≤ 0, per row."""
    wealth = torch.cumprod(1.0 + returns, dim=-1)
    peak = torch.cummax(torch.cat([torch.ones_like(wealth[..., :1]), wealth], dim=-1), dim=-1).values[..., 1:]
    return (wealth / peak - 1.0).min(dim=-1).values.clamp(max=0.0)


def conditional_value_at_risk(returns: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    """``CVaR_α``: the mean of the worst ``ceil(α·T)`` values of each row (signed)."""
    worst = max(1, math.ceil(alpha * returns.shape[-1]))
    return torch.sort(returns, dim=-1).values[..., :worst].mean(dim=-1)


def portfolio_beta(pnl: torch.Tensor, bench: torch.Tensor) -> torch.Tensor:
    """β_k = Cov(π_k, b) / Var(b) over the days (eq. 17's β_k); 0 when b does not vary."""
    b = bench - bench.mean()
    var = (b * b).mean()
    cov = ((pnl - pnl.mean(dim=-1, keepdim=True)) * b).mean(dim=-1)
    return cov / var if var > 0 else torch.zeros_like(cov)


# ---------------------------------------------------------------------------------------- eq. 15-18
def violation(pnl: torch.Tensor, bench: torch.Tensor, config: EvoNashConfig) -> torch.Tensor:
    """Eq. 16: ``max(0, c*_cvar − CVaR_α(π − b)) + max(0, c*_worst − min_t(π_t − b_t))``."""
    excess = pnl - bench
    tail = (config.cvar_floor - conditional_value_at_risk(excess, config.tail_quantile)).clamp(min=0.0)
    worst = (config.worst_day_floor - excess.min(dim=-1).values).clamp(min=0.0)
    return tail + worst


@dataclass(frozen=True, eq=False)
class Utility:
    """Eq. 15 term by term (each ``[K]``, penalties ≥ 0); `total` is U_k."""

    sharpe: torch.Tensor  # SR(π)
    excess_sharpe: torch.Tensor  # λ_ex·SR(π − b)
    downside: torch.Tensor  # λ_down·DownDev(π)
    drawdown: torch.Tensor  # λ_dd·|MDD(π)|
    cvar: torch.Tensor  # λ_cvar·|min(0, CVaR_α(π − b))|
    worst_day: torch.Tensor  # λ_worst·|min(0, min_t(π − b))|
    violation: torch.Tensor  # λ_con·Violation (eq. 16)

    @property
    def total(self) -> torch.Tensor:
        return (self.sharpe + self.excess_sharpe - self.downside - self.drawdown - self.cvar - self.worst_day
                - self.violation)  # fmt: skip


def utility(pnl: torch.Tensor, bench: torch.Tensor, config: EvoNashConfig) -> Utility:
    """Eq. 15 for every agent: risk-adjusted and benchmark-relative reward minus downside, drawdown,
    tail, worst-day and constraint penalties."""
    c, excess = config, pnl - bench
    P = c.periods_per_year
    return Utility(
        sharpe=sharpe_ratio(pnl, P),
        excess_sharpe=c.lambda_excess * sharpe_ratio(excess, P),
        downside=c.lambda_down * downside_deviation(pnl, P),
        drawdown=c.lambda_drawdown * max_drawdown(pnl).abs(),
        cvar=c.lambda_cvar * conditional_value_at_risk(excess, c.tail_quantile).clamp(max=0.0).abs(),
        worst_day=c.lambda_worst * excess.min(dim=-1).values.clamp(max=0.0).abs(),
        violation=c.lambda_violation * violation(pnl, bench, c),
    )


def diversity(signals: torch.Tensor) -> torch.Tensor:
    """Eq. 18: ``D_k = 1 − (1/(K−1)) Σ_{j≠k} |Corr(s_k, s_j)|``, signals ``[K, ...]`` flattened per agent.

    A constant signal has correlation 0 with everything (it carries no ranking to duplicate); a
    population of one has D = 1."""
    K = signals.shape[0]
    if K < 2:
        return torch.ones(K, dtype=signals.dtype)
    flat = signals.reshape(K, -1)
    centred = flat - flat.mean(dim=1, keepdim=True)
    norm = centred.norm(dim=1)
    unit = centred / torch.where(norm > 0, norm, torch.ones_like(norm))[:, None]
    corr = (unit @ unit.T).abs()
    off_diagonal = corr.sum(dim=1) - torch.diagonal(corr)
    return 1.0 - off_diagonal / (K - 1)


def fitness(
    payoff: torch.Tensor, mixture: torch.Tensor, utility_total: torch.Tensor, diversity_k: torch.Tensor,
    beta: torch.Tensor, config: EvoNashConfig, league: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """Eq. 17: ``F_k = (A m)_k + U_k + λ_div·D_k + λ_league·L_k − λ_β·|β_k − β*|``.

    `league` is L_k, the league-advantage term of §III-H (built with the league best responses,
    eq. 19-23, in the agent's training loop); 0 when not given."""
    c = config
    league = torch.zeros_like(utility_total) if league is None else league
    return (payoff @ mixture + utility_total + c.lambda_diversity * diversity_k + c.lambda_league * league
            - c.lambda_beta * (beta - c.beta_target).abs())  # fmt: skip


# ---------------------------------------------------------------------------------------- evolution
def elite_indices(fitness_k: torch.Tensor, count: int) -> torch.Tensor:
    """The `count` fittest agents, fittest first (ties: the lower index first)."""
    order = torch.sort(fitness_k, descending=True, stable=True).indices
    return order[:count]


def tournament_select(
    fitness_k: torch.Tensor, count: int, size: int, generator: torch.Generator
) -> torch.Tensor:
    """`count` tournaments of `size` entrants drawn uniformly (with replacement); each returns its
    fittest entrant (ties: the first drawn). ``[count]`` indices."""
    entrants = torch.randint(0, fitness_k.shape[0], (count, size), generator=generator)
    winner = torch.argmax(fitness_k[entrants], dim=1)  # argmax returns the first maximum
    return entrants[torch.arange(count), winner]


def mutate(
    params: PopulationParams, generator: torch.Generator, std: float, temperature_std: float
) -> PopulationParams:
    """Gaussian noise of `std` on every weight and bias of both heads; τ multiplied by
    ``exp(N(0, temperature_std²))`` so that it stays positive. Leverage bounds are inherited."""

    def noisy(tensor: torch.Tensor, scale: float) -> torch.Tensor:
        return tensor + scale * torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)

    return replace(
        params,
        weights=noisy(params.weights, std), bias=noisy(params.bias, std),
        regime_bias=noisy(params.regime_bias, std), risk_weights=noisy(params.risk_weights, std),
        risk_bias=noisy(params.risk_bias, std), risk_regime_bias=noisy(params.risk_regime_bias, std),
        temperature=params.temperature * torch.exp(noisy(torch.zeros_like(params.temperature), temperature_std)),
    )  # fmt: skip


def next_generation(
    params: PopulationParams, fitness_k: torch.Tensor, config: EvoNashConfig, generator: torch.Generator
) -> tuple[PopulationParams, torch.Tensor]:
    """One generation (§III-K): the `elite_count` fittest agents kept unchanged, the rest of the
    population refilled with mutated copies of tournament winners. Returns the new population (same
    size, elites first) and the parent index of each of its agents."""
    c = config
    elites = elite_indices(fitness_k, c.elite_count)
    parents = tournament_select(fitness_k, params.size - c.elite_count, c.tournament_size, generator)
    children = mutate(params.select(parents), generator, c.mutation_std, c.temperature_mutation_std)
    return PopulationParams.concat([params.select(elites), children]), torch.cat([elites, parents])
