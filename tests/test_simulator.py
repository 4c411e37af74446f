"""Hand-computed examples of the simulator's execution rules, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthetic import panel_from_prices
from trustfolio.errors import DataError, UserError
from trustfolio.market import Simulator, SimulatorConfig, execute_orders, target_weights_to_orders

make_panel = panel_from_prices


def row(*values) -> torch.Tensor:
    return torch.tensor([values], dtype=torch.float64)


PANEL = make_panel(
    [[10, 20], [11, 19], [12, 18], [13, 17]], open_=[[10, 20], [10.5, 19.5], [12, 18], [13, 17]]
)


def test_buy_limited_by_cash_scales_all_buys_proportionally():
    sim = Simulator(PANEL, SimulatorConfig(initial_cash=1000, hmax=100, cost_bps=10))
    sim.reset()
    res = sim.step(row(1.0, 1.0))  # wants 100 shares of each: 3000 + 3 costs > 1000 cash
    scale = 1000 / 3003
    assert torch.allclose(res.state.holdings, row(100 * scale, 100 * scale), rtol=1e-12)
    assert res.state.cash.item() == pytest.approx(0.0, abs=1e-9)
    assert res.traded_value.item() == pytest.approx(3000 * scale, rel=1e-12)
    assert res.costs.item() == pytest.approx(3 * scale, rel=1e-12)
    # Marked at the next close: 100s * 11 + 100s * 19 = 3000 s.
    assert res.value.item() == pytest.approx(3000 * scale, rel=1e-12)
    assert res.reward.item() == pytest.approx(3000 * scale / 1000 - 1, rel=1e-12)


def test_sell_capped_at_holdings_and_sells_fund_buys_in_the_same_step():
    sim = Simulator(PANEL, SimulatorConfig(initial_cash=1000, hmax=50, cost_bps=0))
    sim.reset()
    sim.step(row(1.0, 0.0))  # 50 shares at 10 -> cash 500
    res = sim.step(row(-1.0, 1.0))  # sell 50 (order of 50, capped at 50) at 11, buy 50 at 19 = 950
    assert torch.equal(res.state.holdings, row(0.0, 50.0))
    assert res.state.cash.item() == pytest.approx(500 + 550 - 950, abs=1e-9)
    res = sim.step(row(0.0, -1.0))  # sell 50 of 50 at 18
    assert torch.equal(res.state.holdings, row(0.0, 0.0))
    assert res.state.cash.item() == pytest.approx(100 + 900, abs=1e-9)

    sim = Simulator(PANEL, SimulatorConfig(initial_cash=1000, hmax=100, cost_bps=0))
    sim.reset()
    sim.step(row(0.3, 0.0))  # 30 shares
    res = sim.step(row(-1.0, 0.0))  # asks to sell 100, holds 30
    assert torch.equal(res.state.holdings, row(0.0, 0.0))
    assert res.traded_value.item() == pytest.approx(30 * 11)


def test_next_open_fill_trades_at_open_of_next_day_and_marks_at_its_close():
    sim = Simulator(PANEL, SimulatorConfig(initial_cash=1000, hmax=10, cost_bps=10, fill="next_open"))
    sim.reset()
    res = sim.step(row(1.0, 0.0))  # decided at close of day 0, 10 shares at open[1] = 10.5
    assert torch.equal(res.state.holdings, row(10.0, 0.0))
    assert res.traded_value.item() == pytest.approx(105.0)
    assert res.costs.item() == pytest.approx(0.105)
    cash = 1000 - 105 - 0.105
    assert res.state.cash.item() == pytest.approx(cash, rel=1e-12)
    assert res.value.item() == pytest.approx(cash + 10 * 11, rel=1e-12)  # close[1] = 11
    assert res.reward.item() == pytest.approx((cash + 110) / 1000 - 1, rel=1e-12)
    assert sim.market_index().tolist() == [1]


def test_lots_floor_toward_zero():
    panel = make_panel([[10, 20]] * 4, lot_size=100)
    sim = Simulator(panel, SimulatorConfig(initial_cash=1e5, hmax=250, cost_bps=0, round_lots=True))
    sim.reset()
    res = sim.step(row(1.0, 0.5))  # 250 -> 200 shares, 125 -> 100 shares
    assert torch.equal(res.state.holdings, row(200.0, 100.0))
    res = sim.step(row(-0.7, -0.3))  # sell 175 -> 100, sell 75 -> 0
    assert torch.equal(res.state.holdings, row(100.0, 100.0))
    # Cash-limited buy: 2,000 of cash buys 2000/(20*1.001) = 99.9 shares -> floored to 0 lots.
    sim = Simulator(panel, SimulatorConfig(initial_cash=2000, hmax=500, cost_bps=10, round_lots=True))
    sim.reset()
    res = sim.step(row(0.0, 1.0))
    assert torch.equal(res.state.holdings, row(0.0, 0.0))
    assert res.state.cash.item() == 2000


def test_zero_order_changes_value_only_through_prices():
    sim = Simulator(PANEL, SimulatorConfig(initial_cash=1000, hmax=10, cost_bps=25))
    sim.reset()
    first = sim.step(row(1.0, 1.0))
    res = sim.step(row(0.0, 0.0))
    assert res.costs.item() == 0 and res.traded_value.item() == 0
    assert torch.equal(res.state.cash, first.state.cash)
    assert res.value.item() == pytest.approx(first.value.item() + 10 * (12 - 11) + 10 * (18 - 19), rel=1e-12)


def test_target_weights_reach_their_targets_net_of_costs():
    sim = Simulator(PANEL, SimulatorConfig(initial_cash=1000, cost_bps=10, order_mode="weights"))
    sim.reset()
    res = sim.step(row(0.5, 0.25))
    holdings = res.state.holdings
    # After paying costs c * traded, each position is w * (1000 - costs) at the fill close.
    net = 1000 - res.costs.item()
    assert res.traded_value.item() == pytest.approx(0.75 * net, rel=1e-9)
    assert (holdings * row(10, 20)).tolist()[0] == pytest.approx([0.5 * net, 0.25 * net], rel=1e-9)
    assert res.state.cash.item() == pytest.approx(0.25 * net, rel=1e-9)


def test_pure_functions_directly():
    cash = torch.tensor([100.0, 100.0], dtype=torch.float64)
    holdings = torch.tensor([[0.0, 5.0], [2.0, 0.0]], dtype=torch.float64)
    price = torch.tensor([10.0, 20.0], dtype=torch.float64)
    orders = torch.tensor([[20.0, -8.0], [-1.0, 1.0]], dtype=torch.float64)
    new_cash, new_holdings, costs, traded = execute_orders(cash, holdings, orders, price, 0.0)
    # Portfolio 0: sells 5 (capped) for 100, then can afford 20 shares at 10 = 200 exactly.
    # Portfolio 1: sells 1 for 10, buys 1 at 20.
    assert new_holdings.tolist() == [[20.0, 0.0], [1.0, 1.0]]
    assert new_cash.tolist() == [0.0, 90.0]
    assert traded.tolist() == [300.0, 30.0] and costs.tolist() == [0.0, 0.0]
    orders = target_weights_to_orders(
        cash, holdings, torch.tensor([[0.5, 0.5], [0.0, 0.0]]).double(), price, 0.0
    )
    # Portfolio 0 is worth 200: 10 shares at 10 and 5 at 20 -> +10, 0. Portfolio 1 sells all.
    assert orders.tolist() == [[10.0, 0.0], [-2.0, 0.0]]


def test_per_portfolio_start_days_and_done():
    sim = Simulator(PANEL, SimulatorConfig(initial_cash=1000, hmax=10))
    state = sim.reset(start=np.array([0, 1]), end=torch.tensor([2, 3]))
    assert state.t.tolist() == [0, 1] and sim.prices().tolist() == [[10, 20], [11, 19]]
    res = sim.step(row(1.0, 0.0).repeat(2, 1))  # 10 shares at 10 and at 11
    assert res.state.cash.tolist() == pytest.approx([1000 - 100.1, 1000 - 110.11], rel=1e-12)
    assert sim.weights()[:, 0].tolist() == pytest.approx(
        [110 / (899.9 + 110), 120 / (889.89 + 120)], rel=1e-12
    )
    res = sim.step(torch.zeros(2, 2, dtype=torch.float64))
    assert res.done.tolist() == [True, True] and sim.market_index().tolist() == [2, 3]
    with pytest.raises(UserError, match="already reached their end day"):
        sim.step(torch.zeros(2, 2, dtype=torch.float64))


def test_reward_scale_and_float32():
    sim = Simulator(PANEL, SimulatorConfig(initial_cash=1000, hmax=10, reward_scale=100), dtype=torch.float32)
    sim.reset()
    res = sim.step(torch.tensor([[1.0, 0.0]]))
    assert res.value.dtype == torch.float32
    expected = (1000 - 100 - 0.1 + 110) / 1000 - 1
    assert res.reward.item() == pytest.approx(100 * expected, rel=1e-4)


def test_user_mistakes_raise_clear_errors():
    with pytest.raises(UserError, match="cost_bps"):
        SimulatorConfig(cost_bps=-1)
    with pytest.raises(UserError, match="fill"):
        SimulatorConfig(fill="open")
    holey = make_panel([[10.0, np.nan], [11, 19]])
    with pytest.raises(DataError, match="clean"):
        Simulator(holey)
    sim = Simulator(PANEL)
    with pytest.raises(UserError, match="not been reset"):
        sim.step(row(0.0, 0.0))
    with pytest.raises(UserError, match="start < end"):
        sim.reset(start=3)
    sim.reset()
    with pytest.raises(UserError, match="shape"):
        sim.step(torch.zeros(1, 3))
    with pytest.raises(UserError, match="NaN"):
        sim.step(row(float("nan"), 0.0))
    assert sim.market_index().tolist() == [0]  # a rejected step leaves the state unchanged
    weights_sim = Simulator(PANEL, SimulatorConfig(order_mode="weights"))
    weights_sim.reset()
    with pytest.raises(UserError, match="target weights"):
        weights_sim.step(row(0.7, 0.7))
    with pytest.raises(UserError, match="target weights"):
        weights_sim.step(row(-0.1, 0.5))


def test_reset_with_another_batch_size_gives_the_results_of_a_fresh_simulator():
    # The simulator reuses working tensors between steps and episodes; a reset to another batch
    # size (or start days) must behave exactly like a new simulator.
    config = SimulatorConfig(initial_cash=1000, hmax=40, cost_bps=10)
    reused = Simulator(PANEL, config)
    episodes = [np.array([0, 1]), np.array([0, 0, 1]), np.array([1]), np.array([0, 1])]
    generator = torch.Generator().manual_seed(3)
    for starts in episodes:
        fresh = Simulator(PANEL, config)
        for sim in (reused, fresh):
            sim.reset(start=starts, end=torch.as_tensor(starts) + 2)
        for _ in range(2):
            action = torch.rand((len(starts), 2), generator=generator, dtype=torch.float64) * 2 - 1
            a, b = reused.step(action), fresh.step(action)
            for name in ("reward", "value", "costs", "traded_value", "done"):
                assert torch.equal(getattr(a, name), getattr(b, name)), name
            assert torch.equal(a.state.holdings, b.state.holdings) and torch.equal(a.state.cash, b.state.cash)


def test_execute_orders_promotes_mixed_dtypes_like_tensor_arithmetic():
    generator = torch.Generator().manual_seed(5)
    cash = torch.rand(4, generator=generator, dtype=torch.float64) * 1e4
    holdings = (torch.rand((4, 3), generator=generator) * 100).float()  # float32 holdings
    orders = (torch.rand((4, 3), generator=generator, dtype=torch.float64) * 2 - 1) * 150
    price = torch.rand(3, generator=generator).float() * 50 + 1
    mixed = execute_orders(cash, holdings, orders, price, 0.001)
    widened = execute_orders(cash, holdings.double(), orders, price.double(), 0.001)
    for got, expected in zip(mixed, widened, strict=True):
        assert got.dtype == torch.float64 and torch.equal(got, expected)
