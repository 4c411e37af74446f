"""The Gymnasium wrapper: API conformance, observations, episodes, default features."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from synthetic import panel_from_prices
from trustfolio.data.panel import Panel
from trustfolio.errors import DataError, UserError
from trustfolio.market import SimulatorConfig, TradingEnv, default_market_features
from trustfolio.market.observation import balance_features, observation, observation_dim, split_observation


def random_panel(T: int = 40, N: int = 4, seed: int = 0) -> Panel:
    rng = np.random.default_rng(seed)
    close = (50 * np.cumprod(rng.uniform(0.95, 1.05, (T, N)), axis=0)).astype(np.float32)
    open_ = (close * rng.uniform(0.98, 1.02, (T, N))).astype(np.float32)
    return panel_from_prices(close, open_)


PANEL = random_panel()


@pytest.mark.parametrize("order_mode", ["shares", "weights"])
@pytest.mark.parametrize("random_start", [False, True])
def test_passes_gymnasium_env_checker(order_mode, random_start):
    env = TradingEnv(
        PANEL,
        config=SimulatorConfig(order_mode=order_mode, initial_cash=1e4, hmax=10),
        start=5,
        random_start=random_start,
        episode_length=6 if random_start else None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # infinite Box bounds for log-ratio features
        check_env(env, skip_render_check=True)


def test_observation_is_the_agents_flat_market_state_cash_share_and_weights():
    states = np.random.default_rng(1).normal(size=(PANEL.T, PANEL.N, 3)).astype(np.float32)
    config = SimulatorConfig(initial_cash=1e4, hmax=10, cost_bps=0)
    env = TradingEnv(PANEL, states, config, start="2024-01-03", end="2024-01-10")
    N, D = PANEL.N, 3
    assert env.observation_space.shape == (observation_dim(N, D),) == (N * D + 1 + N,)
    obs, info = env.reset(seed=0)
    assert info["day"] == 2 and info["date"] == np.datetime64("2024-01-03")
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape
    market, balance = split_observation(torch.from_numpy(obs), N)
    np.testing.assert_array_equal(market.numpy(), states[2].reshape(-1))
    np.testing.assert_array_equal(balance.numpy(), np.r_[1.0, np.zeros(N)].astype(np.float32))

    obs, reward, terminated, truncated, info = env.step(np.array([1.0, 0.5, 0.0, -1.0], dtype=np.float32))
    close = PANEL.close.astype(np.float64)
    cash = 1e4 - 10 * close[2, 0] - 5 * close[2, 1]
    value = cash + 10 * close[3, 0] + 5 * close[3, 1]
    weights = [10 * close[3, 0] / value, 5 * close[3, 1] / value, 0.0, 0.0]
    market, balance = split_observation(torch.from_numpy(obs), N)
    np.testing.assert_array_equal(market.numpy(), states[3].reshape(-1))
    np.testing.assert_allclose(balance.numpy(), [cash / 1e4, *weights], rtol=1e-6)
    assert reward == pytest.approx(value / 1e4 - 1, rel=1e-9)
    assert info["value"] == pytest.approx(value, rel=1e-12)
    assert info["traded_value"] == pytest.approx(1e4 - cash, rel=1e-12)
    assert not terminated and not truncated


def test_observation_is_built_like_the_agents_observation():
    env = TradingEnv(PANEL, config=SimulatorConfig(initial_cash=1e4, hmax=10), start=20)
    env.reset()
    for _ in range(5):
        obs = env.step(env.action_space.sample())[0]
    sim = env.simulator
    expected = observation(
        torch.from_numpy(default_market_features(PANEL)[sim.market_index()].reshape(1, -1)),
        balance_features(sim.state.cash, sim.weights(), 1e4),
    )
    assert torch.equal(torch.from_numpy(obs), expected[0])


def test_episode_runs_to_the_end_day_and_is_truncated_there():
    env = TradingEnv(PANEL, start=30)  # days 30..39: 9 steps
    env.reset()
    flags = [env.step(env.action_space.sample())[3] for _ in range(9)]
    assert flags == [False] * 8 + [True]
    assert env.simulator.market_index().tolist() == [39]


def test_random_start_is_seeded_uniform_and_leaves_a_full_episode():
    env = TradingEnv(PANEL, start=10, end=30, random_start=True, episode_length=5)
    starts = [env.reset(seed=seed)[1]["day"] for seed in range(200)]
    assert min(starts) == 10 and max(starts) == 25  # 25 + 5 = 30, the last day
    assert len(set(starts)) == 16  # every admissible day is drawn
    assert starts == [env.reset(seed=seed)[1]["day"] for seed in range(200)]
    fixed = TradingEnv(PANEL, start=10, end=30, episode_length=5)
    assert {fixed.reset(seed=seed)[1]["day"] for seed in range(20)} == {10}


def test_weights_mode_caps_the_total_weight_at_one():
    env = TradingEnv(PANEL, config=SimulatorConfig(order_mode="weights", cost_bps=0, initial_cash=1e4))
    env.reset()
    env.step(np.ones(PANEL.N, dtype=np.float32))  # sum 4 -> 1/4 each, no cash left
    state = env.simulator.state
    weights_at_fill = state.holdings[0].numpy() * PANEL.close[0] / 1e4
    np.testing.assert_allclose(weights_at_fill, 0.25, rtol=1e-6)
    assert state.cash.item() == pytest.approx(0.0, abs=1e-6)


def test_default_features_are_trailing_log_ratios_without_look_ahead():
    features = default_market_features(PANEL)
    log_close = np.log(PANEL.close.astype(np.float64))
    assert features.shape == (PANEL.T, PANEL.N, 4) and features.dtype == np.float32
    np.testing.assert_allclose(features[25, :, 2], log_close[25] - log_close[5], rtol=1e-5)
    np.testing.assert_allclose(features[3, :, 1], log_close[3] - log_close[0], rtol=1e-5)
    for t in (0, 7, 30):
        close = PANEL.close.copy()
        close[t + 1 :] = 1e6  # garbage after day t
        garbage = Panel(**{**PANEL.__dict__, "close": close, "high": np.maximum(PANEL.high, close)})
        np.testing.assert_array_equal(default_market_features(garbage)[: t + 1], features[: t + 1])


def test_user_mistakes_raise_clear_errors():
    with pytest.raises(DataError, match="shape"):
        TradingEnv(PANEL, np.zeros((PANEL.T, PANEL.N + 1, 2)))
    states = np.zeros((PANEL.T, PANEL.N, 2))
    states[:20] = np.nan  # warm-up period of some indicator
    with pytest.raises(DataError, match="warm-up"):
        TradingEnv(PANEL, states, start=10)
    TradingEnv(PANEL, states, start=20)  # fine once the window starts after the warm-up
    with pytest.raises(UserError, match="fewer than 2"):
        TradingEnv(PANEL, start=39)
    with pytest.raises(UserError, match="episode_length"):
        TradingEnv(PANEL, start=30, episode_length=10)


def test_env_benchmark_smoke(monkeypatch):
    """The benchmark function runs end to end on a tiny panel (speed itself is not tested here)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_env.py"
    spec = importlib.util.spec_from_file_location("bench_env_under_test", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    with_finrl = importlib.util.find_spec("finrl") is not None and importlib.util.find_spec(
        "stable_baselines3"
    )
    result = bench.run_env_benchmark(
        PANEL, batch_sizes=(2,), runs=1, steps={2: 5}, finrl=bool(with_finrl), finrl_steps=5
    )
    assert len(result.simulator[2]) == 1 and result.simulator[2][0] > 0
    assert "B=2" in result.to_markdown()
    if with_finrl:
        assert result.finrl[0] > 0 and result.ratios()[2] > 0
