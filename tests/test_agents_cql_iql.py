"""CQL and IQL: their losses by hand, they learn to hold the trending stock, reproducibility, saving.

The tiny trending market and config come from `test_agents_sac` (shared by the agent tests).
"""

from __future__ import annotations

import math

import pytest
import torch

from test_agents_sac import SIM, TRAIN_END, held_out_backtest, tiny_config, trending_market
from trustfolio.agents import AgentData
from trustfolio.agents.base import Agent
from trustfolio.agents.cql import (
    CQLAgent,
    CQLConfig,
    cql_penalty,
    q_of_many_actions,
    sample_policy_actions,
    uniform_log_density,
)
from trustfolio.agents.iql import (
    IQLAgent,
    IQLConfig,
    advantage_weights,
    expectile_loss,
    squashed_gaussian_log_prob,
    value_target,
    weighted_log_likelihood_loss,
)
from trustfolio.errors import UserError
from trustfolio.strategies import make_strategy


# ---------------------------------------------------------------------------------------- CQL pieces
def test_cql_penalty_by_hand_and_its_gradient_pushes_sampled_actions_down_and_data_up():
    q_sampled = torch.tensor([[1.0, 2.0, 0.0]], requires_grad=True)
    q_data = torch.tensor([0.5], requires_grad=True)
    log_density = torch.tensor([[0.0, math.log(2.0), -1.0]])
    penalty = cql_penalty(q_data, q_sampled, log_density)
    # logsumexp of Q − log μ: log(e^1 + e^(2 − log 2) + e^(0 + 1)) = log(2e + e²/2), minus 0.5
    assert penalty.item() == pytest.approx(math.log(2 * math.e + math.e**2 / 2) - 0.5)
    penalty.backward()
    weights = torch.tensor([math.e, math.e**2 / 2, math.e]) / (2 * math.e + math.e**2 / 2)
    torch.testing.assert_close(q_sampled.grad[0], weights)  # descending lowers each sampled Q
    assert q_data.grad.item() == -1.0  # ... and raises the data action's Q
    # Temperature τ: τ · logsumexp(x / τ) − Q_data; a small τ is the hard maximum.
    cold = cql_penalty(q_data, q_sampled, torch.zeros(1, 3), temperature=0.01)
    assert cold.item() == pytest.approx(2.0 - 0.5, abs=1e-4)


def test_cql_penalty_is_nonnegative_for_uniform_samples_and_grows_when_q_overvalues_them():
    n_stocks, samples = 4, 10
    log_density = torch.full((3, samples), uniform_log_density(n_stocks))
    assert uniform_log_density(n_stocks) == pytest.approx(-4 * math.log(2.0))  # density 1/16 on [-1, 1]^4
    q_data = torch.tensor([0.0, 1.0, -2.0])
    # Q as high on the sampled actions as on the data: each weighted term is Q + N log 2 ≥ Q_data.
    flat = cql_penalty(q_data, q_data.unsqueeze(1).expand(3, samples), log_density)
    assert flat.item() == pytest.approx(n_stocks * math.log(2.0) + math.log(samples))
    overvalued = q_data.unsqueeze(1) + torch.linspace(0.0, 3.0, samples)  # Q higher on random actions
    previous = flat
    for scale in (1.0, 2.0, 4.0):
        penalty = cql_penalty(
            q_data, q_data.unsqueeze(1) + scale * (overvalued - q_data.unsqueeze(1)), log_density
        )
        assert penalty > previous >= 0
        previous = penalty


def test_policy_samples_are_the_actors_distribution_and_q_of_many_actions_is_q():
    agent = CQLAgent(3, 2, tiny_config(CQLConfig), seed=1)
    obs = torch.randn(5, agent.obs_dim)
    action, log_prob = sample_policy_actions(agent.actor, obs, 1, torch.Generator().manual_seed(9))
    expected_action, expected_log_prob = agent.actor.sample(obs, torch.Generator().manual_seed(9))
    torch.testing.assert_close(action[:, 0], expected_action)
    torch.testing.assert_close(log_prob[:, 0], expected_log_prob)

    many, _ = sample_policy_actions(agent.actor, obs, 7, torch.Generator().manual_seed(3))
    assert many.shape == (5, 7, 3) and many.abs().max() < 1
    by_row = agent.q1(obs.repeat_interleave(7, dim=0), many.reshape(35, 3)).reshape(5, 7)
    torch.testing.assert_close(q_of_many_actions(agent.q1, obs, many), by_row)


# ---------------------------------------------------------------------------------------- IQL pieces
def test_expectile_loss_weights_errors_asymmetrically():
    difference = torch.tensor([-2.0, 1.0])  # Q − V: V above Q, then V below Q
    assert expectile_loss(difference, 0.7).item() == pytest.approx((0.3 * 4 + 0.7 * 1) / 2)
    assert expectile_loss(difference, 0.5).item() == pytest.approx(0.5 * (4 + 1) / 2)  # half the MSE
    # The minimizer over a constant V is the τ-expectile: above the mean for τ > 0.5.
    q = torch.tensor([0.0, 0.0, 0.0, 4.0])
    v = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.SGD([v], lr=0.1)
    for _ in range(500):
        optimizer.zero_grad()
        expectile_loss(q - v, 0.7).backward()
        optimizer.step()
    # 0.7 · (4 − v) = 0.3 · 3v  ⇒  v = 2.8 / 1.6 = 1.75 (the mean is 1)
    assert v.item() == pytest.approx(1.75, abs=1e-4)


def test_advantage_weights_are_exponential_clipped_and_constant():
    advantage = torch.tensor([0.0, 1.0, 2.0, -1.0], requires_grad=True)
    weights = advantage_weights(advantage, beta=3.0, max_weight=100.0)
    torch.testing.assert_close(weights, torch.tensor([1.0, math.exp(3.0), 100.0, math.exp(-3.0)]))
    assert not weights.requires_grad
    log_prob = torch.tensor([-1.0, -2.0, 0.5, 3.0])
    loss = weighted_log_likelihood_loss(log_prob, weights)
    assert loss.item() == pytest.approx(-(-1.0 - 2 * math.exp(3.0) + 50.0 + 3 * math.exp(-3.0)) / 4, rel=1e-6)
    assert value_target(torch.tensor(1.0), torch.tensor(2.0), gamma=0.5).item() == 2.0


def test_iql_log_prob_of_given_actions_inverts_the_actors_sampling():
    agent = IQLAgent(3, 2, tiny_config(IQLConfig), seed=1)
    obs = torch.randn(6, agent.obs_dim)
    action, log_prob = agent.actor.sample(obs, torch.Generator().manual_seed(4))
    mean, log_std = agent.actor(obs)
    torch.testing.assert_close(
        squashed_gaussian_log_prob(mean, log_std, action), log_prob, atol=2e-3, rtol=1e-4
    )
    saturated = squashed_gaussian_log_prob(mean, log_std, torch.ones(6, 3))  # a float32 sample can hit ±1
    assert torch.isfinite(saturated).all()


# ---------------------------------------------------------------------------------------- learning
# Steps each needs on this market. CQL's penalty and IQL's near-uniform advantage weights (β = 3 on
# advantages of ~0.05) make both slower than SAC (300 steps). Over trending-stock x seed runs in which
# the untrained policy holds < 0.35 of the trending stock, at these budgets CQL held it (> 0.5) in 3 of
# 4 and IQL in 6 of 7; the others sat in cash. IQL with β = 0 (cloning its own actions) fails both
# cases below (0.001 and 0.11 of the trending stock).
LEARNING = {"cql": (CQLAgent, CQLConfig, 400, {}), "iql": (IQLAgent, IQLConfig, 1000, {})}


@pytest.mark.parametrize(("name", "trending", "seed"), [("cql", 3, 0), ("iql", 0, 1)])
def test_agent_learns_to_hold_the_trending_stock_and_beats_equal_weight(name, trending, seed, tmp_path):
    agent_class, config_class, steps, changes = LEARNING[name]
    panel, states = trending_market(trending)
    data = AgentData(panel, states, 0, TRAIN_END, SIM)
    config = tiny_config(config_class, steps=steps, **changes)
    untrained = agent_class(panel.N, 5, config, seed=seed)
    untrained.fit(data, steps=0, out_dir=tmp_path / "untrained", progress=False)
    agent = agent_class(panel.N, 5, config, seed=seed)
    summary = agent.fit(data, out_dir=tmp_path / "trained", progress=False)
    result = held_out_backtest(agent.policy(states), panel)
    before = held_out_backtest(untrained.policy(states), panel)
    equal_weight = held_out_backtest(make_strategy("equal-weight"), panel)

    assert summary.updates == steps - 50  # one update per step after the 50 random-action steps
    # Learned, not an initialization bias: the same network untrained does not hold the stock.
    assert before.weights[20:, trending].mean() < 0.05
    assert result.weights[20:, trending].mean() > 0.5  # after 20 days of buying (1/N holds 0.25)
    assert result.CR > equal_weight.CR + 0.1 and result.SR > equal_weight.SR


# ---------------------------------------------------------------------------------------- reproducibility
def same_networks(a: Agent, b: Agent) -> bool:
    """Every network of `a` (actor, Q-networks, their targets, IQL's value) equals `b`'s, weight for weight."""
    modules = {name: m for name, m in vars(a).items() if isinstance(m, torch.nn.Module)}
    assert {"actor", "q1", "q2", "q1_target", "q2_target"} <= set(modules)
    return all(
        torch.equal(x, y)
        for name, module in modules.items()
        for x, y in zip(module.state_dict().values(), getattr(b, name).state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("name", ["cql", "iql"])
def test_same_seed_same_agent_also_when_resumed_and_it_saves_and_loads_with_weights_only(name, tmp_path):
    agent_class, config_class, _, changes = LEARNING[name]
    panel, states = trending_market()
    data = AgentData(panel, states, 0, TRAIN_END, SIM)
    config = tiny_config(config_class, steps=80, **changes)
    straight = agent_class(panel.N, 5, config, seed=5)
    summary = straight.fit(data, out_dir=tmp_path / "0", progress=False)
    # The same seed again, stopped after 60 steps (10 updates), then resumed by a fresh agent.
    agent_class(panel.N, 5, config, seed=5).fit(data, steps=60, out_dir=tmp_path / "1", progress=False)
    resumed = agent_class(panel.N, 5, config, seed=5)
    resumed_summary = resumed.fit(data, out_dir=tmp_path / "1", progress=False)
    agents = [straight, resumed]
    first, second = (held_out_backtest(agent.policy(states), panel).metrics() for agent in agents)
    assert resumed_summary.resumed_from == 60 and summary.updates == resumed_summary.updates == 30
    assert first == second and summary.last_eval == resumed_summary.last_eval and same_networks(*agents)

    agents[0].save(tmp_path / "agent.pt")
    payload = torch.load(tmp_path / "agent.pt", weights_only=True)
    assert payload["agent"] == name and payload["config"] == agents[0].config.to_dict()
    assert torch.load(tmp_path / "0" / "checkpoint.pt", weights_only=True)["step"] == 80
    loaded = Agent.load(tmp_path / "agent.pt")
    assert type(loaded) is agent_class and loaded.config == agents[0].config and loaded.updates == 30
    assert same_networks(agents[0], loaded)
    assert held_out_backtest(loaded.policy(states), panel).metrics() == first


def test_registered_with_budgets_and_metatraders_network_sizes():
    from trustfolio.agents.registry import agent_class, resolve_config

    assert agent_class("cql") is CQLAgent and agent_class("iql") is IQLAgent
    cql, iql = resolve_config("cql", "paper"), resolve_config("iql", "paper")
    assert cql.hidden_sizes == iql.hidden_sizes == (256, 256) and cql.num_envs == iql.num_envs == 32
    assert (cql.actor_lr, cql.critic_lr, cql.cql_alpha, cql.cql_num_actions) == (1e-4, 3e-4, 1.0, 10)
    assert (iql.expectile, iql.beta, iql.max_weight, iql.batch_size) == (0.7, 3.0, 100.0, 256)
    assert resolve_config("iql", "quick", {"beta": 10.0}).beta == 10.0
    with pytest.raises(UserError, match="cql_alpha"):
        resolve_config("cql", "quick", {"cql_alpha": -1.0})
