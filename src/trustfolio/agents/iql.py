"""Implicit Q-Learning (Kostrikov et al. 2021), as in the authors' and CORL's implementations.

IQL never evaluates Q on actions outside the replay buffer. Three fits per update:

1. a value network ``V(s)`` regresses on ``min(Q1', Q2')(s, a_data)`` (the target Q-networks) with
   the **expectile** loss ``|τ − 1(u < 0)| · u²``, ``u = Q − V``; with ``τ = 0.7`` it over-weights
   positive errors, so V tracks an upper expectile of Q over the buffer's actions: a soft maximum
   over actions that were actually taken;
2. two Q-networks regress on ``r + γ V(s')`` (no next action is needed);
3. the actor is **advantage-weighted regression** onto the buffer's actions: maximize
   ``exp(β (Q' − V)) · log π(a_data | s)``, the weight clipped at 100, ``β = 3`` (the authors' MuJoCo
   settings). The actor is SAC's tanh-squashed Gaussian (`networks.SquashedGaussianActor`, the
   network of MetaTrader's actor), so ``log π`` is its density of a given action, computed by
   inverting the tanh.

β = 3 assumes advantages of order one (the authors normalize D4RL rewards). Here one day's order
moves the value by little: on the synthetic trending market of the tests the advantages' spread is
~0.05 (rewards in percent), so ``exp(β A)`` stays near 1 and IQL is close to behaviour cloning of
its own past actions; it learns to hold the trending stock, but in ~1000 steps where SAC needs
~300, and some seeds settle in cash. β is a config field (the authors use 10 on AntMaze).

Networks: the actor and the two Q-networks (with Polyak targets) are SAC's, and V is an MLP of the
same hidden sizes — 256 units in the `cpu`/`paper` budgets, MetaTrader's sizes.

**Partial-offline reading.** The paper compares against "CQL and IQL with MetaTrader's networks,
trained in the same partial-offline loop". Here that means: the offline-RL *losses* are used in the
shared loop of `trustfolio.agents.off_policy` — transitions come from rolling the current policy
(sampling from its Gaussian, which is all the exploration IQL gets) on the fixed historical market
path into the replay buffer, exactly as for SAC — not on a frozen dataset of logged trades (none
exists for this market). The authors' cosine learning-rate decay of the actor and dropout are not
used (neither is part of the method; both are tuning for D4RL's fixed-length runs).

Reads top to bottom: config, the losses as small pure functions, the agent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trustfolio.agents.networks import (
    actor_and_twin_critics,
    adam,
    mlp,
    polyak_update,
    twin_minimum,
)
from trustfolio.agents.off_policy import OFF_POLICY_BUDGETS, OffPolicyAgent, OffPolicyConfig
from trustfolio.agents.replay import Batch
from trustfolio.errors import UserError

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_TANH_EPS = 1e-6  # as in `networks.SquashedGaussianActor.sample`
# Buffer actions are clamped this far inside [-1, 1] before inverting the tanh (atanh(±1) is infinite;
# a saturated float32 sample is exactly ±1). 1 - 1e-6 keeps the pre-tanh value within ±7.3.
_ACTION_BOUND = 1.0 - 1e-6


@dataclass(frozen=True)
class IQLConfig(OffPolicyConfig):
    """IQL's learning rates, expectile and inverse temperature on top of the shared `OffPolicyConfig`
    (defaults: the authors' MuJoCo settings)."""

    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    expectile: float = 0.7  # τ of the value regression (0.5: plain mean, → 1: maximum)
    beta: float = 3.0  # inverse temperature of the advantage weights (0: behaviour cloning)
    max_weight: float = 100.0  # clip of exp(β · advantage)

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.actor_lr, self.critic_lr, self.value_lr) <= 0:
            raise UserError("IQLConfig: learning rates must be positive")
        if not 0.0 < self.expectile < 1.0 or self.beta < 0 or self.max_weight <= 0:
            raise UserError("IQLConfig: need 0 < expectile < 1, beta >= 0 and max_weight > 0")


# ---------------------------------------------------------------------------------------- losses
def expectile_loss(difference, expectile: float) -> torch.Tensor:
    """``mean(|τ − 1(u < 0)| · u²)`` for ``u = Q − V``: weight τ where V is below Q, 1 − τ above."""
    weight = torch.abs(expectile - (difference < 0).to(difference.dtype))
    return (weight * difference.square()).mean()


def value_target(reward, next_value, gamma: float) -> torch.Tensor:
    """``r + γ V(s')`` (every transition bootstraps: episodes end by a time limit)."""
    return reward + gamma * next_value


def critic_loss(q1, q2, target) -> torch.Tensor:
    """Both Q-networks regress on the same target."""
    return F.mse_loss(q1, target) + F.mse_loss(q2, target)


def advantage_weights(advantage, beta: float, max_weight: float) -> torch.Tensor:
    """``min(exp(β · A), max_weight)``, without gradient (the weights are constants of the actor loss)."""
    return torch.exp(beta * advantage.detach()).clamp(max=max_weight)


def weighted_log_likelihood_loss(log_prob, weights) -> torch.Tensor:
    """``−mean(w · log π(a_data | s))``: advantage-weighted behaviour cloning of the buffer's actions."""
    return -(weights * log_prob).mean()


def squashed_gaussian_log_prob(mean, log_std, action) -> torch.Tensor:
    """``log π(a | s)`` of a given action under ``a = tanh(u)``, ``u ~ N(mean, exp(log_std)²)``, summed
    over stocks; the inverse of `SquashedGaussianActor.sample` (same formula, same tanh epsilon)."""
    action = action.clamp(-_ACTION_BOUND, _ACTION_BOUND)
    pre_tanh = torch.atanh(action)
    z = (pre_tanh - mean) * torch.exp(-log_std)
    log_prob = -0.5 * z.square() - log_std - _HALF_LOG_2PI - torch.log1p(-action.square() + _TANH_EPS)
    return log_prob.sum(-1)


# ---------------------------------------------------------------------------------------- agent
class IQLAgent(OffPolicyAgent):
    """IQL on flat observations (market state ‖ balance), share orders in ``[-1, 1]^N``."""

    name = "iql"
    config_class = IQLConfig
    budgets = OFF_POLICY_BUDGETS  # the paper budget keeps IQL's defaults, the authors' rates
    log_keys = ("critic_loss", "value_loss", "actor_loss", "q_mean", "advantage_mean", "weight_mean")

    def build(self) -> None:
        c, device = self.config, self.device
        self.actor, self.q1, self.q2, self.q1_target, self.q2_target = actor_and_twin_critics(
            self.obs_dim, self.action_dim, c.hidden_sizes, device
        )
        self.value = mlp(self.obs_dim, c.hidden_sizes, 1).to(device)
        self.actor_optimizer = adam(self.actor.parameters(), lr=c.actor_lr)
        self.critic_optimizer = adam([*self.q1.parameters(), *self.q2.parameters()], lr=c.critic_lr)
        self.value_optimizer = adam(self.value.parameters(), lr=c.value_lr)

    def act(self, obs: torch.Tensor, *, deterministic: bool) -> torch.Tensor:
        return self.actor.act(obs, self.generator, deterministic=deterministic)

    def critic_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[B]``: the twin critics' value of `action` in `obs`, reduced as the TD target does (min)."""
        return twin_minimum(self.q1, self.q2, obs, action)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        with torch.no_grad():
            q_data = torch.minimum(
                self.q1_target(batch.obs, batch.action), self.q2_target(batch.obs, batch.action)
            )
            target = value_target(batch.reward, self.value(batch.next_obs).squeeze(-1), c.gamma)

        # Value: an upper expectile of the (target) Q over the buffer's actions.
        advantage = q_data - self.value(batch.obs).squeeze(-1)
        v_loss = expectile_loss(advantage, c.expectile)
        self.value_optimizer.zero_grad()
        v_loss.backward()
        self.value_optimizer.step()

        # Q-networks: regress on r + γ V(s').
        q1, q2 = self.q1(batch.obs, batch.action), self.q2(batch.obs, batch.action)
        q_loss = critic_loss(q1, q2, target)
        self.critic_optimizer.zero_grad()
        q_loss.backward()
        self.critic_optimizer.step()

        # Actor: clone the buffer's actions, weighted by exp(β · advantage).
        weights = advantage_weights(advantage, c.beta, c.max_weight)
        mean, log_std = self.actor(batch.obs)
        pi_loss = weighted_log_likelihood_loss(
            squashed_gaussian_log_prob(mean, log_std, batch.action), weights
        )
        self.actor_optimizer.zero_grad()
        pi_loss.backward()
        self.actor_optimizer.step()

        polyak_update(self.q1_target, self.q1, c.tau)
        polyak_update(self.q2_target, self.q2, c.tau)
        return {
            "critic_loss": q_loss.detach(),
            "value_loss": v_loss.detach(),
            "actor_loss": pi_loss.detach(),
            "q_mean": q1.detach().mean(),
            "advantage_mean": advantage.detach().mean(),
            "weight_mean": weights.mean(),
        }


__all__ = [
    "IQLAgent",
    "IQLConfig",
    "advantage_weights",
    "critic_loss",
    "expectile_loss",
    "squashed_gaussian_log_prob",
    "value_target",
    "weighted_log_likelihood_loss",
]
