"""MetaTrader (paper §3, Algorithms 1-2, eq. 2-5): bilevel SAC on transformed market data with a
worst-case TD target.

Reads top to bottom: the config; the critic ensemble; the losses as small pure functions (eq. 2-5);
the bilevel ("meta") losses, differentiated through the inner step with `torch.func`; the agent
(acting, one update). The training loops (subsets, per-subset replay, checkpoints) are in
`trustfolio.agents.metatrader_training`.

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
from torch.func import functional_call, grad, stack_module_state, vmap

from trustfolio.agents.base import Agent, AgentConfig, AgentData, TrainSummary
from trustfolio.agents.networks import QNetwork, SquashedGaussianActor, adam, squashed_gaussian
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
class MetaTraderConfig(AgentConfig):
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


def first_member(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Critic 1's parameters out of the stacked ensemble (the actor follows critic 1, eq. 2)."""
    return {name: value[0] for name, value in params.items()}


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


def sgd_step(params: dict, grads: dict, lr: float) -> dict:
    """The inner step: ``p − lr · g`` for every tensor (differentiable in ``p``)."""
    return {name: params[name] - lr * grads[name] for name in params}


# ---------------------------------------------------------------------------------------- meta losses
# The inner step changes a network's first layer by a low-rank matrix: for a batch X (B rows) the
# gradient of ``W`` in ``z = X Wᵀ + b`` is ``δᵀ X`` with ``δ = ∂L/∂z`` (B x H). So the adapted layer's
# output on any rows x is ``x Wᵀ + b − lr (x Xᵀ + 1) δ``: the K adapted copies of the widest matrix
# (88 stocks x D features in, 256 out) are never formed, only the Gram matrix of the rows (data,
# computed once) and the small δ's. Exact, not an approximation (tested against finite differences
# of the naive formula); the layers after the first are adapted densely (they are small).
def critic_first_layer(p: dict, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    return obs @ p["obs_layer.weight"].T + p["obs_layer.bias"] + action @ p["action_layer.weight"].T


def after_first(p: dict, prefix: tuple[str, ...]) -> dict:
    """The parameters after a network's first layer (those whose name starts with `prefix`)."""
    return {name: value for name, value in p.items() if name.startswith(prefix)}


def critic_inner_step(template, p: dict, obs, action, target, lr: float) -> tuple[torch.Tensor, dict]:
    """One critic's inner step on one batch: ``(δ [B, H], adapted parameters after the first layer)``."""

    def loss(first, rest):
        return (functional_call(template, rest, (None, None), {"first": first}) - target).square().mean()

    rest = after_first(p, ("rest.",))
    delta, rest_grad = grad(loss, argnums=(0, 1))(critic_first_layer(p, obs, action), rest)
    return delta, sgd_step(rest, rest_grad, lr)


def adapted_q(template, p: dict, delta, rest, gram, obs, action, lr: float) -> torch.Tensor:
    """Q-values on rows (obs, action) of the critic adapted by an inner step (`delta`, `rest`), where
    ``gram = obs Xᵀ + action Aᵀ + 1`` against the inner batch (X, A)."""
    first = critic_first_layer(p, obs, action) - lr * gram @ delta
    return functional_call(template, rest, (None, None), {"first": first})


def critic_meta_loss(phi, template, inner, outer, lr: float, pairs: str) -> torch.Tensor:
    """``Σ_j Σ_i L_Q(outer_i; φ^(j))`` with ``φ^(j) = φ − lr ∇L_Q(inner_j; φ)`` (pairs ``all``), or
    ``Σ_i L_Q(outer_i; φ^(i))`` (pairs ``same``, Algorithm 2), summed over the critics. `inner` and
    `outer` are (obs, action, target), each ``[K, B, ...]``; differentiable in `phi` through the
    inner step (exact second order)."""
    X, A, Y = inner
    x, a, y = outer
    K, B = X.shape[:2]

    def one_critic(p):
        delta, rest = vmap(lambda *batch: critic_inner_step(template, p, *batch, lr))(X, A, Y)  # [K, ...]
        if pairs == "same":  # batch i's inner step, evaluated on outer batch i
            gram = x @ X.transpose(1, 2) + a @ A.transpose(1, 2) + 1.0  # [K, B, B]
            q = vmap(lambda *args: adapted_q(template, p, *args, lr))(delta, rest, gram, x, a)
            return (q - y).square().mean(-1).sum()
        xu, au, yu = x.flatten(0, 1), a.flatten(0, 1), y.flatten(0, 1)  # the union of the outer batches
        gram = (xu @ X.flatten(0, 1).T + au @ A.flatten(0, 1).T + 1.0).view(-1, K, B).transpose(0, 1)
        q = vmap(lambda d, r, g: adapted_q(template, p, d, r, g, xu, au, lr))(delta, rest, gram)  # [K, K*B]
        return (q - yu).square().sum() / B  # Σ_i mean over B_i = (1/B) Σ over the union

    return vmap(one_critic)(phi).sum()


def adapted_critic_1(phi, template, inner, lr: float) -> tuple[dict, torch.Tensor, dict]:
    """Critic 1 after each of the K inner steps, as (its shared parameters, δ [K, B, H], adapted
    parameters after the first layer [K, ...]): the actor's inner and outer losses read it."""
    p = first_member(phi)
    delta, rest = vmap(lambda *batch: critic_inner_step(template, p, *batch, lr))(*inner)
    return p, delta, rest


def actor_first_layer(theta: dict, obs: torch.Tensor) -> torch.Tensor:
    return obs @ theta["trunk.0.weight"].T + theta["trunk.0.bias"]


def actor_policy_loss(actor, q_template, critic_1_base, first, rest, obs, eps, q_delta, q_rest, q_gram_obs, q_action,
                      lam, critic_lr: float) -> torch.Tensor:  # fmt: skip
    """Eq. 2 on rows `obs` for the actor whose first layer outputs `first` (other parameters `rest`),
    against critic 1 adapted by one inner step (`q_delta`, `q_rest`; `q_gram_obs` = obs · its inner
    batch's obsᵀ, `q_action` = that batch's actions)."""
    mean, log_std = functional_call(actor, rest, (None,), {"first": first})
    action, log_prob = squashed_gaussian(mean, log_std, eps)
    q_gram = q_gram_obs + action @ q_action.T + 1.0
    q = adapted_q(q_template, critic_1_base, q_delta, q_rest, q_gram, obs, action, critic_lr)
    return (lam * log_prob - q).mean()


def actor_inner_steps(
    theta, actor, q_template, critic_1, critic_inner, inner, lam, lr: float, critic_lr: float
):
    """The K inner actor steps ``θ^(j) = θ − lr ∇L_π(inner_j; θ, φ_1^(j))`` as (δ [K, B, H], adapted
    parameters after the first layer [K, ...]); `critic_1` = `adapted_critic_1(...)`, `critic_inner`
    = its inner batches (obs, action), `inner` = (obs, noise) ``[K, B, ...]``."""
    base, q_delta, q_rest = critic_1
    rest = {name: value for name, value in theta.items() if not name.startswith("trunk.0.")}

    def inner_step(obs, eps, q_d, q_r, q_obs, q_action):
        def loss(first, rest):
            return actor_policy_loss(actor, q_template, base, first, rest, obs, eps, q_d, q_r, obs @ q_obs.T,
                                     q_action, lam, critic_lr)  # fmt: skip

        delta, rest_grad = grad(loss, argnums=(0, 1))(actor_first_layer(theta, obs), rest)
        return delta, sgd_step(rest, rest_grad, lr)

    return vmap(inner_step)(*inner, q_delta, q_rest, *critic_inner)


def actor_meta_loss(theta, actor, q_template, critic_1, critic_inner, inner, outer, lam, lr: float,
                    critic_lr: float, pairs: str) -> torch.Tensor:  # fmt: skip
    """``Σ_j Σ_i L_π(outer_i; θ^(j), φ_1^(j))`` with ``θ^(j)`` from `actor_inner_steps` (pairs
    ``same``: i = j only). Critic 1's adapted copies are constants here: the outer actor gradient is
    in θ only. `outer` = (obs, noise) ``[K, B, ...]``."""
    base, q_delta, q_rest = critic_1
    CX, CA = critic_inner
    X = inner[0]
    x, eps_out = outer
    K, B = X.shape[:2]
    delta, rest = actor_inner_steps(
        theta, actor, q_template, critic_1, critic_inner, inner, lam, lr, critic_lr
    )

    def loss(first, rest, obs, eps, q_d, q_r, q_gram_obs, q_action):
        return actor_policy_loss(actor, q_template, base, first, rest, obs, eps, q_d, q_r, q_gram_obs, q_action,
                                 lam, critic_lr)  # fmt: skip

    if pairs == "same":
        gram = x @ X.transpose(1, 2) + 1.0  # [K, B, B]
        first = vmap(lambda o: actor_first_layer(theta, o))(x) - lr * gram @ delta
        return vmap(loss)(first, rest, x, eps_out, q_delta, q_rest, x @ CX.transpose(1, 2), CA).sum()
    xu, eu = x.flatten(0, 1), eps_out.flatten(0, 1)  # the union of the outer batches
    gram_obs = (xu @ X.flatten(0, 1).T).view(-1, K, B).transpose(0, 1)  # [K, M, B]
    q_gram_obs = gram_obs if CX is X else (xu @ CX.flatten(0, 1).T).view(-1, K, B).transpose(0, 1)
    first = actor_first_layer(theta, xu) - lr * (gram_obs + 1.0) @ delta  # [K, M, H]
    per_j = vmap(lambda f, r, q_d, q_r, g, q_a: loss(f, r, xu, eu, q_d, q_r, g, q_a))(
        first, rest, q_delta, q_rest, q_gram_obs, CA
    )
    return per_j.sum() * (xu.shape[0] / B)  # Σ_i mean over B_i = (K·B / B) x mean over the union


# ---------------------------------------------------------------------------------------- agent
class MetaTraderAgent(Agent):
    """MetaTrader on the frozen encoder's market states; share orders in ``[-1, 1]^N``."""

    name = "metatrader"
    config_class = MetaTraderConfig
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
        with torch.no_grad():
            return (
                self.actor.deterministic(obs) if deterministic else self.actor.sample(obs, self.generator)[0]
            )

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
    def fit(self, data: AgentData, *, steps: int | None = None, seed: int | None = None,
            out_dir: str | Path, resume: bool = True, progress: bool = True) -> TrainSummary:  # fmt: skip
        """Algorithm 1 on ``data``'s span (its last `validation_days` held out for evaluation)."""
        from trustfolio.agents.metatrader_training import train_bilevel

        self.encoder_window = (str(data.panel.dates[data.start]), str(data.panel.dates[data.end]))
        return train_bilevel(self, data, phase="fit", steps=self.config.steps if steps is None else steps,
                             seed=self.seed if seed is None else seed, out_dir=Path(out_dir), resume=resume,
                             progress=progress)  # fmt: skip

    def finetune(self, data: AgentData, *, steps: int | None = None, seed: int | None = None,
                 out_dir: str | Path, resume: bool = True, progress: bool = True) -> TrainSummary:  # fmt: skip
        """Algorithm 2 on ``data``'s span (e.g. the last training year)."""
        from trustfolio.agents.metatrader_training import train_bilevel

        steps = self.config.finetune_steps if steps is None else steps
        return train_bilevel(self, data, phase="finetune", steps=steps, seed=self.seed if seed is None else seed,
                             out_dir=Path(out_dir), resume=resume, progress=progress)  # fmt: skip


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
    "CriticEnsemble",
    "MetaTraderAgent",
    "MetaTraderConfig",
    "actor_loss",
    "actor_inner_steps",
    "actor_meta_loss",
    "adapted_critic_1",
    "critic_inner_step",
    "critic_meta_loss",
    "soft_td_target",
    "td_loss",
    "worst_case_target",
]
