"""Soft Actor-Critic (Haarnoja et al. 2018) with an auto-tuned entropy temperature, CleanRL-style.

The paper's "FinRL-SAC" baseline on raw features, and StockFormer's agent on the encoders' states.
Two Q-networks and their Polyak-averaged targets (the smaller of the pair is used, against
over-estimation); a tanh-squashed Gaussian actor whose actions are share orders in ``[-1, 1]^N``;
the temperature ``alpha`` starts at 0.1 (StockFormer's and FinRL's ``ent_coef="auto_0.1"``) and is
tuned toward a target entropy of ``-N`` (one nat per stock, the usual ``-dim(A)``).

Reads top to bottom: config, the losses as small pure functions, then the agent (networks, acting,
the update step). The training loop is the shared off-policy one (`trustfolio.agents.off_policy`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trustfolio.agents.networks import (
    actor_and_twin_critics,
    adam,
    frozen,
    polyak_update,
    twin_minimum,
)
from trustfolio.agents.off_policy import OffPolicyAgent, OffPolicyConfig, with_paper_settings
from trustfolio.agents.replay import Batch
from trustfolio.errors import UserError


@dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """SAC's learning rates and temperature on top of the shared `OffPolicyConfig`."""

    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    initial_alpha: float = 0.1
    autotune_alpha: bool = True  # False: alpha stays at initial_alpha
    target_entropy_per_stock: float = -1.0  # target entropy = this x N

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.actor_lr, self.critic_lr, self.alpha_lr, self.initial_alpha) <= 0:
            raise UserError("SACConfig: learning rates and initial_alpha must be positive")


# ---------------------------------------------------------------------------------------- losses
def soft_q_target(reward, next_q1, next_q2, next_log_prob, alpha, gamma: float) -> torch.Tensor:
    """``r + γ (min(Q1', Q2')(s', a') − α log π(a'|s'))`` with ``a' ~ π(·|s')`` (no terminal states:
    episodes end by a time limit, so every transition bootstraps)."""
    return reward + gamma * (torch.minimum(next_q1, next_q2) - alpha * next_log_prob)


def critic_loss(q1, q2, target) -> torch.Tensor:
    """Both critics regress on the same soft target."""
    return F.mse_loss(q1, target) + F.mse_loss(q2, target)


def actor_loss(q1_pi, q2_pi, log_prob, alpha) -> torch.Tensor:
    """``E[α log π(a|s) − min(Q1, Q2)(s, a)]`` with ``a ~ π(·|s)`` reparameterized."""
    return (alpha * log_prob - torch.minimum(q1_pi, q2_pi)).mean()


def temperature_loss(log_alpha, log_prob, target_entropy: float) -> torch.Tensor:
    """Raises alpha when the policy's entropy ``−E[log π]`` is below the target, lowers it above."""
    return -(log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()


# ---------------------------------------------------------------------------------------- agent
#: The paper's budget takes FinRL's SAC_PARAMS (StockFormer's SAC used them: batch 64, lr 1e-4).
PAPER_SAC = dict(batch_size=64, actor_lr=1e-4, critic_lr=1e-4, alpha_lr=1e-4)


class SACAgent(OffPolicyAgent):
    """SAC on flat observations (market state ‖ balance), share orders in ``[-1, 1]^N``."""

    name = "sac"
    config_class = SACConfig
    budgets = with_paper_settings(PAPER_SAC)
    log_keys = ("critic_loss", "actor_loss", "alpha", "alpha_loss", "q_mean", "entropy")

    def build(self) -> None:
        c, device = self.config, self.device
        self.actor, self.q1, self.q2, self.q1_target, self.q2_target = actor_and_twin_critics(
            self.obs_dim, self.action_dim, c.hidden_sizes, device
        )
        self.actor_optimizer = adam(self.actor.parameters(), lr=c.actor_lr)
        self.critic_optimizer = adam([*self.q1.parameters(), *self.q2.parameters()], lr=c.critic_lr)
        self.log_alpha = torch.tensor(
            math.log(c.initial_alpha), device=device, requires_grad=c.autotune_alpha
        )
        self.alpha_optimizer = adam([self.log_alpha], lr=c.alpha_lr) if c.autotune_alpha else None
        self.target_entropy = c.target_entropy_per_stock * self.action_dim

    def act(self, obs: torch.Tensor, *, deterministic: bool) -> torch.Tensor:
        return self.actor.act(obs, self.generator, deterministic=deterministic)

    def critic_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[B]``: the twin critics' value of `action` in `obs`, reduced as the TD target does (min)."""
        return twin_minimum(self.q1, self.q2, obs, action)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        alpha = self.log_alpha.detach().exp()
        critic_logs = self.critic_step(batch, alpha)
        actor_logs = self.actor_and_temperature_step(batch.obs, alpha)
        polyak_update(self.q1_target, self.q1, self.config.tau)
        polyak_update(self.q2_target, self.q2, self.config.tau)
        return {**critic_logs, **actor_logs, "alpha": alpha}

    @torch.no_grad()
    def soft_target(self, batch: Batch, alpha: torch.Tensor | float) -> torch.Tensor:
        """`soft_q_target` of `batch` from the target networks, with a fresh action at s'."""
        next_action, next_log_prob = self.actor.sample(batch.next_obs, self.generator)
        next_q1, next_q2 = self.q1_target(batch.next_obs, next_action), self.q2_target(batch.next_obs, next_action)
        return soft_q_target(batch.reward, next_q1, next_q2, next_log_prob, alpha, self.config.gamma)

    def critic_step(self, batch: Batch, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        """Regress both Q-networks on the soft TD target from the target networks."""
        target = self.soft_target(batch, alpha)
        q1, q2 = self.q1(batch.obs, batch.action), self.q2(batch.obs, batch.action)
        q_loss = critic_loss(q1, q2, target)
        self.critic_optimizer.zero_grad()
        q_loss.backward()
        self.critic_optimizer.step()
        return {"critic_loss": q_loss.detach(), "q_mean": q1.detach().mean()}

    def actor_and_temperature_step(self, obs: torch.Tensor, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        """Actor: maximize the soft value of its own (reparameterized) actions; temperature: keep the
        entropy near its target."""
        action, log_prob = self.actor.sample(obs, self.generator)
        with frozen(self.q1, self.q2):
            pi_loss = actor_loss(self.q1(obs, action), self.q2(obs, action), log_prob, alpha)
        self.actor_optimizer.zero_grad()
        pi_loss.backward()
        self.actor_optimizer.step()

        alpha_loss = torch.zeros((), device=self.device)
        if self.alpha_optimizer is not None:
            alpha_loss = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
            self.alpha_optimizer.zero_grad()
            alpha_loss.backward()
            self.alpha_optimizer.step()
        return {
            "actor_loss": pi_loss.detach(),
            "alpha_loss": alpha_loss.detach(),
            "entropy": -log_prob.detach().mean(),
        }


__all__ = ["PAPER_SAC", "SACAgent", "SACConfig", "actor_loss", "critic_loss", "soft_q_target", "temperature_loss"]
