"""Conservative Q-Learning (Kumar et al. 2020), the SAC-based CQL(H) of the authors' code.

CQL is SAC (see `trustfolio.agents.sac`: the same tanh-Gaussian actor, two Q-networks with Polyak
targets, auto-tuned entropy temperature, 256-unit layers in the `cpu`/`paper` budgets — the
networks of MetaTrader's actor and critic) whose critic loss gets a conservative penalty per
Q-network:

    α_cql · ( τ · logsumexp_j [(Q(s, a_j) − log μ(a_j)) / τ]  −  Q(s, a_data) )

over 3M sampled actions ``a_j`` scored at ``s``: M uniform in ``[-1, 1]^N`` (density ``0.5^N``),
M from the policy at ``s`` and M from the policy at ``s'``, each importance-weighted by its log
density ``log μ`` (the authors' ``min_q_version=3``). It pushes Q down on actions the policy would
pick and up on the actions actually in the replay buffer. As in the authors' D4RL scripts, the TD
target has no entropy term (``backup_entropy=False``, their ``deterministic_backup=True``).

α_cql is fixed (not the Lagrange variant) at 1.0, the authors' trainer default
(``min_q_weight=1.0``). Their 5–10 for D4RL guard against a *fixed* dataset of someone else's
actions; here the buffer is refilled with the current policy's own actions and exact rewards, so
overestimated actions get corrected by new data, and a heavier penalty mostly anchors the policy to
its past actions. The penalty's gradient is O(1) per row whatever the reward scale; with
``reward_scale=100`` (percent) daily rewards and TD errors are O(1) too, as in D4RL. Even α_cql = 1
is strong where one order changes the return by little: on the synthetic trending market of the
tests, CQL learns to hold the trending stock in most seeds, but some runs settle in cash, where the
penalty keeps Q highest on the buffer's own (selling) actions; with α_cql = 0 those runs learn it.

**Partial-offline reading.** The paper compares against "CQL and IQL with MetaTrader's networks,
trained in the same partial-offline loop". Here that means: the offline-RL *losses* are used in the
shared loop of `trustfolio.agents.off_policy` — transitions come from rolling the current policy on the
fixed historical market path into the replay buffer, exactly as for SAC — not on a frozen dataset
of logged trades (none exists for this market). The authors' behaviour-cloning warm-up
(``policy_eval_start``) is therefore not used: there is no behaviour policy to clone.

Reads top to bottom: config, the penalty and its helpers as small pure functions, the agent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trustfolio.agents.networks import QNetwork, SquashedGaussianActor
from trustfolio.agents.off_policy import with_paper_settings
from trustfolio.agents.replay import Batch
from trustfolio.agents.sac import (
    SACAgent,
    SACConfig,
    critic_loss,
)
from trustfolio.errors import UserError

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_TANH_EPS = 1e-6  # as in `networks.SquashedGaussianActor.sample`


@dataclass(frozen=True)
class CQLConfig(SACConfig):
    """The conservative penalty's settings on top of SAC's. Learning rates default to SAC's; the
    `paper` budget uses the authors' (actor 1e-4, critic 3e-4, batch 256)."""

    cql_alpha: float = 1.0  # weight of the penalty (fixed; see the module docstring)
    cql_num_actions: int = 10  # M: actions of each kind (uniform, policy at s, policy at s') per state
    cql_temperature: float = 1.0  # τ of the logsumexp
    backup_entropy: bool = False  # True: SAC's soft TD target (with −α log π); False: the authors'

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cql_alpha < 0 or self.cql_temperature <= 0:
            raise UserError("CQLConfig: cql_alpha must be >= 0 and cql_temperature positive")
        if (
            isinstance(self.cql_num_actions, bool)
            or not isinstance(self.cql_num_actions, int)
            or (self.cql_num_actions < 1)
        ):
            raise UserError(
                f"CQLConfig: cql_num_actions must be a whole number >= 1, got {self.cql_num_actions!r}"
            )


# ---------------------------------------------------------------------------------------- losses
def cql_penalty(q_data, q_sampled, log_density, temperature: float = 1.0) -> torch.Tensor:
    """``mean_b[ τ · logsumexp_j((Q(s_b, a_bj) − log μ(a_bj)) / τ) − Q(s_b, a_data_b) ]``.

    `q_data` ``[B]``: Q of the buffer's actions; `q_sampled` ``[B, K]``: Q of K sampled actions at
    the same states; `log_density` ``[B, K]``: the log density each was sampled from (importance
    weights; no gradient). The logsumexp is a soft maximum: descending the penalty lowers Q on the
    sampled actions in proportion to their softmax weight and raises it on the data's actions.
    """
    soft_max = temperature * torch.logsumexp((q_sampled - log_density) / temperature, dim=1)
    return (soft_max - q_data).mean()


def uniform_log_density(action_dim: int) -> float:
    """Log density of the uniform distribution on ``[-1, 1]^N``: ``N · log(1/2)``."""
    return action_dim * math.log(0.5)


def sample_policy_actions(
    actor: SquashedGaussianActor, obs: torch.Tensor, count: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` actions per state from the actor, ``[B, count, N]``, and their log-probabilities
    ``[B, count]``, without gradient. The same distribution as ``actor.sample`` (the same numbers
    for ``count=1``), but the actor's trunk runs once per state instead of once per action."""
    with torch.no_grad():
        mean, log_std = actor(obs)
        shape = (mean.shape[0], count, mean.shape[1])
        eps = torch.randn(shape, generator=generator, device=mean.device, dtype=mean.dtype)
        action = torch.tanh(mean.unsqueeze(1) + log_std.exp().unsqueeze(1) * eps)
        log_prob = -0.5 * eps.square() - log_std.unsqueeze(1) - _HALF_LOG_2PI
        log_prob = log_prob - torch.log1p(-action.square() + _TANH_EPS)
    return action, log_prob.sum(-1)


def q_of_many_actions(q: QNetwork, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``Q(s_b, a_bj)`` ``[B, K]`` for actions ``[B, K, N]``: the same function as ``q(obs, action)``
    row by row, but the large observation layer runs once per state, not once per action."""
    hidden = q.obs_layer(obs).unsqueeze(1) + q.action_layer(actions)
    return q.rest(torch.relu(hidden)).squeeze(-1)


# ---------------------------------------------------------------------------------------- agent
#: The paper's budget takes the CQL authors' learning rates (batch: the default 256).
PAPER_CQL = dict(actor_lr=1e-4, critic_lr=3e-4, alpha_lr=1e-4)


class CQLAgent(SACAgent):
    """CQL(H): SAC's networks, acting and actor/temperature updates; a conservative critic loss."""

    name = "cql"
    config_class = CQLConfig
    budgets = with_paper_settings(PAPER_CQL)
    log_keys = (*SACAgent.log_keys, "cql_penalty")

    def critic_step(self, batch: Batch, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        """SAC's TD regression plus the conservative penalty on each Q-network (the actor and
        temperature steps are SAC's)."""
        c = self.config
        obs, count = batch.obs, c.cql_num_actions

        target = self.soft_target(batch, alpha if c.backup_entropy else 0.0)
        with torch.no_grad():
            # The actions the penalty pushes down, all scored at s: uniform, the policy's at s and at s'.
            uniform = torch.rand(
                (obs.shape[0], count, self.action_dim), generator=self.generator, device=self.device
            )
            here, here_log_prob = sample_policy_actions(self.actor, obs, count, self.generator)
            ahead, ahead_log_prob = sample_policy_actions(self.actor, batch.next_obs, count, self.generator)
            sampled = torch.cat([uniform * 2 - 1, here, ahead], dim=1)
            log_density = torch.cat(
                [
                    torch.full_like(here_log_prob, uniform_log_density(self.action_dim)),
                    here_log_prob,
                    ahead_log_prob,
                ],
                dim=1,
            )

        # Critics: SAC's TD regression plus the penalty on each Q-network.
        q1, q2 = self.q1(obs, batch.action), self.q2(obs, batch.action)
        penalty = cql_penalty(q1, q_of_many_actions(self.q1, obs, sampled), log_density, c.cql_temperature)
        penalty = penalty + cql_penalty(
            q2, q_of_many_actions(self.q2, obs, sampled), log_density, c.cql_temperature
        )
        q_loss = critic_loss(q1, q2, target) + c.cql_alpha * penalty
        self.critic_optimizer.zero_grad()
        q_loss.backward()
        self.critic_optimizer.step()
        return {
            "critic_loss": q_loss.detach(),
            "q_mean": q1.detach().mean(),
            "cql_penalty": penalty.detach() / 2,  # mean over the two Q-networks
        }


__all__ = [
    "CQLAgent",
    "CQLConfig",
    "cql_penalty",
    "q_of_many_actions",
    "sample_policy_actions",
    "uniform_log_density",
]
