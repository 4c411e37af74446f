"""MetaTrader's bilevel ("meta") losses: Algorithm 1-2's outer objective, differentiated through the inner step.

The outer loss of MetaTrader (paper §3) is ``Σ_i Σ_j L(B^(i); φ − η ∇L(B^(j); φ))``: every inner
parameter set j (one plain gradient step on subset j's batch) evaluated on every outer batch i.
`torch.func` differentiates it exactly (second order: `grad` of a `vmap` over j of the inner `grad`).
These are the pure functions `trustfolio.agents.metatrader.MetaTraderAgent.update` composes; they are
tested against finite differences of the naive formula in float64 (tests/test_metatrader.py).
"""

from __future__ import annotations

import torch
from torch.func import functional_call, grad, vmap

from trustfolio.agents.networks import squashed_gaussian


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


def first_member(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Critic 1's parameters out of the stacked ensemble (the actor follows critic 1, eq. 2)."""
    return {name: value[0] for name, value in params.items()}


__all__ = [
    "actor_first_layer",
    "actor_inner_steps",
    "actor_meta_loss",
    "actor_policy_loss",
    "adapted_critic_1",
    "adapted_q",
    "critic_inner_step",
    "critic_meta_loss",
    "first_member",
    "sgd_step",
]
