"""Deep Deterministic Policy Gradient (Lillicrap et al. 2016), CleanRL-style: the paper's "FinRL-DDPG".

A deterministic actor ``a = tanh(MLP(s))`` in ``[-1, 1]^N`` (share orders), one Q-network, target
copies of both moved by Polyak averaging, and Gaussian exploration noise added to the actor's orders
while collecting data (clipped back into ``[-1, 1]``). Learning rates default to the DDPG paper's
(actor 1e-4, critic 1e-3: a slower actor gets stuck less often on the synthetic test market);
FinRL's DDPG, the `paper` budget, uses 1e-3 for both.

Reads top to bottom: config, losses, the agent (networks, acting, the update step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from trustfolio.agents.networks import DeterministicActor, QNetwork, adam, frozen, frozen_copy, polyak_update
from trustfolio.agents.off_policy import OffPolicyAgent, OffPolicyConfig, with_paper_settings
from trustfolio.agents.replay import Batch
from trustfolio.errors import UserError


@dataclass(frozen=True)
class DDPGConfig(OffPolicyConfig):
    """DDPG's learning rates and exploration noise on top of the shared `OffPolicyConfig`."""

    actor_lr: float = 1e-4  # the DDPG paper's rates (FinRL's 1e-3 for both is the `paper` budget)
    critic_lr: float = 1e-3
    exploration_noise: float = 0.1  # std of the Gaussian noise added to the orders while collecting

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.actor_lr, self.critic_lr) <= 0 or self.exploration_noise < 0:
            raise UserError("DDPGConfig: learning rates must be positive and exploration_noise >= 0")


# ---------------------------------------------------------------------------------------- losses
def td_target(reward, next_q, gamma: float) -> torch.Tensor:
    """``r + γ Q'(s', μ'(s'))`` (every transition bootstraps: episodes end by a time limit)."""
    return reward + gamma * next_q


def critic_loss(q, target) -> torch.Tensor:
    return F.mse_loss(q, target)


def actor_loss(q_pi) -> torch.Tensor:
    """Maximize ``Q(s, μ(s))``."""
    return -q_pi.mean()


# ---------------------------------------------------------------------------------------- agent
#: The paper's budget takes FinRL's DDPG_PARAMS.
PAPER_DDPG = dict(batch_size=128, buffer_size=50_000, actor_lr=1e-3, critic_lr=1e-3)


class DDPGAgent(OffPolicyAgent):
    """DDPG on flat observations (market state ‖ balance), share orders in ``[-1, 1]^N``."""

    name = "ddpg"
    config_class = DDPGConfig
    budgets = with_paper_settings(PAPER_DDPG)
    log_keys = ("critic_loss", "actor_loss", "q_mean")

    def build(self) -> None:
        c, device = self.config, self.device
        self.actor = DeterministicActor(self.obs_dim, self.action_dim, c.hidden_sizes).to(device)
        self.q = QNetwork(self.obs_dim, self.action_dim, c.hidden_sizes).to(device)
        self.actor_target, self.q_target = frozen_copy(self.actor), frozen_copy(self.q)
        self.actor_optimizer = adam(self.actor.parameters(), lr=c.actor_lr)
        self.critic_optimizer = adam(self.q.parameters(), lr=c.critic_lr)

    def act(self, obs: torch.Tensor, *, deterministic: bool) -> torch.Tensor:
        with torch.no_grad():
            action = self.actor(obs)
            if deterministic:
                return action
            noise = torch.randn(action.shape, generator=self.generator, device=action.device)
            return (action + self.config.exploration_noise * noise).clamp(-1.0, 1.0)

    @torch.no_grad()
    def critic_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[B]``: the critic's value of `action` in `obs`."""
        return self.q(obs, action)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        with torch.no_grad():
            target = td_target(
                batch.reward, self.q_target(batch.next_obs, self.actor_target(batch.next_obs)), c.gamma
            )
        q = self.q(batch.obs, batch.action)
        q_loss = critic_loss(q, target)
        self.critic_optimizer.zero_grad()
        q_loss.backward()
        self.critic_optimizer.step()

        with frozen(self.q):
            pi_loss = actor_loss(self.q(batch.obs, self.actor(batch.obs)))
        self.actor_optimizer.zero_grad()
        pi_loss.backward()
        self.actor_optimizer.step()

        polyak_update(self.q_target, self.q, c.tau)
        polyak_update(self.actor_target, self.actor, c.tau)
        return {"critic_loss": q_loss.detach(), "actor_loss": pi_loss.detach(), "q_mean": q.detach().mean()}


__all__ = ["DDPGAgent", "DDPGConfig", "actor_loss", "critic_loss", "td_target"]
