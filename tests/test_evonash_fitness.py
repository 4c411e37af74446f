"""Utility, violation, fitness, diversity (eq. 15-18) by hand; evolution operators are seed-deterministic."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from trustfolio.agents.evonash.config import EvoNashConfig
from trustfolio.agents.evonash.fitness import (
    conditional_value_at_risk,
    diversity,
    downside_deviation,
    elite_indices,
    fitness,
    max_drawdown,
    mutate,
    next_generation,
    portfolio_beta,
    sharpe_ratio,
    tournament_select,
    utility,
    violation,
)
from trustfolio.agents.evonash.game import payoff_matrix
from trustfolio.agents.evonash.population import init_population

D = torch.float64
PNL = torch.tensor([[0.01, -0.02, 0.03, 0.0, -0.01, 0.02, 0.005, -0.04]], dtype=D)
BENCH = torch.tensor([0.005, -0.01, 0.01, 0.0, 0.0, 0.01, 0.0, -0.01], dtype=D)


def test_statistics_by_hand():
    x = PNL[0].numpy()
    assert math.isclose(float(sharpe_ratio(PNL)[0]), x.mean() / x.std(ddof=1) * math.sqrt(252))
    assert math.isclose(float(downside_deviation(PNL)[0]), math.sqrt((np.minimum(x, 0) ** 2).mean() * 252))
    assert math.isclose(float(max_drawdown(torch.tensor([[0.1, -0.5, 0.2]], dtype=D))[0]), -0.5)
    assert math.isclose(float(max_drawdown(torch.tensor([[-0.1, 0.05]], dtype=D))[0]), -0.1)  # a day-0 loss counts
    assert float(max_drawdown(torch.tensor([[0.1, 0.2]], dtype=D))[0]) == 0.0
    assert math.isclose(float(conditional_value_at_risk(PNL, 0.25)[0]), (-0.04 - 0.02) / 2)  # worst 2 of 8
    assert float(sharpe_ratio(torch.zeros(1, 5, dtype=D))[0]) == 0.0
    assert math.isclose(float(portfolio_beta(2 * BENCH[None] + 0.001, BENCH)[0]), 2.0)


def test_violation_and_utility_by_hand():
    config = EvoNashConfig(tail_quantile=0.25, cvar_floor=-0.01, worst_day_floor=-0.02)
    excess = (PNL - BENCH)[0].numpy()  # [0.005, -0.01, 0.02, 0, -0.01, 0.01, 0.005, -0.03]
    cvar = np.sort(excess)[:2].mean()  # (-0.03 - 0.01) / 2 = -0.02
    expected_violation = max(0.0, -0.01 - cvar) + max(0.0, -0.02 - excess.min())  # 0.01 + 0.01
    assert math.isclose(float(violation(PNL, BENCH, config)[0]), expected_violation)
    assert math.isclose(expected_violation, 0.02)
    u = utility(PNL, BENCH, config)
    x = PNL[0].numpy()
    wealth = np.cumprod(1 + x)
    mdd = (wealth / np.maximum.accumulate(np.r_[1.0, wealth])[1:] - 1).min()
    expected = (x.mean() / x.std(ddof=1) * math.sqrt(252)
                + config.lambda_excess * excess.mean() / excess.std(ddof=1) * math.sqrt(252)
                - config.lambda_down * math.sqrt((np.minimum(x, 0) ** 2).mean() * 252)
                - config.lambda_drawdown * abs(mdd)
                - config.lambda_cvar * abs(min(0.0, cvar))
                - config.lambda_worst * abs(min(0.0, excess.min()))
                - config.lambda_violation * expected_violation)  # fmt: skip
    assert math.isclose(float(u.total[0]), expected, rel_tol=1e-12)


def test_diversity_against_numpy_and_extremes():
    g = torch.Generator().manual_seed(0)
    signals = torch.rand(5, 20, 3, generator=g, dtype=D)
    corr = np.abs(np.corrcoef(signals.reshape(5, -1).numpy()))
    expected = 1 - (corr.sum(1) - 1) / 4
    assert np.allclose(diversity(signals).numpy(), expected)
    same = torch.stack([signals[0], -signals[0], 2 * signals[0]])
    assert torch.allclose(diversity(same), torch.zeros(3, dtype=D))  # |Corr| = 1: no diversity
    orthogonal = torch.tensor([[1.0, -1, 0, 0], [0, 0, 1, -1]], dtype=D)
    assert torch.allclose(diversity(orthogonal), torch.ones(2, dtype=D))
    assert diversity(signals[:1]).tolist() == [1.0]


def test_fitness_is_eq_17():
    config = EvoNashConfig()
    mean_pnl = torch.tensor([0.001, 0.0, -0.001], dtype=D)
    A, m = payoff_matrix(mean_pnl), torch.tensor([0.5, 0.3, 0.2], dtype=D)
    U, Dk = torch.tensor([1.0, 0.5, -0.2], dtype=D), torch.tensor([0.3, 0.6, 0.9], dtype=D)
    beta, league = torch.tensor([0.55, 1.0, 0.0], dtype=D), torch.tensor([0.1, 0.0, -0.1], dtype=D)
    F = fitness(A, m, U, Dk, beta, config, league)
    for k in range(3):
        expected = (float(A[k] @ m) + float(U[k]) + 0.1 * float(Dk[k]) + 0.1 * float(league[k])
                    - 0.25 * abs(float(beta[k]) - 0.55))  # fmt: skip
        assert math.isclose(float(F[k]), expected, rel_tol=1e-12)


# ---------------------------------------------------------------------------------------- evolution
def population_and_fitness(seed: int = 0):
    config = EvoNashConfig(population_size=8, elite_count=2)
    params = init_population(8, 5, config, torch.Generator().manual_seed(seed), dtype=D)
    return config, params, torch.tensor([0.1, 0.7, -0.3, 0.7, 0.2, 0.9, 0.0, -1.0], dtype=D)


def test_same_seed_same_next_generation_and_another_seed_another():
    config, params, F = population_and_fitness()
    runs = [next_generation(params, F, config, torch.Generator().manual_seed(s)) for s in (42, 42, 43)]
    (a, parents_a), (b, parents_b), (c, parents_c) = runs
    assert torch.equal(parents_a, parents_b)
    assert all(torch.equal(u, v) for u, v in zip(a.to_dict().values(), b.to_dict().values(), strict=True))
    assert not torch.equal(a.weights, c.weights)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(tournament_select(F, 20, 3, g1), tournament_select(F, 20, 3, g2))
    m1 = mutate(params, torch.Generator().manual_seed(5), 0.1, 0.1)
    m2 = mutate(params, torch.Generator().manual_seed(5), 0.1, 0.1)
    assert torch.equal(m1.weights, m2.weights) and torch.equal(m1.temperature, m2.temperature)


def test_elites_survive_unchanged_and_children_come_from_tournament_winners():
    config, params, F = population_and_fitness()
    assert elite_indices(F, 3).tolist() == [5, 1, 3]  # ties (0.7, 0.7): the lower index first
    new, parents = next_generation(params, F, config, torch.Generator().manual_seed(0))
    assert new.size == params.size and parents[:2].tolist() == [5, 1]
    assert torch.equal(new.weights[:2], params.weights[[5, 1]]) and torch.equal(new.temperature[:2], params.temperature[[5, 1]])
    assert not torch.equal(new.weights[2:], params.weights[parents[2:]])  # children are mutated
    assert (new.temperature > 0).all() and torch.equal(new.leverage_max, params.leverage_max[parents])
    # each tournament returns its fittest entrant: replay the draws of the same generator
    g = torch.Generator().manual_seed(3)
    winners = tournament_select(F, 50, 3, g)
    entrants = torch.randint(0, 8, (50, 3), generator=torch.Generator().manual_seed(3))
    assert torch.equal(F[winners], F[entrants].max(dim=1).values)
    assert (tournament_select(F, 50, 64, torch.Generator().manual_seed(1)) == 5).all()  # huge tournaments: the best


def test_evonash_files_stay_small():
    folder = Path(__file__).resolve().parents[1] / "src" / "trustfolio" / "agents" / "evonash"
    sizes = {path.name: len(path.read_text().splitlines()) for path in folder.glob("*.py")}
    assert {"config.py", "features.py", "population.py", "pnl.py", "game.py", "fitness.py"} <= set(sizes)
    assert max(sizes.values()) <= 450, sizes
