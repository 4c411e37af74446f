"""The EvoNash population (eq. 5-9): batched evaluation equals the equations term by term, bounds hold."""

from __future__ import annotations

import math
from dataclasses import replace

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from trustfolio.agents.evonash.config import EvoNashConfig
from trustfolio.agents.evonash.features import BULL, SHOCK
from trustfolio.agents.evonash.population import (
    PopulationParams,
    init_population,
    population_signals,
    risk_leverage,
)


def random_case(K=5, T=7, N=4, D=3, seed=0, config=None, dtype=torch.float64):
    config = config or EvoNashConfig()
    g = torch.Generator().manual_seed(seed)
    params = init_population(K, D, config, g, dtype=dtype)
    params = replace(params, bias=torch.randn(K, generator=g, dtype=dtype),
                     regime_bias=torch.randn(K, 4, generator=g, dtype=dtype),
                     risk_bias=torch.randn(K, generator=g, dtype=dtype),
                     risk_regime_bias=torch.randn(K, 4, generator=g, dtype=dtype))  # fmt: skip
    x = torch.randn(T, N, D, generator=g, dtype=dtype)
    regimes = torch.randint(0, 4, (T,), generator=g)
    return params, x, regimes


def reference_signal(p: PopulationParams, x, regimes, config, k, t, i) -> float:
    """Eq. 5-9 for one agent, day and asset, with Python floats."""
    z = int(regimes[t])
    xi = x[t, i].tolist()
    a = sum(w * v for w, v in zip(p.weights[k].tolist(), xi, strict=True)) + float(p.bias[k]) + float(p.regime_bias[k, z])
    s = math.tanh(a / max(config.temperature_floor, float(p.temperature[k])))
    if config.risk_head:
        r = sum(w * v for w, v in zip(p.risk_weights[k].tolist(), xi, strict=True))
        u = 1 / (1 + math.exp(-(r + float(p.risk_bias[k]) + float(p.risk_regime_bias[k, z]))))
        lev = float(p.leverage_min[k]) + (float(p.leverage_max[k]) - float(p.leverage_min[k])) * u
        s = math.copysign(1.0, s) * abs(s) * lev
    return max(s, 0.0) if config.long_only else s


def test_batched_population_equals_the_equations_for_every_agent_day_and_asset():
    for config in (EvoNashConfig(), EvoNashConfig(risk_head=False, long_only=False),
                   EvoNashConfig(long_only=False, leverage_min=0.1, leverage_max=0.8)):  # fmt: skip
        params, x, regimes = random_case(config=config)
        s = population_signals(params, x, regimes, config)
        assert s.shape == (5, 7, 4)
        for k in range(5):
            for t in range(7):
                for i in range(4):
                    assert math.isclose(float(s[k, t, i]), reference_signal(params, x, regimes, config, k, t, i),
                                        rel_tol=1e-12, abs_tol=1e-12)  # fmt: skip


def test_temperature_floor_and_regime_bias():
    config = EvoNashConfig(risk_head=False, long_only=False)
    params, x, regimes = random_case(config=config)
    tiny = replace(params, temperature=torch.full_like(params.temperature, 0.01))
    floored = replace(params, temperature=torch.full_like(params.temperature, 0.15))
    assert torch.equal(population_signals(tiny, x, regimes, config), population_signals(floored, x, regimes, config))
    # c_{k, BULL} moves the signal on BULL days only
    regimes = torch.tensor([BULL, SHOCK, BULL, SHOCK, BULL, SHOCK, BULL])
    shifted = params.regime_bias.clone()
    shifted[:, BULL] += 1.0
    before = population_signals(params, x, regimes, config)
    after = population_signals(replace(params, regime_bias=shifted), x, regimes, config)
    bull = regimes == BULL
    assert torch.equal(before[:, ~bull], after[:, ~bull]) and (after[:, bull] > before[:, bull]).all()


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    low=st.floats(0.0, 1.0),
    width=st.floats(0.0, 1.0),
    long_only=st.booleans(),
    risk_head=st.booleans(),
    scale=st.floats(0.1, 50.0),
)
def test_signals_respect_long_only_and_leverage_bounds(seed, low, width, long_only, risk_head, scale):
    config = EvoNashConfig(leverage_min=low, leverage_max=low + width, long_only=long_only, risk_head=risk_head)
    params, x, regimes = random_case(K=4, T=9, N=5, D=6, seed=seed, config=config)
    x = x * scale  # large inputs saturate tanh and the sigmoid: the bounds must still hold
    s = population_signals(params, x, regimes, config)
    top = config.leverage_max if risk_head else 1.0
    assert s.max() <= top + 1e-12 and s.min() >= (0.0 if long_only else -top - 1e-12)
    if risk_head:
        lev = risk_leverage(params, x, regimes)
        assert lev.min() >= low - 1e-12 and lev.max() <= low + width + 1e-12


def test_select_concat_and_dict_roundtrip():
    params, _, _ = random_case()
    chosen = params.select(torch.tensor([3, 3, 0]))
    assert chosen.size == 3 and torch.equal(chosen.weights[0], params.weights[3])
    chosen.weights[0, 0] += 1.0  # a copy, not a view of the parent
    assert not torch.equal(chosen.weights[0], params.weights[3])
    both = PopulationParams.concat([params, chosen])
    assert both.size == 8 and torch.equal(both.temperature[:5], params.temperature)
    again = PopulationParams.from_dict(params.to_dict())
    assert all(torch.equal(a, b) for a, b in zip(again.to_dict().values(), params.to_dict().values(), strict=True))
    # same generator seed, same population
    a = init_population(4, 3, EvoNashConfig(), torch.Generator().manual_seed(9))
    b = init_population(4, 3, EvoNashConfig(), torch.Generator().manual_seed(9))
    assert all(torch.equal(u, v) for u, v in zip(a.to_dict().values(), b.to_dict().values(), strict=True))
