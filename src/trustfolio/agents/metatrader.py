"""MetaTrader (paper §3, Algorithms 1-2, eq. 2-5): bilevel SAC on transformed market data with a
worst-case TD target.

Reads top to bottom: the config and budgets; the critic ensemble; the losses as small pure functions
(eq. 2-5); the agent (acting, one update). The bilevel ("meta") losses, differentiated through the
inner step with `torch.func`, are in `trustfolio.agents.metatrader_meta`; the training loops (subsets,
per-subset replay) in `trustfolio.agents.metatrader_training`.

**Algorithm 1 (OOD policy learning).** Sample K subsets ``D^(i)`` and a batch ``B^(i)`` from each.
Inner step per subset (plain gradient step): ``φ_k^(i) = φ_k − η1 ∇L_Q(B^(i); φ_k)`` with the
standard soft TD target (eq. 4), and ``θ^(i) = θ − α1 ∇L_π(B^(i); θ, φ_1^(i))`` (eq. 2: the actor
follows critic 1). Outer step: ``Σ_i Σ_j ∇ L(B^(i); ·^(j))`` — every inner parameter set j on every
batch i — differentiated through the inner step (exact second order: `grad` of a `vmap` over j of the
inner `grad`), the critic's outer loss regressing on the worst-case target (eq. 5): the minimum over
the original next day and the simulated next days ``F_n(t+1)`` of the soft TD targets. The outer
step is taken by Adam (lr η2, α2); the paper writes a plain step, Adam is its usual implementation.
**Algorithm 2 (in-domain finetuning).** Same, on original data of the last training year, with
pairs i = j only, the inner step on ``B_tr^(i)`` and the outer loss on ``B_ts^(i)`` of the same
subset, standard TD target.

The temperature λ is tuned as in SAC (start 0.1, target entropy −N); one pair of target critics,
Polyak-averaged (also used inside eq. 5: the paper's eq. 5 omits the bar, eq. 4 has it).

`meta_gradient="union"` is the measured shortcut of paper-notes.md: the outer gradient taken at the
shared parameters on the union of the K batches (first order; cost independent of K).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from trustfolio.agents.base import Agent, AgentData, TrainSummary
from trustfolio.agents.metatrader_meta import (
    actor_meta_loss,
    adapted_critic_1,
    critic_meta_loss,
    first_member,
)
from trustfolio.agents.networks import QNetwork, SquashedGaussianActor, adam, squashed_gaussian
from trustfolio.agents.off_policy import OffPolicyConfig
from trustfolio.agents.sac import temperature_loss
from trustfolio.agents.stockformer import encoder_config
from trustfolio.agents.subsets import SubsetBatch
from trustfolio.data.features import MarketStates
from trustfolio.data.panel import Panel
from trustfolio.encoders import EncoderConfig, encode_market
from trustfolio.errors import UserError
from trustfolio.market.transforms import TRANSFORMS

OUTER_TARGETS = ("worst-case", "original")
META_GRADIENTS = ("exact", "union")


# ---------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class MetaTraderConfig(OffPolicyConfig):
    """Table 5 of the paper is the `paper` budget; the defaults here are the paper's where it says.

    Ablation switches (each a field): ``transforms`` (any subset of F1, F2, F3; ``[]`` = no
    transformed data), ``outer_target`` (``worst-case`` eq. 5 / ``original`` eq. 4 in the outer loop),
    ``n_critics`` + ``critic_reduce`` (``min``/``mean`` over the critic ensemble: 5 + min / 5 + mean
    with ``transforms: []`` are the ensemble baselines of Fig. 9), ``finetune_bilevel`` (False: plain
    gradient steps in Algorithm 2), ``finetune_transforms`` (transformed data in Algorithm 2 too),
    ``meta_gradient`` (``exact`` second order / ``union`` first-order shortcut).
    """

    critic_inner_lr: float = 1e-5  # η1
    critic_outer_lr: float = 1e-4  # η2
    actor_inner_lr: float = 1e-5  # α1
    actor_outer_lr: float = 1e-4  # α2
    alpha_lr: float = 1e-4  # the temperature's Adam step
    initial_alpha: float = 0.1  # StockFormer's initial entropy temperature
    target_entropy_per_stock: float = -1.0
    subsets_per_step: int = 32  # K
    slices: int = 216  # M: slices of the OOD-learning period
    slice_length: int = 64  # T
    finetune_slices: int = 32  # M': slices of the finetuning window (the paper does not give M')
    subset_buffer_size: int = 256  # transitions kept per subset
    transforms: tuple[str, ...] = TRANSFORMS
    transform_alpha: float = 10.0  # F1's percentage of top risers
    transform_delta: int = 4  # F3's step
    outer_target: str = "worst-case"
    # eq. 5's simulated next days: "observed" (the real next day's reward and balance, the simulated
    # next market state: a worst case over future payoffs) or "repriced" (paper-notes' reading: the
    # trade re-priced at the simulated next prices too; it learns to stay in cash, see
    # docs/metatrader.md and tests/test_metatrader.py).
    worst_case_reward: str = "observed"
    n_critics: int = 2
    critic_reduce: str = "min"
    meta_gradient: str = "exact"
    finetune_bilevel: bool = True
    finetune_transforms: bool = False
    encoder_budget: str = "quick"
    encoder_kind: str = "stockformer"
    encoder: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "transforms", tuple(str(t) for t in self.transforms))
        object.__setattr__(self, "encoder", dict(self.encoder))
        name = type(self).__name__
        rates = (self.critic_inner_lr, self.critic_outer_lr, self.actor_inner_lr, self.actor_outer_lr,
                 self.alpha_lr, self.initial_alpha)  # fmt: skip
        if min(rates) <= 0:
            raise UserError(f"{name}: learning rates and initial_alpha must be positive")
        unknown = sorted(set(self.transforms) - set(TRANSFORMS))
        if unknown or len(set(self.transforms)) != len(self.transforms):
            raise UserError(f"{name}: transforms must be distinct names among {', '.join(TRANSFORMS)}, "
                            f"got {list(self.transforms)}")  # fmt: skip
        for key, allowed in (("outer_target", OUTER_TARGETS), ("meta_gradient", META_GRADIENTS),
                             ("critic_reduce", ("min", "mean")),
                             ("worst_case_reward", ("repriced", "observed"))):  # fmt: skip
            if getattr(self, key) not in allowed:
                raise UserError(
                    f"{name}: {key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}"
                )
        for key in ("subsets_per_step", "slices", "finetune_slices", "subset_buffer_size", "n_critics"):
            if int(getattr(self, key)) < 1:
                raise UserError(f"{name}: {key} must be a positive whole number, got {getattr(self, key)}")
        if self.slice_length < 3:
            raise UserError(f"{name}: slice_length must be at least 3 days, got {self.slice_length}")
        self.encoder_config()  # a bad encoder budget, kind or field fails when the config is made

    def encoder_config(self) -> EncoderConfig:
        return encoder_config(self.encoder_budget, self.encoder_kind, self.encoder, "metatrader: encoder")


# ---------------------------------------------------------------------------------------- networks
class CriticEnsemble(nn.Module):
    """``n`` Q-networks (`QNetwork`) whose parameters are stacked along a leading axis, so all of them
    are evaluated in one `vmap` and their parameters can be handed around as one dict."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_sizes, n: int) -> None:
        super().__init__()
        members = [QNetwork(obs_dim, action_dim, hidden_sizes) for _ in range(n)]
        stacked, _ = stack_module_state(members)
        self.names = list(stacked)
        self.stacked = nn.ParameterList([nn.Parameter(stacked[name].detach().clone()) for name in self.names])
        self.template = (copy.deepcopy(members[0]).to("meta"),)  # a tuple: not a registered submodule

    def params(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.stacked, strict=True))

    def forward(self, obs: torch.Tensor, action: torch.Tensor, params: dict | None = None) -> torch.Tensor:
        """``[n, ...]``: every member's Q-value of each row."""
        return q_ensemble(self.template[0], self.params() if params is None else params, obs, action)


def q_ensemble(template: nn.Module, params: dict, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    return vmap(lambda p: functional_call(template, p, (obs, action)))(params)


# ---------------------------------------------------------------------------------------- losses
def soft_td_target(reward, next_q, next_log_prob, lam, gamma: float, reduce: str) -> torch.Tensor:
    """Eq. 4: ``r + γ (reduce_k Q̄_k(s', a') − λ log π(a'|s'))``; `next_q` is ``[n_critics, ...]``."""
    q = next_q.min(0).values if reduce == "min" else next_q.mean(0)
    return reward + gamma * (q - lam * next_log_prob)


def worst_case_target(targets: torch.Tensor) -> torch.Tensor:
    """Eq. 5: the element-wise minimum over the last axis of per-next-day targets ``[..., 1 + A]``
    (column 0: the original next day, then the simulated ones)."""
    return targets.min(-1).values


def td_loss(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 3 for every critic: mean squared TD error over the rows, summed over the critics ``[n, b]``."""
    return (q - target).square().mean(-1).sum()


def actor_loss(actor, theta, q1_template, q1_params, obs, eps, lam) -> torch.Tensor:
    """Eq. 2 (the KL to ``exp(Q_1)/Z`` up to a constant): ``E[λ log π(a|s) − Q_1(s, a)]``, a reparameterized."""
    mean, log_std = functional_call(actor, theta, (obs,))
    action, log_prob = squashed_gaussian(mean, log_std, eps)
    return (lam * log_prob - functional_call(q1_template, q1_params, (obs, action))).mean()


# ---------------------------------------------------------------------------------------- agent
#: `paper` is Table 5 (K = B = 32, M = 216, T = 64, hidden 256, 30k + 5k steps, the StockFormer
#: release's encoder); `cpu` is the most faithful setting that trains one seed of the CSI offline
#: protocol in <= 30 min on 2 cores (measured, BENCHMARKS.md); `quick` is for demos and CI.
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": dict(
        hidden_sizes=(64, 64), num_envs=8, steps=60, finetune_steps=20, batch_size=16,
        subsets_per_step=4, slices=8, slice_length=24, finetune_slices=4, subset_buffer_size=64,
        validation_days=60, eval_every=30, checkpoint_every=30, log_every=10,
        encoder_budget="quick", encoder_kind="light", encoder={"out_dim": 4},
    ),
    "cpu": dict(
        hidden_sizes=(256, 256), num_envs=16, steps=2_400, finetune_steps=500, batch_size=32,
        subsets_per_step=8, slices=54, slice_length=64, finetune_slices=16, subset_buffer_size=256,
        validation_days=120, eval_every=250, checkpoint_every=250, log_every=50,
        encoder_budget="cpu", encoder_kind="light", encoder={"out_dim": 8},
    ),
    "paper": dict(
        hidden_sizes=(256, 256), num_envs=32, steps=30_000, finetune_steps=5_000, batch_size=32,
        subsets_per_step=32, slices=216, slice_length=64, finetune_slices=32, subset_buffer_size=256,
        validation_days=120, eval_every=2_000, checkpoint_every=500, log_every=100,
        encoder_budget="paper", encoder_kind="stockformer",
    ),
}  # fmt: skip


class MetaTraderAgent(Agent):
    """MetaTrader on the frozen encoder's market states; share orders in ``[-1, 1]^N``."""

    name = "metatrader"
    config_class = MetaTraderConfig
    budgets = BUDGETS
    log_keys = ("critic_loss", "actor_loss", "alpha", "q_mean", "entropy", "target_gap")

    def build(self) -> None:
        c, device = self.config, self.device
        self.actor = SquashedGaussianActor(self.obs_dim, self.action_dim, c.hidden_sizes).to(device)
        self.critics = CriticEnsemble(self.obs_dim, self.action_dim, c.hidden_sizes, c.n_critics).to(device)
        self.critics_target = copy.deepcopy(self.critics).requires_grad_(False)
        self.actor_optimizer = adam(self.actor.parameters(), lr=c.actor_outer_lr)
        self.critic_optimizer = adam(self.critics.parameters(), lr=c.critic_outer_lr)
        self.log_alpha = torch.tensor(math.log(c.initial_alpha), device=device, requires_grad=True)
        self.alpha_optimizer = adam([self.log_alpha], lr=c.alpha_lr)
        self.target_entropy = c.target_entropy_per_stock * self.action_dim
        self.encoder_window: tuple[str, str] | None = None  # the training window the encoder was fitted on

    @classmethod
    def market_states(
        cls, panel: Panel, train_start: Any, train_end: Any, config: MetaTraderConfig, **options: Any
    ) -> MarketStates:
        """The frozen encoder's states of the real timeline (cached; `options`: cache_dir, progress)."""
        return encode_market(panel, config.encoder_config(), train_start=train_start, train_end=train_end,
                             **options)  # fmt: skip

    def act(self, obs: torch.Tensor, *, deterministic: bool) -> torch.Tensor:
        return self.actor.act(obs, self.generator, deterministic=deterministic)

    @torch.no_grad()
    def critic_value(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``[B]``: the ensemble's value of `action` in `obs`, reduced as its TD target reduces it
        (``config.critic_reduce``: min or mean)."""
        values = self.critics(obs, action)  # [n_critics, B]
        return values.min(0).values if self.config.critic_reduce == "min" else values.mean(0)

    # ------------------------------------------------------------------ targets (no gradient)
    @torch.no_grad()
    def soft_targets(self, reward: torch.Tensor, next_obs: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
        """Eq. 4 with the target critics and the current actor, for any leading shape."""
        next_action, next_log_prob = self.actor.sample(next_obs, self.generator)
        next_q = self.critics_target(next_obs, next_action)
        return soft_td_target(
            reward, next_q, next_log_prob, lam, self.config.gamma, self.config.critic_reduce
        )

    def worst_case_targets(
        self, batch: SubsetBatch, original: torch.Tensor, lam: torch.Tensor
    ) -> torch.Tensor:
        """``[K, B]``: eq. 5, the minimum of the `original` next day's target (eq. 4) and those of
        the simulated next days (the batch's alternatives; none: the original target)."""
        if batch.alt_reward.shape[-1] == 0:
            return original
        reward, next_obs = batch.alt_reward, batch.alt_next_obs
        if self.config.worst_case_reward == "observed":  # the real reward and balance, simulated market
            balance = self.n_stocks + 1
            reward = batch.reward.unsqueeze(-1).expand_as(reward)
            real_balance = batch.next_obs[..., -balance:].unsqueeze(-2).expand(*reward.shape, balance)
            next_obs = torch.cat([next_obs[..., :-balance], real_balance], dim=-1)
        simulated = self.soft_targets(reward, next_obs, lam)  # [K, B, A]
        return worst_case_target(torch.cat([original.unsqueeze(-1), simulated], dim=-1))

    # ------------------------------------------------------------------ the update
    def update(self, batch: SubsetBatch, outer: SubsetBatch | None = None, *, phase: str = "fit") -> dict:
        """One outer step of Algorithm 1 (`phase` ``fit``: pairs (i, j) all, eq. 5 target) or of
        Algorithm 2 (``finetune``: inner on `batch` = B_tr, outer on `outer` = B_ts, pairs i = i)."""
        c = self.config
        lam = self.log_alpha.detach().exp()
        fit = phase == "fit"
        outer = batch if outer is None else outer
        pairs = "all" if fit else "same"
        exact = c.meta_gradient == "exact" and (fit or c.finetune_bilevel)
        inner_target = self.soft_targets(batch.reward, batch.next_obs, lam)
        original = inner_target if outer is batch else self.soft_targets(outer.reward, outer.next_obs, lam)
        worst_case = fit and c.outer_target == "worst-case"
        outer_target = self.worst_case_targets(outer, original, lam) if worst_case else original
        inner_eps = self._noise(batch.action)
        outer_eps = inner_eps if outer is batch else self._noise(outer.action)

        pairs_count = batch.obs.shape[0] ** 2 if pairs == "all" else batch.obs.shape[0]
        phi = {name: value.detach() for name, value in self.critics.params().items()}
        template = self.critics.template[0]
        inner = (batch.obs, batch.action, inner_target)
        outer_critic = (outer.obs, outer.action, outer_target)
        if exact:
            critic_loss, critic_grads = _value_and_grad(
                lambda p: critic_meta_loss(p, template, inner, outer_critic, c.critic_inner_lr, pairs), phi
            )
            critic_1 = adapted_critic_1(phi, template, inner, c.critic_inner_lr)
            theta = {name: value.detach() for name, value in self.actor.named_parameters()}
            actor_loss_value, actor_grads = _value_and_grad(
                lambda th: actor_meta_loss(th, self.actor, template, critic_1, (batch.obs, batch.action),
                                           (batch.obs, inner_eps), (outer.obs, outer_eps), lam, c.actor_inner_lr,
                                           c.critic_inner_lr, pairs), theta)  # fmt: skip
        else:  # first order: each pair's loss taken at the shared parameters
            obs, action, target = (x.flatten(0, 1) for x in outer_critic)
            critic_loss, critic_grads = _value_and_grad(
                lambda p: pairs_count * td_loss(q_ensemble(template, p, obs, action), target), phi
            )
            theta = {name: value.detach() for name, value in self.actor.named_parameters()}
            q1 = first_member(phi)
            actor_loss_value, actor_grads = _value_and_grad(
                lambda th: pairs_count * actor_loss(self.actor, th, template, q1, outer.obs.flatten(0, 1),
                                          outer_eps.flatten(0, 1), lam), theta)  # fmt: skip
        _apply(self.critic_optimizer, self.critics.params(), critic_grads)
        _apply(self.actor_optimizer, dict(self.actor.named_parameters()), actor_grads)

        with torch.no_grad():
            _, log_prob = self.actor.sample(outer.obs.flatten(0, 1), self.generator)
        alpha_loss = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
        self.alpha_optimizer.zero_grad()
        alpha_loss.backward()
        self.alpha_optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(
                list(self.critics_target.parameters()), list(self.critics.parameters()), c.tau
            )
            q_mean = self.critics(outer.obs.flatten(0, 1), outer.action.flatten(0, 1))[0].mean()
        return {  # losses per (i, j) pair of the outer sum
            "critic_loss": critic_loss.detach() / pairs_count,
            "actor_loss": actor_loss_value.detach() / pairs_count,
            "alpha": lam,
            "q_mean": q_mean,
            "entropy": -log_prob.mean(),
            "target_gap": (original - outer_target).mean(),  # how much eq. 5 lowers the target
        }

    def _noise(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.generator, device=self.device)

    # ------------------------------------------------------------------ training
    def learn(self, data: AgentData, *, phase: str, steps: int, seed: int, out_dir: Path, resume: bool = True,
              progress: bool = True) -> TrainSummary:  # fmt: skip
        """``fit``: Algorithm 1 on ``data``'s span (its last `validation_days` held out for evaluation;
        the encoder is fitted on the span); ``finetune``: Algorithm 2 on ``data``'s span (e.g. the last
        training year)."""
        from trustfolio.agents.metatrader_training import train_bilevel

        if phase == "fit":
            self.encoder_window = (str(data.panel.dates[data.start]), str(data.panel.dates[data.end]))
        return train_bilevel(self, data, phase=phase, steps=steps, seed=seed, out_dir=out_dir, resume=resume,
                             progress=progress)  # fmt: skip


def _value_and_grad(loss_fn, params: dict) -> tuple[torch.Tensor, dict]:
    from torch.func import grad_and_value

    grads, value = grad_and_value(loss_fn)(params)
    return value, grads


def _apply(optimizer: torch.optim.Optimizer, params: dict, grads: dict) -> None:
    """An optimizer step with the given gradients (computed functionally) on the module's parameters."""
    for name, parameter in params.items():
        parameter.grad = grads[name].detach()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


__all__ = [
    "BUDGETS",
    "CriticEnsemble",
    "MetaTraderAgent",
    "MetaTraderConfig",
    "actor_loss",
    "q_ensemble",
    "soft_td_target",
    "td_loss",
    "worst_case_target",
]
