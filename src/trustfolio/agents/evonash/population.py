"""The policy population (§III-D, eq. 5-9): K linear-tanh agents with per-regime biases and a risk head.

Agent k scores asset i on day t from ``x[t, i]`` (its own features ‖ the market features, see
`features.agent_inputs`) with one weight vector shared across assets (paper-notes):

    a[k,t,i] = w_k·x[t,i] + b_k + c[k, z_t]                          (eq. 5)
    s̃[k,t,i] = tanh(a / max(0.15, τ_k))                              (eq. 6)
    u[k,t,i] = σ(w_k^(r)·x[t,i] + b_k^(r) + c^(r)[k, z_t])            (eq. 7)
    ℓ[k,t,i] = ℓ_k^min + (ℓ_k^max - ℓ_k^min)·u                        (eq. 8)
    s[k,t,i] = sign(s̃)·|s̃|·ℓ                                         (eq. 9)

The whole population is evaluated on every day at once: one einsum ``kd,tnd->ktn`` per head, no
loop over agents or days. Parameters are plain tensors in `PopulationParams` (a leading agent axis K)
so that evolution (`fitness.py`) can select, copy and perturb agents as tensor operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from trustfolio.agents.evonash.config import EvoNashConfig
from trustfolio.agents.evonash.features import REGIMES

N_REGIMES = len(REGIMES)


@dataclass(frozen=True, eq=False)
class PopulationParams:
    """The parameters of K agents, each tensor with the agent axis first."""

    weights: torch.Tensor  # [K, D]      w_k (eq. 5)
    bias: torch.Tensor  # [K]            b_k
    regime_bias: torch.Tensor  # [K, 4]  c_{k,z}
    temperature: torch.Tensor  # [K]     τ_k (eq. 6; floored at temperature_floor when used)
    risk_weights: torch.Tensor  # [K, D] w_k^(r) (eq. 7)
    risk_bias: torch.Tensor  # [K]       b_k^(r)
    risk_regime_bias: torch.Tensor  # [K, 4] c^(r)_{k,z}
    leverage_min: torch.Tensor  # [K]    ℓ_k^min (eq. 8)
    leverage_max: torch.Tensor  # [K]    ℓ_k^max

    @property
    def size(self) -> int:
        return self.weights.shape[0]

    def to_dict(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, tensors: dict[str, torch.Tensor]) -> PopulationParams:
        return cls(**{f.name: tensors[f.name] for f in fields(cls)})

    def select(self, indices: torch.Tensor) -> PopulationParams:
        """The agents at `indices` (repeats allowed: a parent chosen twice is copied twice)."""
        return PopulationParams.from_dict({k: v[indices].clone() for k, v in self.to_dict().items()})

    @staticmethod
    def concat(parts: list[PopulationParams]) -> PopulationParams:
        """One population from several (e.g. the elites followed by their mutated children)."""
        names = [f.name for f in fields(PopulationParams)]
        return PopulationParams.from_dict({n: torch.cat([getattr(p, n) for p in parts]) for n in names})


def init_population(
    n_agents: int, n_features: int, config: EvoNashConfig, generator: torch.Generator, dtype=torch.float32
) -> PopulationParams:
    """K random agents: weights ~ N(0, init_scale²/D), zero biases, temperatures log-uniform in [0.25, 2]
    (heterogeneous inductive biases, §III-B), leverage bounds from the config for every agent."""

    def normal(*shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=dtype) * std

    std = config.init_scale / max(n_features, 1) ** 0.5
    log_t = math.log(0.25) + math.log(8.0) * torch.rand(n_agents, generator=generator, dtype=dtype)  # τ in [0.25, 2]
    zeros = torch.zeros(n_agents, dtype=dtype)
    return PopulationParams(
        weights=normal(n_agents, n_features, std=std),
        bias=zeros.clone(),
        regime_bias=torch.zeros(n_agents, N_REGIMES, dtype=dtype),
        temperature=log_t.exp(),
        risk_weights=normal(n_agents, n_features, std=std),
        risk_bias=zeros.clone(),
        risk_regime_bias=torch.zeros(n_agents, N_REGIMES, dtype=dtype),
        leverage_min=torch.full((n_agents,), config.leverage_min, dtype=dtype),
        leverage_max=torch.full((n_agents,), config.leverage_max, dtype=dtype),
    )


# ---------------------------------------------------------------------------------------- eq. 5-9
def linear_scores(
    weights: torch.Tensor, bias: torch.Tensor, regime_bias: torch.Tensor, x: torch.Tensor, regimes: torch.Tensor
) -> torch.Tensor:
    """Eq. 5 (and eq. 7's argument): ``w_k·x[t,i] + b_k + c[k, z_t]`` for all agents and days, ``[K, T, N]``.

    `x` is ``[T, N, D]``, `regimes` ``[T]`` integer labels (`features.REGIMES` order)."""
    day_bias = regime_bias[:, regimes.long()]  # [K, T]: c_{k, z_t}
    return torch.einsum("kd,tnd->ktn", weights, x) + bias[:, None, None] + day_bias[:, :, None]


def base_signal(scores: torch.Tensor, temperature: torch.Tensor, floor: float = 0.15) -> torch.Tensor:
    """Eq. 6: ``tanh(a / max(floor, τ_k))``; the floor keeps a small τ from turning tanh into a sign."""
    return torch.tanh(scores / temperature.clamp(min=floor)[:, None, None])


def risk_leverage(params: PopulationParams, x: torch.Tensor, regimes: torch.Tensor) -> torch.Tensor:
    """Eq. 7-8: ``ℓ = ℓ^min + (ℓ^max - ℓ^min)·σ(risk score)``, ``[K, T, N]`` in ``[ℓ^min, ℓ^max]``."""
    u = torch.sigmoid(linear_scores(params.risk_weights, params.risk_bias, params.risk_regime_bias, x, regimes))
    low, high = params.leverage_min[:, None, None], params.leverage_max[:, None, None]
    return low + (high - low) * u


def levered_signal(base: torch.Tensor, leverage: torch.Tensor) -> torch.Tensor:
    """Eq. 9: ``sign(s̃)·|s̃|·ℓ`` (equal to s̃·ℓ for ℓ ≥ 0; written as in the paper)."""
    return torch.sign(base) * base.abs() * leverage


def population_signals(
    params: PopulationParams, x: torch.Tensor, regimes: torch.Tensor, config: EvoNashConfig
) -> torch.Tensor:
    """Every agent's position signal on every day and asset, ``s[K, T, N]`` (eq. 5-9).

    With the risk head off, s = s̃ (eq. 6) in [-1, 1]. Long-only (§VI-C, the default) keeps the
    signal in ``[0, ℓ^max]``: §III-A's long-only signal range ``[s_min, s_max]`` with s_min = 0.
    """
    s = base_signal(linear_scores(params.weights, params.bias, params.regime_bias, x, regimes),
                    params.temperature, config.temperature_floor)  # fmt: skip
    if config.risk_head:
        s = levered_signal(s, risk_leverage(params, x, regimes))
    return s.clamp(min=0.0) if config.long_only else s
