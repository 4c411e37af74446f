"""Eq. 10 against a hand computation, and the §III-E overlays (rebalance, smoothing, vol target, tail)."""

from __future__ import annotations

import math

import pytest
import torch

from trustfolio.agents.evonash.config import EvoNashConfig
from trustfolio.agents.evonash.pnl import (
    charged_volatility,
    executed_positions,
    positions_from_signals,
    rebalance_and_smooth,
    tail_deleverage_scale,
    trading_pnl,
    vol_target_scale,
)

D = torch.float64

# 2 stocks, 5 days: positions decided at each close, the return of each day, the volatility charged.
POSITIONS = torch.tensor([[[0.5, 0.0], [0.5, 0.3], [0.2, 0.3], [0.2, 0.3], [0.0, 0.0]]], dtype=D)
RETURNS = torch.tensor([[0.0, 0.0], [0.02, -0.01], [-0.03, 0.04], [0.01, 0.0], [0.05, -0.02]], dtype=D)
SIGMA = torch.tensor([0.0, 0.01, 0.02, 0.015, 0.03], dtype=D)
HAND = EvoNashConfig(transaction_cost_bps=10.0, impact_penalty=0.01, capacity_penalty=0.1, risk_penalty=0.5)


def test_pnl_matches_a_hand_computation_with_costs_impact_capacity_and_risk():
    # day | held p_{t-1} | gross p·r         | u   | cost   | risk λ|p|σ        | impact λu²  | capacity λ|p|²(1+σ)
    # 0   | 0, 0        | 0                 | 0.5 | 0.0005 | 0                 | 0.0025      | 0
    # 1   | .5, 0       | .01               | 0.3 | 0.0003 | .5·.5·.01=.0025   | 0.0009      | .1·.25·1.01=.02525
    # 2   | .5, .3      | -.015+.012=-.003  | 0.3 | 0.0003 | .5·.8·.02=.008    | 0.0009      | .1·.64·1.02=.06528
    # 3   | .2, .3      | .002              | 0   | 0      | .5·.5·.015=.00375 | 0           | .1·.25·1.015=.025375
    # 4   | .2, .3      | .01-.006=.004     | 0.5 | 0.0005 | .5·.5·.03=.0075   | 0.0025      | .1·.25·1.03=.02575
    expected = {
        "gross": [0.0, 0.01, -0.003, 0.002, 0.004],
        "turnover": [0.5, 0.3, 0.3, 0.0, 0.5],
        "cost": [0.0005, 0.0003, 0.0003, 0.0, 0.0005],
        "risk": [0.0, 0.0025, 0.008, 0.00375, 0.0075],
        "impact": [0.0025, 0.0009, 0.0009, 0.0, 0.0025],
        "capacity": [0.0, 0.02525, 0.06528, 0.025375, 0.02575],
        "pnl": [-0.003, -0.01895, -0.07748, -0.027125, -0.03225],
    }
    result = trading_pnl(POSITIONS, RETURNS, SIGMA, HAND)
    for name, values in expected.items():
        got = getattr(result, name)
        assert got.shape == (1, 5)
        assert torch.allclose(got[0], torch.tensor(values, dtype=D), atol=1e-12), name


def test_per_asset_penalties_by_hand():
    sigma = torch.tensor([[0, 0], [0.01, 0.02], [0.02, 0.01], [0.01, 0.03], [0.02, 0.02]], dtype=D)
    config = EvoNashConfig(**{**HAND.to_dict(), "penalty_norm": "per_asset"})
    result = trading_pnl(POSITIONS, RETURNS, sigma, config)
    # day 2: held (.5, .3), trade (-.3, 0)
    assert math.isclose(float(result.risk[0, 2]), 0.5 * (0.5 * 0.02 + 0.3 * 0.01), abs_tol=1e-12)
    assert math.isclose(float(result.impact[0, 2]), 0.01 * 0.09, abs_tol=1e-12)
    assert math.isclose(float(result.capacity[0, 2]), 0.1 * (0.25 * 1.02 + 0.09 * 1.01), abs_tol=1e-12)
    assert math.isclose(float(result.pnl[0, 2]), -0.003 - 0.0003 - 0.0065 - 0.0009 - 0.03459, abs_tol=1e-12)


def test_pnl_is_vectorized_over_agents():
    g = torch.Generator().manual_seed(0)
    positions = torch.rand(6, 30, 4, generator=g, dtype=D) / 4
    returns, sigma = torch.randn(30, 4, generator=g, dtype=D) / 100, torch.rand(30, generator=g, dtype=D) / 50
    together = trading_pnl(positions, returns, sigma, HAND).pnl
    for k in range(6):
        assert torch.allclose(together[k], trading_pnl(positions[k : k + 1], returns, sigma, HAND).pnl[0])


def test_charged_volatility_is_yesterdays():
    vol = torch.tensor([float("nan"), 0.01, 0.02], dtype=D)
    assert charged_volatility(vol).tolist() == [0.0, 0.0, 0.01]


# ---------------------------------------------------------------------------------------- overlays
def test_positions_from_signals_long_only_and_gross_cap():
    s = torch.tensor([[[1.0, -0.5, 0.5, 0.0]]], dtype=D)
    assert positions_from_signals(s).tolist() == [[[0.25, 0.0, 0.125, 0.0]]]
    assert positions_from_signals(s, long_only=False).tolist() == [[[0.25, -0.125, 0.125, 0.0]]]
    full = torch.ones(2, 1, 4, dtype=D)
    capped = positions_from_signals(full, torch.tensor([0.5, 1.6], dtype=D))  # per-agent scale
    assert torch.allclose(capped.sum(-1).flatten(), torch.tensor([0.5, 1.0], dtype=D))


def test_rebalance_holds_between_rebalance_days_and_smoothing_is_an_ema():
    targets = torch.arange(1.0, 8.0, dtype=D).reshape(1, 7, 1)
    held = rebalance_and_smooth(targets, every=3, smoothing=1.0)
    assert held.flatten().tolist() == [1, 1, 1, 4, 4, 4, 7]
    smooth = rebalance_and_smooth(targets, every=3, smoothing=0.5)
    # rebalance days 0, 3, 6: 0.5·1 = 0.5, then 0.5·0.5 + 0.5·4 = 2.25, then 0.5·2.25 + 0.5·7 = 4.625
    assert smooth.flatten().tolist() == [0.5, 0.5, 0.5, 2.25, 2.25, 2.25, 4.625]


def test_vol_target_scale():
    vol = torch.tensor([float("nan"), 0.0, 0.02, 0.001], dtype=D)
    scale = vol_target_scale(vol, target=0.15, periods_per_year=252, max_scale=1.0)
    assert scale[0] == 1.0 and scale[1] == 1.0 and scale[3] == 1.0
    assert math.isclose(float(scale[2]), 0.15 / (0.02 * math.sqrt(252)))
    assert torch.equal(vol_target_scale(vol, target=0.0), torch.ones_like(vol))


def test_tail_deleveraging_lasts_cooldown_days_from_the_tail_day():
    bench = torch.zeros(40, dtype=D)
    bench[30] = -0.05
    vol = torch.full((40,), 0.01, dtype=D)
    vol[:5] = float("nan")
    scale = tail_deleverage_scale(bench, vol, tail_sigma=3.0, tail_scale=0.5, cooldown=5)
    assert scale[:30].eq(1).all() and scale[30:35].eq(0.5).all() and scale[35:].eq(1).all()
    bench[2] = -0.5  # volatility not yet defined: not a tail day
    assert tail_deleverage_scale(bench, vol, 3.0, 0.5, 5)[2:7].eq(1).all()


@pytest.mark.parametrize("t", [0, 13, 14, 29])
def test_executed_positions_are_causal_bounded_and_long_only(t):
    """Positions up to t do not change when signals and market data after t change; gross ≤ 1, ≥ 0."""
    config = EvoNashConfig()
    g = torch.Generator().manual_seed(t)
    signals = torch.rand(3, 30, 5, generator=g, dtype=D) * 2 - 0.5
    bench = torch.randn(30, generator=g, dtype=D) / 50
    vol = torch.rand(30, generator=g, dtype=D) / 50
    base = executed_positions(signals, bench, vol, config, scale=1.6)
    signals2, bench2, vol2 = signals.clone(), bench.clone(), vol.clone()
    signals2[:, t + 1 :] = 5.0
    bench2[t + 1 :] = -0.3
    vol2[t + 1 :] = 0.5
    changed = executed_positions(signals2, bench2, vol2, config, scale=1.6)
    assert torch.equal(base[:, : t + 1], changed[:, : t + 1])
    assert base.min() >= 0 and base.abs().sum(-1).max() <= config.max_gross + 1e-12
