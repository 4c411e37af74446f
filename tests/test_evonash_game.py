"""The game layer (eq. 11-14, 34-35): multiplicative weights reaches the equilibrium at §IV-B's rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from trustfolio.agents.evonash.config import EvoNashConfig
from trustfolio.agents.evonash.game import (
    ensemble_signal,
    exploitability,
    meta_strategy,
    multiplicative_weights,
    multiplicative_weights_two_player,
    nash_gap,
    payoff_matrix,
    regret_bound,
    theory_eta,
)

D = torch.float64
HORIZONS = (50, 200, 800)
RPS = torch.tensor([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], dtype=D)


def random_antisymmetric(K: int, seed: int) -> torch.Tensor:
    B = torch.rand(K, K, generator=torch.Generator().manual_seed(seed), dtype=D) * 2 - 1
    return (B - B.T) / 2


def average_gaps(payoff: torch.Tensor, initial=None) -> list[float]:
    """The Nash gap of the averaged strategy after T = 50, 200, 800 iterations at §IV-B's step size."""
    G = float(payoff.abs().max())
    K = payoff.shape[0]
    return [float(multiplicative_weights(payoff, T, theory_eta(K, T, G), initial).average_gaps[-1]) for T in HORIZONS]


@pytest.mark.parametrize("name", ["rps", "random-0", "random-1", "random-2", "random-3"])
def test_nash_gap_of_the_average_falls_at_the_no_regret_rate(name):
    payoff = RPS if name == "rps" else random_antisymmetric(8, int(name.split("-")[1]))
    initial = torch.tensor([0.6, 0.3, 0.1], dtype=D) if name == "rps" else None  # uniform is RPS's equilibrium
    K, G = payoff.shape[0], float(payoff.abs().max())
    gaps = average_gaps(payoff, initial)
    assert gaps[0] > gaps[1] > gaps[2] >= 0
    for T, gap in zip(HORIZONS, gaps, strict=True):
        assert gap <= regret_bound(K, T, G) + 1e-12  # eq. 35
        assert gap * math.sqrt(T) / (G * math.sqrt(math.log(K))) <= math.sqrt(2) + 1e-12  # bounded rate
    # 16 times the iterations: the rate promises a 4 times smaller gap; ask for at least 2
    assert gaps[2] <= gaps[0] / 2


def test_rock_paper_scissors_average_converges_to_uniform_and_the_last_iterate_does_not():
    initial = torch.tensor([0.6, 0.3, 0.1], dtype=D)
    distances = []
    for T in (50, 200, 800, 3200):
        result = multiplicative_weights(RPS, T, theory_eta(3, T, 1.0), initial)
        distances.append(float((result.average - 1 / 3).abs().max()))
    assert distances[-1] < 0.03 and distances[-1] < distances[1] < distances[0]
    last = multiplicative_weights(RPS, 800, 0.25, initial).last
    assert float((last - 1 / 3).abs().max()) > 0.1  # the last iterate cycles away: why "average" is the default
    uniform = multiplicative_weights(RPS, 50, 0.25)  # from the equilibrium, MW stays there
    assert torch.allclose(uniform.last, torch.full((3,), 1 / 3, dtype=D))


def test_random_zero_sum_matrix_two_players_reach_the_linear_programming_value():
    rng = np.random.default_rng(5)
    A = rng.uniform(-1, 1, (5, 7))
    # the row player's maximin by LP: max v s.t. xᵀA ≥ v, Σx = 1, x ≥ 0
    res = linprog(np.r_[np.zeros(5), -1.0], A_ub=np.c_[-A.T, np.ones(7)], b_ub=np.zeros(7),
                  A_eq=np.r_[np.ones(5), 0.0][None], b_eq=[1.0], bounds=[(0, None)] * 5 + [(None, None)])  # fmt: skip
    value = -res.fun
    payoff = torch.tensor(A, dtype=D)
    gaps = []
    for T in HORIZONS:
        x, y = multiplicative_weights_two_player(payoff, T, theory_eta(7, T, 1.0))
        gaps.append(float(exploitability(payoff, x, y)))
        assert abs(float(x @ payoff @ y) - value) <= gaps[-1] + 1e-12  # the value lies within the gap
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.1


def test_payoff_matrix_is_antisymmetric_and_mw_finds_the_best_agent():
    mean_pnl = torch.tensor([0.001, -0.0005, 0.002, 0.0], dtype=D)
    A = payoff_matrix(mean_pnl)
    assert torch.equal(A, -A.T) and torch.equal(torch.diagonal(A), torch.zeros(4, dtype=D))
    assert A[2, 0] == mean_pnl[2] - mean_pnl[0]
    m = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=D)
    assert abs(float(m @ A @ m)) < 1e-18  # mᵀAm = 0: eq. 13's gap is max_i (Am)_i
    assert math.isclose(float(nash_gap(A, m)), float((A @ m).max()))
    # scaled to daily-PnL-sized payoffs MW moves slowly; at payoffs of order 1 it concentrates on agent 2
    last = multiplicative_weights(A * 1000, 50, 0.25).last
    assert int(last.argmax()) == 2 and float(last[2]) > 0.99
    config = EvoNashConfig(meta_strategy="last")
    assert torch.allclose(meta_strategy(A * 1000, config), last)
    average = meta_strategy(A * 1000, EvoNashConfig())
    assert math.isclose(float(average.sum()), 1.0) and int(average.argmax()) == 2


def test_daily_payoffs_barely_move_the_meta_strategy_unless_normalized():
    """Eq. 11 in daily PnL units with Table IX's η = 0.25 and 50 iterations: m stays near uniform;
    the ``max`` normalization lets eq. 12 favour the better agents."""
    mean_pnl = torch.tensor([0.0002, 0.0001, 0.0, -0.0001], dtype=D)  # 2 bps a day apart at most
    A = payoff_matrix(mean_pnl)
    literal = meta_strategy(A, EvoNashConfig())
    assert float((literal - 0.25).abs().max()) < 1e-3
    normalized = meta_strategy(A, EvoNashConfig(payoff_normalization="max"))
    assert normalized[0] > 0.5 and torch.all(normalized[:-1] > normalized[1:])


def test_ensemble_signal_is_the_mixture_of_signals():
    g = torch.Generator().manual_seed(1)
    signals = torch.rand(4, 6, 3, generator=g, dtype=D)
    m = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=D)
    expected = sum(m[k] * signals[k] for k in range(4))
    assert torch.allclose(ensemble_signal(m, signals), expected)
    one_hot = torch.tensor([0, 0, 1.0, 0], dtype=D)
    assert torch.equal(ensemble_signal(one_hot, signals), signals[2])
