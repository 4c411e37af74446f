"""Small MLP actors and critics shared by the agents (SAC, DDPG, and the ones built on them).

Every network reads a flat observation vector (see `trustfolio.agents.base.observation_dim`) and,
for critics, the action. Actions live in ``[-1, 1]^N``: share orders that the simulator multiplies
by ``hmax``. Randomness (the actor's noise) comes from an explicit `torch.Generator`, so that a
training run is reproducible and resumable without touching torch's global random state.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

# Bounds of the Gaussian actor's log standard deviation (CleanRL's and SB3's values): below -5 the
# policy is numerically deterministic, above 2 the tanh squashing saturates anyway.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0
# Keeps log(1 - tanh(x)^2) finite when tanh saturates (SpinningUp/CleanRL use the same epsilon).
_TANH_EPS = 1e-6
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int) -> nn.Sequential:
    """``Linear → ReLU`` for each hidden size, then a final ``Linear`` to `out_dim` (no activation)."""
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden_sizes:
        layers += [nn.Linear(width, int(size)), nn.ReLU()]
        width = int(size)
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class QNetwork(nn.Module):
    """``Q(s, a)``: an MLP over ``[s ‖ a]``, one value per row.

    The first layer ``W [s ‖ a] + b`` is kept as two matrices, ``W_s s + W_a a + b``: the same
    function, but the actor's gradient (through ``a`` only) then never multiplies the large ``W_s``
    (88 stocks x 13 features = 1,144 columns against 88 for the action: ~20% of an SAC update on CSI).
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        first = int(hidden_sizes[0])
        self.obs_layer = nn.Linear(obs_dim, first)
        self.action_layer = nn.Linear(action_dim, first, bias=False)
        self.rest = mlp(first, hidden_sizes[1:], 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor, first: torch.Tensor | None = None) -> torch.Tensor:
        """Q-values; `first` (the first layer's output ``W_s s + W_a a + b``, if already computed)
        replaces `obs` and `action` (MetaTrader's inner steps update that layer in low rank)."""
        if first is None:
            first = self.obs_layer(obs) + self.action_layer(action)
        return self.rest(torch.relu(first)).squeeze(-1)


class DeterministicActor(nn.Module):
    """``a = tanh(MLP(s))`` in ``[-1, 1]^N`` (DDPG/TD3)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, action_dim)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(obs))


class SquashedGaussianActor(nn.Module):
    """SAC's actor: ``a = tanh(mu(s) + sigma(s) * eps)``, ``eps ~ N(0, I)``, with its log-probability.

    One trunk, two heads (mean and log std); the log std is squashed into
    ``[LOG_STD_MIN, LOG_STD_MAX]`` with a tanh, as in CleanRL.
    """

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.trunk = mlp(obs_dim, hidden_sizes[:-1], int(hidden_sizes[-1]))
        self.mean = nn.Linear(int(hidden_sizes[-1]), action_dim)
        self.log_std = nn.Linear(int(hidden_sizes[-1]), action_dim)

    def forward(self, obs: torch.Tensor, first: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, log_std)`` of the pre-squash Gaussian; `first` (the first layer's output, if
        already computed) replaces `obs`."""
        if first is None:
            first = self.trunk[0](obs)
        features = torch.relu(self.trunk[1:](first))
        log_std = torch.tanh(self.log_std(features))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)
        return self.mean(features), log_std

    def sample(self, obs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized action and its log-probability ``log pi(a|s)`` (summed over stocks).

        The noise is drawn from `generator`; gradients flow through the mean and std.
        """
        mean, log_std = self(obs)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return squashed_gaussian(mean, log_std, eps)

    def deterministic(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean action ``tanh(mu(s))`` (what a trained policy trades)."""
        return torch.tanh(self(obs)[0])

    @torch.no_grad()
    def act(self, obs: torch.Tensor, generator: torch.Generator, *, deterministic: bool) -> torch.Tensor:
        """An agent's action: the mean (``deterministic``, for trading) or a sample (for exploring)."""
        return self.deterministic(obs) if deterministic else self.sample(obs, generator)[0]


@torch.no_grad()
def twin_minimum(q1: nn.Module, q2: nn.Module, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    """``min(Q1, Q2)(s, a)``: a twin pair's value, reduced as its TD target reduces it."""
    return torch.minimum(q1(obs, action), q2(obs, action))


def squashed_gaussian(
    mean: torch.Tensor, log_std: torch.Tensor, eps: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``a = tanh(mean + std * eps)`` and ``log pi(a|s)`` summed over the last axis (a pure function of
    the noise, so `torch.func` transforms can take the noise as an input)."""
    action = torch.tanh(mean + log_std.exp() * eps)
    # log N(pre_tanh; mean, std) = -eps^2/2 - log std - log(2 pi)/2, then the tanh change of variables
    log_prob = -0.5 * eps.square() - log_std - _HALF_LOG_2PI
    log_prob = log_prob - torch.log1p(-action.square() + _TANH_EPS)
    return action, log_prob.sum(-1)


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Move the target network's parameters a fraction `tau` toward the source's: ``θ' ← (1-τ)θ' + τθ``."""
    # One fused op over all parameters (a per-tensor loop costs a dispatch per tensor).
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)


@contextmanager
def frozen(*networks: nn.Module) -> Iterator[None]:
    """Parameters without gradients inside the block: the actor's loss differentiates through the
    critics to the action without computing the critics' own (unused) weight gradients."""
    for network in networks:
        network.requires_grad_(False)
    try:
        yield
    finally:
        for network in networks:
            network.requires_grad_(True)


def adam(parameters, lr: float) -> torch.optim.Adam:
    """Adam with the fused kernel: one op for all parameters instead of a dozen per tensor (3x faster
    steps for these small networks on CPU, measured; results are deterministic run to run)."""
    return torch.optim.Adam(parameters, lr=lr, fused=True)


def frozen_copy(network: nn.Module) -> nn.Module:
    """A copy of `network` without gradients: the initial target network."""
    return copy.deepcopy(network).requires_grad_(False)


def actor_and_twin_critics(obs_dim: int, action_dim: int, hidden_sizes: Sequence[int], device) -> tuple[nn.Module, ...]:
    """A squashed-Gaussian actor, two Q-networks and their frozen target copies ``(actor, q1, q2,
    q1_target, q2_target)``, initialized in that order (SAC and its descendants, IQL)."""
    actor = SquashedGaussianActor(obs_dim, action_dim, hidden_sizes).to(device)
    q1 = QNetwork(obs_dim, action_dim, hidden_sizes).to(device)
    q2 = QNetwork(obs_dim, action_dim, hidden_sizes).to(device)
    return actor, q1, q2, frozen_copy(q1), frozen_copy(q2)


__all__ = [
    "LOG_STD_MAX",
    "LOG_STD_MIN",
    "DeterministicActor",
    "QNetwork",
    "SquashedGaussianActor",
    "adam",
    "frozen",
    "frozen_copy",
    "mlp",
    "polyak_update",
    "squashed_gaussian",
]
