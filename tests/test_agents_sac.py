"""SAC: it learns to hold the one asset that trends up, its losses, determinism, saving and loading.

Also home of the tiny synthetic market the agent tests share (`trending_market`, `tiny_config`).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trustfolio.agents import AgentData, SACAgent, SACConfig
from trustfolio.agents.base import Agent
from trustfolio.agents.sac import soft_q_target, temperature_loss
from trustfolio.data.features import MarketStates
from trustfolio.data.panel import Panel
from trustfolio.evaluation.backtest import backtest
from trustfolio.market.simulator import SimulatorConfig
from trustfolio.strategies import make_strategy

TRAIN_END, TEST = 299, (300, 399)  # day indices: training span [0, 299], held-out test days 300..399
SIM = SimulatorConfig(initial_cash=1e4, hmax=100.0)  # ~10% of the capital per full order at price ~10


def trending_market(
    trending: int = 0, days: int = 400, stocks: int = 4, seed: int = 0
) -> tuple[Panel, MarketStates]:
    """Stock `trending` drifts up 0.4% a day, the others are driftless; all have 1% daily noise. States
    are each stock's last 5 log returns (x50), a stationary signal; the agent must find the trend by trading."""
    rng = np.random.default_rng(seed)
    log_returns = rng.normal(0.0, 0.01, size=(days, stocks))
    log_returns[:, trending] += 0.004
    close = (10.0 * np.exp(np.cumsum(log_returns, axis=0))).astype(np.float32)
    dates = np.datetime64("2020-01-01") + np.arange(days)
    panel = Panel(
        dates=dates,
        tickers=[f"S{i}" for i in range(stocks)],
        open=close,
        high=close,
        low=close,
        close=close,
        volume=np.ones_like(close),
        name="trending",
    )
    past = np.diff(np.log(close), axis=0, prepend=np.log(close[:1]))
    h = np.zeros((days, stocks, 5), dtype=np.float32)
    for lag in range(5):
        h[lag:, :, lag] = 50.0 * past[: days - lag]
    return panel, MarketStates(
        h=h, columns=tuple(f"r{lag}" for lag in range(5)), dates=panel.dates, tickers=panel.tickers
    )


def tiny_config(config_class=SACConfig, **changes):
    """Small networks, 8 portfolios, 40-day episodes, the last 40 training days held out."""
    base = dict(
        hidden_sizes=(64, 64),
        num_envs=8,
        episode_length=40,
        steps=400,
        batch_size=128,
        buffer_size=20_000,
        learning_starts=50,
        validation_days=40,
        eval_every=200,
        checkpoint_every=200,
        log_every=50,
    )
    return config_class(**{**base, **changes})


def held_out_backtest(policy, panel):
    return backtest(
        policy,
        panel,
        panel.dates[TEST[0]],
        panel.dates[TEST[1]],
        initial_cash=SIM.initial_cash,
        hmax=SIM.hmax,
        round_lots=False,
    )


@pytest.fixture(scope="module")
def market():
    return trending_market()


# ---------------------------------------------------------------------------------------- learning
@pytest.mark.parametrize("trending", [2, 3])  # two trending stocks: holding one is learned, not an init bias
def test_sac_learns_to_hold_the_trending_stock_and_beats_equal_weight(trending, tmp_path):
    panel, states = trending_market(trending)
    # Control: the same network untrained does not already hold the trending stock.
    untrained = SACAgent(panel.N, 5, tiny_config(steps=600), seed=0)
    untrained.fit(
        AgentData(panel, states, 0, TRAIN_END, SIM), steps=0, out_dir=tmp_path / "untrained", progress=False
    )
    assert held_out_backtest(untrained.policy(states), panel).weights[20:, trending].mean() < 0.5
    agent = SACAgent(panel.N, 5, tiny_config(steps=600), seed=0)
    summary = agent.fit(
        AgentData(panel, states, 0, TRAIN_END, SIM), out_dir=tmp_path / "trained", progress=False
    )
    result = held_out_backtest(agent.policy(states), panel)
    equal_weight = held_out_backtest(make_strategy("equal-weight"), panel)

    assert summary.steps == 600 and summary.updates == 550 and summary.resumed_from is None
    assert (
        result.weights[20:, trending].mean() > 0.75
    )  # after 20 days of buying, mostly the trending stock (1/N: 0.25)
    assert result.CR > equal_weight.CR + 0.1 and result.SR > equal_weight.SR
    assert summary.last_eval["CR"] > 0  # the validation callback traded the held-out training days


def test_same_seed_gives_identical_weights_and_metrics_another_seed_does_not(market, tmp_path):
    panel, states = market
    data = AgentData(panel, states, 0, TRAIN_END, SIM)
    runs = []
    for k, seed in enumerate((3, 3, 4)):
        agent = SACAgent(panel.N, 5, tiny_config(steps=120, eval_every=60), seed=seed)
        summary = agent.fit(data, out_dir=tmp_path / f"run{k}", progress=False)
        runs.append((agent, summary, held_out_backtest(agent.policy(states), panel).metrics()))
    (a, sa, ma), (b, sb, mb), (c, _, mc) = runs
    assert all(torch.equal(x, y) for x, y in zip(a.actor.parameters(), b.actor.parameters(), strict=True))
    assert ma == mb and sa.last_eval == sb.last_eval
    assert not torch.equal(next(a.actor.parameters()), next(c.actor.parameters())) and ma != mc


# ---------------------------------------------------------------------------------------- pieces
def test_actor_log_prob_is_the_squashed_gaussian_density():
    agent = SACAgent(3, 2, tiny_config(), seed=1)
    obs = torch.randn(5, agent.obs_dim)
    generator = torch.Generator().manual_seed(7)
    action, log_prob = agent.actor.sample(obs, generator)
    mean, log_std = agent.actor(obs)
    pre_tanh = torch.atanh(action.clamp(-1 + 1e-7, 1 - 1e-7))
    base = torch.distributions.Normal(mean, log_std.exp()).log_prob(pre_tanh)
    expected = (base - torch.log(1 - action.square() + 1e-6)).sum(-1)
    torch.testing.assert_close(log_prob, expected, atol=2e-3, rtol=1e-4)
    assert action.abs().max() < 1 and torch.equal(agent.act(obs, deterministic=True), torch.tanh(mean))


def test_soft_target_and_temperature_loss_by_hand():
    target = soft_q_target(
        torch.tensor([1.0]),
        torch.tensor([2.0]),
        torch.tensor([3.0]),
        torch.tensor([-4.0]),
        alpha=0.5,
        gamma=0.9,
    )
    assert target.item() == pytest.approx(1.0 + 0.9 * (2.0 - 0.5 * -4.0))
    # Entropy -E[log pi] = -5, below the target -3: descending the loss raises alpha (by 0.1 x 2 per unit);
    # entropy 1, above the target: it lowers alpha.
    for log_prob, expected_gradient in ((5.0, -0.2), (-1.0, 0.4)):
        log_alpha = torch.tensor(math.log(0.1), requires_grad=True)
        temperature_loss(log_alpha, torch.full((2,), log_prob), target_entropy=-3.0).backward()
        assert log_alpha.grad.item() == pytest.approx(expected_gradient)


def test_initial_temperature_is_stockformers_and_sac_defaults():
    agent = SACAgent(4, 5, SACConfig(), seed=0)
    assert agent.log_alpha.exp().item() == pytest.approx(0.1) and agent.target_entropy == -4.0
    assert agent.q1_target is not agent.q1 and not any(p.requires_grad for p in agent.q1_target.parameters())


def test_saved_agent_loads_with_weights_only_and_acts_the_same(market, tmp_path):
    panel, states = market
    agent = SACAgent(panel.N, 5, tiny_config(steps=60), seed=2)
    agent.fit(AgentData(panel, states, 0, TRAIN_END, SIM), out_dir=tmp_path / "fit", progress=False)
    agent.save(tmp_path / "agent.pt")
    payload = torch.load(tmp_path / "agent.pt", weights_only=True)
    assert payload["agent"] == "sac" and payload["trained_with"]["initial_cash"] == SIM.initial_cash
    checkpoint = torch.load(tmp_path / "fit" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 60 and checkpoint["state"]["buffer"]["size"] == 60 * 8

    loaded = Agent.load(tmp_path / "agent.pt")
    assert isinstance(loaded, SACAgent) and loaded.config == agent.config
    obs = torch.randn(3, agent.obs_dim)
    assert torch.equal(loaded.act(obs, deterministic=True), agent.act(obs, deterministic=True))
    assert torch.equal(loaded.log_alpha, agent.log_alpha) and loaded.updates == agent.updates
    first = held_out_backtest(agent.policy(states), panel).metrics()
    assert held_out_backtest(loaded.policy(states), panel).metrics() == first


def test_policy_refuses_misaligned_states_and_another_capital(market, tmp_path):
    panel, states = market
    agent = SACAgent(panel.N, 5, tiny_config(steps=0), seed=0)
    agent.fit(AgentData(panel, states, 0, TRAIN_END, SIM), out_dir=tmp_path, progress=False)
    shifted = MarketStates(h=states.h, columns=states.columns, dates=states.dates + 1, tickers=states.tickers)
    with pytest.raises(ValueError, match="not aligned"):
        held_out_backtest(agent.policy(shifted), panel)
    with pytest.raises(ValueError, match="initial cash"):
        backtest(agent.policy(states), panel, panel.dates[TEST[0]], panel.dates[TEST[1]], initial_cash=1e6)
