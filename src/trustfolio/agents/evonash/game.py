"""The game layer (§III-F, §IV-B, eq. 11-14, 34-35): payoff matrix, multiplicative weights, Nash gap,
ensemble signal.

The population plays a symmetric zero-sum meta-game: agent i's payoff against agent j is
``A_ij = π̄_i − π̄_j`` (eq. 11, antisymmetric). The meta-strategy ``m ∈ Δ^K`` comes from
multiplicative weights in self-play (eq. 12): each iteration every agent's value against the current
mixture is ``v = A m`` and ``m_k ← m_k·exp(η v_k)`` renormalized. The Nash gap (eq. 13) measures how
far a mixture is from an equilibrium; for the time-average of the iterates it is the average regret,
so it falls as ``O(√(log K / T))`` with §IV-B's step size (eq. 34-35; tests/test_evonash_game.py
measures it on rock-paper-scissors and random games).

Which mixture is "the" meta-strategy is a config switch (``meta_strategy``): the time-average (ours,
the strategy §IV-B's guarantee is about; on rock-paper-scissors the last iterate cycles) or the
literal last iterate m^(T) of eq. 12.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trustfolio.agents.evonash.config import EvoNashConfig


def payoff_matrix(mean_pnl: torch.Tensor) -> torch.Tensor:
    """Eq. 11: ``A_ij = π̄_i − π̄_j`` from each agent's mean PnL ``[K]``; antisymmetric, ``[K, K]``."""
    return mean_pnl[:, None] - mean_pnl[None, :]


def nash_gap(payoff: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """Eq. 13: ``max_i (A m)_i − mᵀ A m`` (0 exactly at a symmetric equilibrium of the game ``A``)."""
    values = payoff @ mixture
    return values.max() - mixture @ values


@dataclass(frozen=True)
class MetaStrategy:
    """The outcome of eq. 12's iterations: the last iterate, the average of the iterates played, and the
    Nash gap (eq. 13) of each after every iteration (``[iterations]``, for the convergence plots)."""

    last: torch.Tensor  # m^(T)
    average: torch.Tensor  # (1/T) Σ_{τ<T} m^(τ)
    last_gaps: torch.Tensor
    average_gaps: torch.Tensor


def multiplicative_weights(
    payoff: torch.Tensor, iterations: int = 50, eta: float = 0.25, initial: torch.Tensor | None = None
) -> MetaStrategy:
    """Eq. 12: ``v^(τ) = A m^(τ)``, ``m_k^(τ+1) ∝ m_k^(τ) exp(η v_k^(τ))`` from `initial` (uniform by
    default), `iterations` times. Kept in log space so that large η·v cannot overflow."""
    K = payoff.shape[0]
    log_m = torch.log(initial) if initial is not None else torch.full((K,), -math.log(K), dtype=payoff.dtype)
    log_m = log_m - torch.logsumexp(log_m, 0)
    total = torch.zeros(K, dtype=payoff.dtype)
    last_gaps, average_gaps = [], []
    for tau in range(iterations):
        m = log_m.exp()
        total = total + m  # the strategy played at iteration τ
        log_m = log_m + eta * (payoff @ m)
        log_m = log_m - torch.logsumexp(log_m, 0)
        last_gaps.append(nash_gap(payoff, log_m.exp()))
        average_gaps.append(nash_gap(payoff, total / (tau + 1)))
    if iterations == 0:  # nothing played: both mixtures are the starting point
        return MetaStrategy(log_m.exp(), log_m.exp(), torch.zeros(0), torch.zeros(0))
    return MetaStrategy(last=log_m.exp(), average=total / iterations,
                        last_gaps=torch.stack(last_gaps), average_gaps=torch.stack(average_gaps))  # fmt: skip


def meta_strategy(payoff: torch.Tensor, config: EvoNashConfig) -> torch.Tensor:
    """The population's mixture m: eq. 12 with the config's iterations and η, then the average or the
    last iterate (``meta_strategy``). With ``payoff_normalization: max`` eq. 12 runs on A / max|A|."""
    if config.payoff_normalization == "max" and payoff.abs().max() > 0:
        payoff = payoff / payoff.abs().max()
    result = multiplicative_weights(payoff, config.psro_iterations, config.psro_eta)
    return result.average if config.meta_strategy == "average" else result.last


def theory_eta(n_agents: int, iterations: int, payoff_bound: float) -> float:
    """§IV-B's step size ``η = √(2 log K / (T G²))`` for payoffs bounded by G (eq. 34)."""
    return math.sqrt(2.0 * math.log(n_agents) / (iterations * payoff_bound**2))


def regret_bound(n_agents: int, iterations: int, payoff_bound: float) -> float:
    """Eq. 35: average regret ``≤ G √(2 log K / T)``; in self-play on an antisymmetric A the Nash gap of
    the average strategy equals the average regret, so this bounds it too."""
    return payoff_bound * math.sqrt(2.0 * math.log(n_agents) / iterations)


# ---------------------------------------------------------------------------------------- general zero-sum
def exploitability(payoff: torch.Tensor, row: torch.Tensor, column: torch.Tensor) -> torch.Tensor:
    """The two-player Nash gap of ``(x, y)`` in the zero-sum game where the row player receives ``A``:
    ``max_i (A y)_i − min_j (xᵀ A)_j`` (≥ 0, 0 exactly at an equilibrium)."""
    return (payoff @ column).max() - (row @ payoff).min()


def multiplicative_weights_two_player(
    payoff: torch.Tensor, iterations: int, eta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 12 for a general (not necessarily symmetric) zero-sum game: both players run multiplicative
    weights against each other (the row player on ``A y``, the column player on ``−Aᵀ x``); returns
    the averages of the strategies played, ``(x̄, ȳ)``."""
    n_rows, n_cols = payoff.shape
    log_x = torch.full((n_rows,), -math.log(n_rows), dtype=payoff.dtype)
    log_y = torch.full((n_cols,), -math.log(n_cols), dtype=payoff.dtype)
    sum_x, sum_y = torch.zeros(n_rows, dtype=payoff.dtype), torch.zeros(n_cols, dtype=payoff.dtype)
    for _ in range(iterations):
        x, y = log_x.exp(), log_y.exp()
        sum_x, sum_y = sum_x + x, sum_y + y
        log_x = log_x + eta * (payoff @ y)
        log_y = log_y - eta * (x @ payoff)
        log_x, log_y = log_x - torch.logsumexp(log_x, 0), log_y - torch.logsumexp(log_y, 0)
    return sum_x / iterations, sum_y / iterations


# ---------------------------------------------------------------------------------------- eq. 14
def ensemble_signal(mixture: torch.Tensor, signals: torch.Tensor) -> torch.Tensor:
    """Eq. 14 (and eq. 19's opponent aggregate): ``s^ens_t = Σ_k m_k s_{k,t}`` for signals ``[K, T, ...]``."""
    return torch.tensordot(mixture, signals, dims=1)
