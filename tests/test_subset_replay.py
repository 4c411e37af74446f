"""MetaTrader's per-subset rollouts step through the `Simulator` on the subsets laid end to end; the
transitions they store are bit for bit those of the plain step they replaced (`execute_orders` at
the close, values and rewards recomputed from cash and holdings), and a checkpoint resumes them exactly."""

from __future__ import annotations

import numpy as np
import torch

from trustfolio.agents.subsets import SubsetMarket, SubsetReplay
from trustfolio.market import SimulatorConfig, execute_orders
from trustfolio.market.observation import balance_features

S, T, N, D, A = 6, 9, 4, 3, 2
SIM = SimulatorConfig(initial_cash=1e4, hmax=30.0, cost_bps=10.0)


def random_market(seed: int = 0) -> SubsetMarket:
    g = torch.Generator().manual_seed(seed)
    close = (20 * torch.exp(torch.cumsum(0.03 * torch.randn(S, T, N, generator=g), 1))).double()
    return SubsetMarket(
        states=torch.randn(S, T, N * D, generator=g),
        close=close,
        alt_states=torch.randn(S, T - 1, A, N * D, generator=g),
        alt_close=close[:, 1:, None, :].expand(-1, -1, A, -1).contiguous(),
        transform=np.zeros(S, dtype=np.int64),
        start_day=np.zeros(S, dtype=np.int64),
        alternatives=("F1", "F2"),
    )


def plain_rollout(market: SubsetMarket, subsets: torch.Tensor, actions: torch.Tensor, reward_scale: float):
    """The step SubsetReplay used before the simulator, written out: its stored rows, in order."""
    cash = torch.full((len(subsets),), SIM.initial_cash, dtype=torch.float64)
    holdings = torch.zeros(len(subsets), N, dtype=torch.float64)
    rows = []
    for k, action in enumerate(actions):
        close, next_close = market.close[subsets, k], market.close[subsets, k + 1]
        value = cash + (holdings * close).sum(-1)
        balance = balance_features(cash, holdings * close / value[:, None], SIM.initial_cash)
        orders = action.double().clamp(-1.0, 1.0) * SIM.hmax
        cash, holdings, _, _ = execute_orders(cash, holdings, orders, close, SIM.cost_rate)
        next_value = cash + (holdings * next_close).sum(-1)
        reward = (next_value / value - 1.0) * reward_scale
        next_balance = balance_features(cash, holdings * next_close / next_value[:, None], SIM.initial_cash)
        rows.append((balance, reward.float(), next_balance, cash, holdings, value))
    return rows


def test_rollouts_store_the_plain_steps_transitions_bit_for_bit():
    market = random_market()
    subsets = torch.tensor([4, 0, 4, 2, 5])  # a subset traded twice: its rows go one after the other
    actions = torch.rand(T - 1, len(subsets), N, generator=torch.Generator().manual_seed(1)) * 2.4 - 1.2
    replay = SubsetReplay(market, capacity=32, sim=SIM, reward_scale=100.0)
    replay.start(subsets)
    finished = [replay.step(action) for action in actions]
    assert finished == [False] * (T - 2) + [True]
    expected = plain_rollout(market, subsets, actions, 100.0)
    for k, (balance, reward, next_balance, cash, holdings, value) in enumerate(expected):
        for p, s in enumerate(subsets.tolist()):
            row = k * (2 if s == 4 else 1) + (1 if s == 4 and p == 2 else 0)
            assert replay.day[s, row] == k
            for name, want in (("balance", balance), ("reward", reward), ("next_balance", next_balance),
                               ("cash_after", cash), ("holdings_after", holdings), ("value_before", value)):  # fmt: skip
                assert torch.equal(getattr(replay, name)[s, row], want[p]), (name, k, p)


def test_a_checkpoint_resumes_the_rollouts_exactly():
    market = random_market(seed=2)
    subsets = torch.tensor([1, 3, 3])
    actions = torch.rand(T - 1, len(subsets), N, generator=torch.Generator().manual_seed(3)) * 2 - 1
    straight = SubsetReplay(market, capacity=16, sim=SIM, reward_scale=1.0)
    straight.start(subsets)
    for action in actions[:3]:
        straight.step(action)
    saved, observation_at_save = straight.state_dict(), straight.observation()
    for action in actions[3:]:
        straight.step(action)

    resumed = SubsetReplay(market, capacity=16, sim=SIM, reward_scale=1.0)
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.observation(), observation_at_save)
    for action in actions[3:]:
        resumed.step(action)
    for name in SubsetReplay._STATE:
        assert torch.equal(getattr(resumed, name), getattr(straight, name)), name
    assert resumed.k == straight.k and resumed.last_return == straight.last_return
