"""The value-overestimation diagnostic (MetaTrader paper, Fig. 10): critic estimates by agent kind, a
hand-computed trajectory, a trained SAC on the same path as its evaluation callback, the summary's
truncation handling, and the files `evaluate_run` writes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from test_agents_sac import SIM, TEST, TRAIN_END, tiny_config, trending_market
from trustfolio.agent_runs import evaluate_run, train_agent
from trustfolio.agents import AgentData, DDPGAgent, DDPGConfig, SACAgent
from trustfolio.agents.metatrader import MetaTraderAgent, MetaTraderConfig
from trustfolio.agents.off_policy import OffPolicyConfig as AgentConfig
from trustfolio.agents.off_policy import evaluate_agent
from trustfolio.errors import UserError
from trustfolio.evaluation import BacktestResult, OverestimationResult, value_overestimation
from trustfolio.evaluation.overestimation import discounted_returns


@pytest.fixture(scope="module")
def market():
    return trending_market()


class ConstantCritic(nn.Module):
    """``Q(s, a) = value`` for every row."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return torch.full((obs.shape[0],), self.value)


class BuyAndBelieve:
    """Orders `shares_order` x hmax shares of stock 0 every day; twin critics that say 3.0 and 2.5."""

    name = "stub"
    order_mode = "shares"

    def __init__(self, n_stocks: int, config: AgentConfig, shares_order: float = 0.25, critics: bool = True):
        self.config, self.device = config, torch.device("cpu")
        self.n_stocks, self.shares_order = n_stocks, shares_order
        if critics:
            self.q1, self.q2 = ConstantCritic(3.0), ConstantCritic(2.5)
            self.critic_value = lambda obs, action: torch.minimum(self.q1(obs, action), self.q2(obs, action))

    def act(self, obs: torch.Tensor, *, deterministic: bool) -> torch.Tensor:
        action = torch.zeros(obs.shape[0], self.n_stocks)
        action[:, 0] = self.shares_order
        return action


# ---------------------------------------------------------------------------------------- by hand
def test_estimate_is_the_twin_minimum_and_realized_is_the_truncated_discounted_sum_of_the_price_path(market):
    panel, states = market
    gamma, scale, cost_rate, start, end = 0.5, 100.0, 0.001, 10, 30
    agent = BuyAndBelieve(panel.N, AgentConfig(gamma=gamma, reward_scale=scale))
    result = value_overestimation(
        agent, panel, states, start, end, initial_cash=SIM.initial_cash, hmax=SIM.hmax, cost_bps=10.0
    )

    # 25 shares of stock 0 bought at each close (0.25 x hmax 100, exact in float32), 10 bps on their value.
    close = panel.close[:, 0].astype(np.float64)
    cash, shares, rewards = SIM.initial_cash, 0.0, []
    for t in range(start, end):
        before = cash + shares * close[t]
        cash, shares = cash - 25 * close[t] * (1 + cost_rate), shares + 25
        assert cash > 0  # never short of cash: the simulator scales no order down
        rewards.append((cash + shares * close[t + 1]) / before * scale - scale)
    realized = [sum(gamma**k * r for k, r in enumerate(rewards[i:])) for i in range(len(rewards))]

    assert np.array_equal(result.dates, panel.dates[start:end]) and result.gamma == gamma
    assert np.array_equal(result.estimate, np.full(end - start, 2.5))
    np.testing.assert_allclose(result.reward, rewards, rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.realized, realized, rtol=0, atol=1e-9)


def test_discounted_returns_backwards():
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 2.0, 4.0]), 0.5), [1 + 1 + 1, 2 + 2, 4])
    assert discounted_returns(np.array([]), 0.9).shape == (0,)


def test_summary_restricts_to_days_far_from_the_window_end_and_is_nan_without_any():
    gamma = 0.5  # horizon int(3 / 0.5) = 6 days left
    estimate, realized = np.arange(10.0), np.full(10, 4.5)  # bias -4.5 … +4.5
    result = OverestimationResult(
        "x", np.arange(10).astype("datetime64[D]"), estimate, realized, realized, gamma
    )
    s = result.summary()
    assert (s["horizon"], s["days"], s["untruncated_days"]) == (6, 10, 4)  # days 0..3 have >= 6 days left
    assert s["mean_estimate"] == 4.5 and s["mean_bias"] == 0.0 and s["median_bias"] == 0.0
    assert s["share_overestimated"] == 0.5
    assert s["untruncated_mean_estimate"] == 1.5 and s["untruncated_mean_bias"] == -3.0
    assert s["untruncated_share_overestimated"] == 0.0
    assert "6 days left" in result.horizon_note

    short = OverestimationResult("x", result.dates[:6], estimate[:6], realized[:6], realized[:6], gamma)
    assert short.summary()["untruncated_days"] == 0 and math.isnan(short.summary()["untruncated_mean_bias"])
    assert short.summary(nan_as_none=True)["untruncated_mean_bias"] is None


def test_to_json_and_plot_write_their_files(market, tmp_path):
    panel, states = market
    agent = BuyAndBelieve(panel.N, AgentConfig(gamma=0.5))
    result = value_overestimation(
        agent, panel, states, 0, 20, initial_cash=SIM.initial_cash, hmax=SIM.hmax, cost_bps=0.0
    )
    document = json.loads(result.to_json(tmp_path / "o.json").read_text())
    assert document["summary"] == json.loads(json.dumps(result.summary(nan_as_none=True)))
    assert document["dates"][0] == str(panel.dates[0]) and document["realized"] == result.realized.tolist()
    assert result.plot(tmp_path / "o.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------- agents
def test_critic_value_of_each_kind_of_critic():
    obs, action = torch.randn(5, 3 * 2 + 1 + 3), torch.rand(5, 3) * 2 - 1
    sac = SACAgent(3, 2, tiny_config(), seed=0)
    assert torch.equal(
        sac.critic_value(obs, action), torch.minimum(sac.q1(obs, action), sac.q2(obs, action))
    )
    ddpg = DDPGAgent(3, 2, tiny_config(DDPGConfig), seed=0)
    assert torch.equal(ddpg.critic_value(obs, action), ddpg.q(obs, action))
    for reduce in ("min", "mean"):
        config = MetaTraderConfig(hidden_sizes=(16,), n_critics=3, critic_reduce=reduce)
        meta = MetaTraderAgent(3, 2, config, seed=0)
        values = meta.critics(obs, action)
        expected = values.min(0).values if reduce == "min" else values.mean(0)
        assert values.shape == (3, 5) and torch.equal(meta.critic_value(obs, action), expected)
    assert not sac.critic_value(obs, action).requires_grad


def test_an_agent_without_a_critic_is_refused(market):
    panel, states = market
    agent = BuyAndBelieve(panel.N, AgentConfig(), critics=False)
    with pytest.raises(UserError, match="agent stub has no critic to diagnose"):
        value_overestimation(agent, panel, states, 0, 10, initial_cash=1e4, hmax=100.0, cost_bps=0.0)


def test_trained_sac_trades_the_path_of_its_evaluation_callback(market, tmp_path):
    panel, states = market
    data = AgentData(panel, states, 0, TRAIN_END, SIM)
    agent = SACAgent(panel.N, 5, tiny_config(steps=60), seed=0)
    agent.fit(data, out_dir=tmp_path, progress=False)
    first, last = TEST
    result = value_overestimation(
        agent, panel, states, first, last, initial_cash=SIM.initial_cash, hmax=SIM.hmax, cost_bps=SIM.cost_bps
    )

    assert len(result.estimate) == last - first and np.isfinite(result.estimate).all()
    assert np.isfinite(result.realized).all() and result.realized[-1] == result.reward[-1]
    np.testing.assert_allclose(
        result.realized[:-1], result.reward[:-1] + 0.99 * result.realized[1:], rtol=1e-12
    )
    # Same actions, same fills as evaluate_agent: the scaled rewards compound to its cumulative return.
    market_tensor = torch.tensor(states.h.reshape(panel.T, -1))
    cumulative = np.prod(1 + result.reward / agent.config.reward_scale) - 1
    assert cumulative == pytest.approx(
        evaluate_agent(agent, data, market_tensor, first, last)["CR"], abs=1e-9
    )
    summary = result.summary()
    assert summary["untruncated_days"] == 0 and math.isnan(summary["untruncated_mean_bias"])  # 99 < 300 days
    assert all(math.isfinite(summary[key]) for key in ("mean_estimate", "mean_realized", "mean_bias"))


# ---------------------------------------------------------------------------------------- evaluate_run
def test_evaluate_run_writes_the_diagnostic_beside_the_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("TRUSTFOLIO_CACHE", str(tmp_path / "cache"))
    run_dir = train_agent(
        "sac",
        "sp500",
        budget="quick",
        steps=60,
        seed=1,
        out_dir=tmp_path / "run",
        train_start="2015-01-01",
        train_end="2018-12-31",
        progress=False,
    )
    document = evaluate_run(run_dir, "sp500", "2019-01-01", "2019-12-31")
    saved = json.loads((run_dir / "overestimation.json").read_text())
    backtest_days = len(BacktestResult.load(run_dir / "backtest").dates)  # decisions on all but the last
    assert document["overestimation"] == saved["summary"] and saved["summary"]["days"] == backtest_days - 1
    assert saved["dates"][0] == "2019-01-02" and saved["dates"][-1] < "2019-12-31"  # the last day only marks
    assert json.loads((run_dir / "metrics.json").read_text())["overestimation"] == document["overestimation"]
    assert math.isfinite(document["overestimation"]["mean_bias"])
    assert (run_dir / "overestimation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
