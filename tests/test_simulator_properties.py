"""Property tests of the simulator's accounting invariants on small random panels and orders.

Every quantity is recomputed independently in numpy float64 from the holdings before and after each
step, so the simulator's own bookkeeping (traded value, costs, value) is checked, not trusted.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from synthetic import panel_from_prices
from trustfolio.market import Simulator, SimulatorConfig, execute_orders, target_weights_to_orders

REL = 1e-9  # float64 rounding only
PROPERTY_SETTINGS = settings(max_examples=100, deadline=None)


make_panel = panel_from_prices


@st.composite
def scenarios(draw, order_mode: str = "shares"):
    """A random panel, configuration, batch of portfolios and their actions for every step."""
    T = draw(st.integers(3, 8))
    N = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    # Prices from 1 to 1000 with daily moves up to ±30%, stored as float32 like real panels.
    close = np.exp(rng.uniform(0, np.log(1000), N)) * np.cumprod(rng.uniform(0.7, 1.3, (T, N)), axis=0)
    open_ = close * rng.uniform(0.9, 1.1, (T, N))
    lot_size = draw(st.sampled_from([1, 10, 100]))
    config = SimulatorConfig(
        initial_cash=draw(st.sampled_from([1e3, 1e5, 1e6])),
        hmax=draw(st.sampled_from([1.0, 100.0, 1000.0])),
        cost_bps=draw(st.sampled_from([0.0, 10.0, 50.0])),
        fill=draw(st.sampled_from(["close", "next_open"])),
        round_lots=draw(st.booleans()),
        order_mode=order_mode,
    )
    B = draw(st.integers(1, 4))
    starts = rng.integers(0, T - 2, B)
    steps = T - 1 - int(starts.max())
    if order_mode == "shares":
        actions = rng.uniform(-1.5, 1.5, (steps, B, N))  # beyond [-1, 1] on purpose: clipped
        actions[rng.uniform(size=actions.shape) < 0.3] = 0.0  # many zero orders
    else:
        raw = rng.exponential(1.0, (steps, B, N + 1))  # last column: the cash share
        actions = (raw / raw.sum(-1, keepdims=True))[..., :N]
    return make_panel(close.astype(np.float32), open_.astype(np.float32), lot_size), config, starts, actions


def run(panel, config, starts, actions):
    """Step a batch; return per-step (state before, result) pairs as float64 numpy."""
    sim = Simulator(panel, config)
    state = sim.reset(start=torch.as_tensor(starts), end=torch.as_tensor(starts) + len(actions))
    history = []
    for action in actions:
        before = {k: getattr(state, k).numpy().copy() for k in ("cash", "holdings", "t", "value")}
        result = sim.step(torch.as_tensor(action))
        history.append((before, result))
        state = result.state
    return sim, history


def check_invariants(sim, history):
    close, fill_price = sim.close.numpy(), sim.fill_price.numpy()
    cost_rate = sim.config.cost_rate
    for before, res in history:
        t = before["t"]
        cash, holdings = res.state.cash.numpy(), res.state.holdings.numpy()
        value, costs, traded = res.value.numpy(), res.costs.numpy(), res.traded_value.numpy()
        scale = float(np.maximum(value, before["value"]).max())  # absolute tolerances scale with value
        assert (cash >= 0).all() and (holdings >= 0).all()
        # value == cash + holdings · close[t+1]
        np.testing.assert_allclose(value, cash + (holdings * close[t + 1]).sum(-1), rtol=REL, atol=0)
        # traded value and costs from the holdings change, at the fill price
        delta = holdings - before["holdings"]
        price = fill_price[t]
        np.testing.assert_allclose(traded, (np.abs(delta) * price).sum(-1), rtol=REL, atol=REL * scale)
        np.testing.assert_allclose(costs, cost_rate * traded, rtol=1e-12, atol=0)
        # cash pays for the net purchases and the costs, nothing else
        net_bought = (delta * price).sum(-1)
        np.testing.assert_allclose(cash, before["cash"] - net_bought - costs, rtol=0, atol=REL * scale)
        # value change = price moves on the holdings (before the fill, then after it) - costs
        moves = (before["holdings"] * (price - close[t])).sum(-1) + (holdings * (close[t + 1] - price)).sum(
            -1
        )
        np.testing.assert_allclose(value - before["value"], moves - costs, rtol=0, atol=REL * scale)
        np.testing.assert_allclose(res.reward.numpy(), value / before["value"] - 1, rtol=1e-12, atol=1e-15)
        if sim.lot_size is not None:
            np.testing.assert_array_equal(holdings % sim.lot_size, 0.0)
        # a portfolio that trades nothing pays nothing and keeps its cash
        idle = traded == 0
        assert (costs[idle] == 0).all() and (cash[idle] == before["cash"][idle]).all()


@PROPERTY_SETTINGS
@given(scenarios("shares"))
def test_share_orders_keep_the_books(scenario):
    sim, history = run(*scenario)
    check_invariants(sim, history)
    if sim.lot_size is not None:
        return  # lot flooring breaks the exact proportions below (checked by the invariants above)
    actions = scenario[3]
    for action, (before, res) in zip(actions, history, strict=True):
        requested = np.clip(action, -1, 1) * sim.config.hmax
        delta = res.state.holdings.numpy() - before["holdings"]
        # sells: exactly the order, capped at the holdings
        sold = np.clip(-delta, 0, None)
        np.testing.assert_allclose(
            sold, np.minimum(np.clip(-requested, 0, None), before["holdings"]), rtol=REL
        )
        # buys: all scaled by one factor, the largest whose value plus costs fits in the cash
        price, c = sim.fill_price.numpy()[before["t"]], sim.config.cost_rate
        wanted = np.clip(requested, 0, None)
        cash_after_sales = before["cash"] + (sold * price).sum(-1) * (1 - c)
        wanted_cost = (wanted * price).sum(-1) * (1 + c)
        factor = np.where(
            wanted_cost > cash_after_sales, cash_after_sales / np.maximum(wanted_cost, 1e-300), 1.0
        )
        bought = np.clip(delta, 0, None)
        atol = REL * float(np.abs(res.state.holdings.numpy()).max() + wanted.max())
        np.testing.assert_allclose(bought, factor[:, None] * wanted, rtol=REL, atol=atol)


@PROPERTY_SETTINGS
@given(scenarios("weights"))
def test_target_weights_keep_the_books(scenario):
    check_invariants(*run(*scenario))


@PROPERTY_SETTINGS
@given(scenarios("shares"))
def test_zero_orders_change_value_only_through_prices(scenario):
    panel, config, starts, actions = scenario
    sim, history = run(panel, config, starts, actions)
    # Re-run with the same orders except a zero order on the last step.
    actions = actions.copy()
    actions[-1] = 0.0
    sim, history = run(panel, config, starts, actions)
    before, res = history[-1]
    t = before["t"]
    close = sim.close.numpy()
    np.testing.assert_array_equal(res.state.holdings.numpy(), before["holdings"])
    np.testing.assert_array_equal(res.state.cash.numpy(), before["cash"])
    assert (res.costs.numpy() == 0).all()
    expected = before["value"] + (before["holdings"] * (close[t + 1] - close[t])).sum(-1)
    np.testing.assert_allclose(res.value.numpy(), expected, rtol=REL)


@PROPERTY_SETTINGS
@given(scenarios("shares"), st.booleans())
def test_a_portfolio_in_a_batch_behaves_exactly_as_alone(scenario, weights_mode):
    panel, config, starts, actions = scenario
    if weights_mode:
        config = SimulatorConfig(**{**config.__dict__, "order_mode": "weights"})
        actions = np.abs(actions) / (np.abs(actions).sum(-1, keepdims=True) + 0.5)
    _, batch = run(panel, config, starts, actions)
    for b in range(len(starts)):
        _, alone = run(panel, config, starts[b : b + 1], actions[:, b : b + 1])
        for (_, in_batch), (_, single) in zip(batch, alone, strict=True):
            for name in ("reward", "value", "costs", "traded_value"):
                assert torch.equal(getattr(in_batch, name)[b : b + 1], getattr(single, name)), name
            assert torch.equal(in_batch.state.holdings[b : b + 1], single.state.holdings)
            assert torch.equal(in_batch.state.cash[b : b + 1], single.state.cash)


def textbook_step(sim, cash, holdings, t, value, action):
    """One step written plainly, op for op as documented (sells capped, buys scaled to the cash,
    lots floored, costs per side), with fresh tensors everywhere: the reference that the optimized
    `Simulator.step` (negated order book, reused scratch tensors, in-place ops) must match bit for bit."""
    config, c = sim.config, sim.config.cost_rate
    price, close_next = sim.fill_price[t], sim.close[t + 1]
    if config.order_mode == "shares":
        orders = action.clamp(-1.0, 1.0) * config.hmax
    else:
        orders = target_weights_to_orders(cash, holdings, action, price, c)
    trades = torch.maximum(orders, holdings.neg())
    if sim.lot_size is not None:
        trades = torch.trunc(trades / sim.lot_size) * sim.lot_size
    buys = trades.clamp_min(0.0)
    buy_value = (buys * price).sum(-1)
    sell_value = (buy_value - (trades * price).sum(-1)).clamp_min(0.0)
    cash_after_sales = torch.add(cash, sell_value, alpha=1.0 - c)
    buy_cost = buy_value * (1.0 + c)
    scale = (cash_after_sales / buy_cost.clamp_min(torch.finfo(buy_cost.dtype).tiny)).clamp_max(1.0)
    trades = torch.addcmul(trades, buys, (scale - 1.0).unsqueeze(-1))
    if sim.lot_size is not None:
        trades = torch.trunc(trades / sim.lot_size) * sim.lot_size
        buy_value = (trades * price).clamp_min(0.0).sum(-1)
    else:
        buy_value = buy_value * scale
    traded_value = sell_value + buy_value
    new_cash = torch.sub(cash_after_sales, buy_value, alpha=1.0 + c).clamp_min(0.0)
    holdings = holdings + trades
    new_value = new_cash + (holdings * close_next).sum(-1)
    reward = (new_value / value - 1.0) * config.reward_scale
    return {
        "cash": new_cash, "holdings": holdings, "value": new_value, "reward": reward,
        "costs": traded_value * c, "traded_value": traded_value,
    }  # fmt: skip


def bits(x: torch.Tensor) -> torch.Tensor:
    """The IEEE bit patterns of a float tensor (so that -0.0 != 0.0 and NaN == NaN of same payload)."""
    return x.contiguous().view(torch.int64 if x.dtype == torch.float64 else torch.int32)


@PROPERTY_SETTINGS
@given(
    scenarios("shares"),
    st.sampled_from(["shares", "weights"]),
    st.sampled_from([torch.float64, torch.float32]),
    st.booleans(),
    st.sampled_from([1.0, 100.0]),
)
def test_step_matches_the_textbook_formulas_bit_for_bit(scenario, order_mode, dtype, same_day, reward_scale):
    panel, config, starts, actions = scenario
    config = SimulatorConfig(**{**config.__dict__, "order_mode": order_mode, "reward_scale": reward_scale})
    if order_mode == "weights":
        actions = np.abs(actions) / (np.abs(actions).sum(-1, keepdims=True) + 0.5)
    if same_day:  # all portfolios on one day: price rows are views instead of gathers
        starts = np.full_like(starts, starts.min())
    sim = Simulator(panel, config, dtype=dtype)
    state = sim.reset(start=torch.as_tensor(starts), end=torch.as_tensor(starts) + len(actions))
    expected, results = [], []
    cash, holdings, t, value = state.cash, state.holdings, state.t, state.value
    for action in torch.as_tensor(actions, dtype=dtype):
        reference = textbook_step(sim, cash, holdings, t, value, action)
        cash, holdings, value, t = reference["cash"], reference["holdings"], reference["value"], t + 1
        expected.append(reference)
        results.append(sim.step(action.clone()))
    # Compared after the whole run: a later step must not have overwritten an earlier result.
    for reference, result in zip(expected, results, strict=True):
        for name in ("reward", "value", "costs", "traded_value"):
            assert torch.equal(bits(getattr(result, name)), bits(reference[name])), name
        for name in ("cash", "holdings"):
            assert torch.equal(bits(getattr(result.state, name)), bits(reference[name])), name


def test_execute_orders_matches_the_textbook_formulas_bit_for_bit():
    rng = np.random.default_rng(7)
    B, N = 64, 9
    cash = torch.as_tensor(rng.choice([0.0, 1e2, 1e4, 1e6], B))
    holdings = torch.as_tensor(rng.integers(0, 300, (B, N)) * rng.uniform(0.5, 1.0, (B, N)))
    orders = torch.as_tensor(rng.uniform(-400, 400, (B, N)) * (rng.uniform(size=(B, N)) < 0.7))
    price = torch.as_tensor(rng.uniform(1, 500, (B, N)))
    for lot_size in (None, 100):
        new_cash, new_holdings, costs, traded = execute_orders(
            cash, holdings, orders, price, 0.0015, lot_size
        )
        trades = torch.maximum(orders, holdings.neg())
        if lot_size:
            trades = torch.trunc(trades / lot_size) * lot_size
        buys = trades.clamp_min(0.0)
        buy_value = (buys * price).sum(-1)
        sell_value = (buy_value - (trades * price).sum(-1)).clamp_min(0.0)
        cash_after_sales = torch.add(cash, sell_value, alpha=1.0 - 0.0015)
        scale = (
            cash_after_sales / (buy_value * 1.0015).clamp_min(torch.finfo(torch.float64).tiny)
        ).clamp_max(1.0)
        trades = torch.addcmul(trades, buys, (scale - 1.0).unsqueeze(-1))
        if lot_size:
            trades = torch.trunc(trades / lot_size) * lot_size
            buy_value = (trades * price).clamp_min(0.0).sum(-1)
        else:
            buy_value = buy_value * scale
        assert (scale < 1).any() and (scale == 1).any()  # both regimes are exercised
        assert torch.equal(bits(new_holdings), bits(holdings + trades))
        assert torch.equal(bits(traded), bits(sell_value + buy_value))
        assert torch.equal(bits(costs), bits((sell_value + buy_value) * 0.0015))
        assert torch.equal(
            bits(new_cash), bits(torch.sub(cash_after_sales, buy_value, alpha=1.0015).clamp_min(0.0))
        )
