"""The simulator on a `MarketPath` with a pluggable `Execution` step, and `restore`: the same numbers as before, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthetic import panel_from_prices
from trustfolio.errors import DataError, UserError
from trustfolio.market import (
    BalanceState,
    FillAtClose,
    FillAtNextOpen,
    IntradayFills,
    IntradaySchedule,
    MarketPath,
    Simulator,
    SimulatorConfig,
)


def random_panel(T: int = 30, N: int = 3, seed: int = 0, lot_size: int = 1):
    rng = np.random.default_rng(seed)
    close = (50 * np.cumprod(rng.uniform(0.9, 1.1, (T, N)), axis=0)).astype(np.float32)
    open_ = (close * rng.uniform(0.97, 1.03, (T, N))).astype(np.float32)
    return panel_from_prices(close, open_, lot_size)


PANEL = random_panel()


def actions_for(order_mode: str, steps: int, B: int, N: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    if order_mode == "shares":
        return torch.rand((steps, B, N), generator=generator, dtype=torch.float64) * 3 - 1.5
    raw = torch.rand((steps, B, N + 1), generator=generator, dtype=torch.float64)
    return (raw / raw.sum(-1, keepdim=True))[..., :N]


def trajectory(sim: Simulator, start, end, actions) -> list[torch.Tensor]:
    """Every number a run produces, in order."""
    state = sim.reset(start=start, end=end)
    out = [state.cash, state.holdings, state.value, sim.weights()]
    for action in actions:
        result = sim.step(action)
        out += [result.reward, result.value, result.costs, result.traded_value, result.done,
                result.state.cash, result.state.holdings, sim.weights()]  # fmt: skip
    return out


def assert_identical(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x.dtype == y.dtype and torch.equal(x, y), f"quantity {i} differs"


CONFIGS = [
    SimulatorConfig(initial_cash=1e4, hmax=40, cost_bps=10, fill=fill, order_mode=mode, round_lots=lots)
    for fill in ("close", "next_open")
    for mode in ("shares", "weights")
    for lots in (False, True)
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.fill}-{c.order_mode}-lots{c.round_lots}")
def test_a_path_from_the_panel_steps_exactly_like_the_panel(config):
    panel = random_panel(lot_size=10)
    starts = torch.tensor([0, 3, 3, 11])
    actions = actions_for(config.order_mode, 12, len(starts), panel.N)
    on_panel = trajectory(Simulator(panel, config), starts, starts + 12, actions)
    path = MarketPath.from_panel(panel)
    assert (path.T, path.N, path.lot_size, path.name) == (panel.T, panel.N, 10, panel.name)
    assert_identical(trajectory(Simulator(path, config), starts, starts + 12, actions), on_panel)
    arrays = MarketPath.from_arrays(panel.close, panel.open, lot_size=10)
    assert_identical(trajectory(Simulator(arrays, config), starts, starts + 12, actions), on_panel)
    tensors = MarketPath.from_arrays(torch.from_numpy(panel.close.astype(np.float64)),
                                     torch.from_numpy(panel.open.astype(np.float64)), lot_size=10)  # fmt: skip
    assert_identical(trajectory(Simulator(tensors, config), starts, starts + 12, actions), on_panel)


@pytest.mark.parametrize("order_mode", ["shares", "weights"])
def test_an_explicit_execution_is_the_one_the_fill_name_selects(order_mode):
    for fill, execution in (("close", FillAtClose()), ("next_open", FillAtNextOpen())):
        config = SimulatorConfig(initial_cash=1e4, hmax=40, fill=fill, order_mode=order_mode)
        actions = actions_for(order_mode, 8, 2, PANEL.N)
        by_name = trajectory(Simulator(PANEL, config), torch.tensor([2, 5]), None, actions)
        explicit = Simulator(PANEL, config, execution=execution)
        assert explicit.execution is execution and type(Simulator(PANEL, config).execution) is type(execution)
        assert_identical(trajectory(explicit, torch.tensor([2, 5]), None, actions), by_name)


@pytest.mark.parametrize("order_mode", ["shares", "weights"])
@pytest.mark.parametrize("fill", ["close", "next_open"])
def test_both_order_modes_fill_at_the_execution_price(fill, order_mode):
    sim = Simulator(PANEL, SimulatorConfig(initial_cash=1e4, hmax=40, fill=fill, order_mode=order_mode))
    close, open_ = PANEL.close.astype(np.float64), PANEL.open.astype(np.float64)
    expected_table = close if fill == "close" else np.concatenate([open_[1:], open_[-1:]])
    np.testing.assert_array_equal(sim.fill_price.numpy(), expected_table)
    starts = np.array([0, 4, 9])
    sim.reset(start=starts)
    total_traded = 0.0
    for t_offset, action in enumerate(actions_for(order_mode, 5, len(starts), PANEL.N)):
        before = sim.state.holdings.numpy().copy()
        result = sim.step(action)
        traded = np.abs(result.state.holdings.numpy() - before) * expected_table[starts + t_offset]
        np.testing.assert_allclose(result.traded_value.numpy(), traded.sum(-1), rtol=1e-12)
        total_traded = total_traded + result.traded_value
    assert (total_traded > 0).all()  # the check above was not vacuous


def test_restore_continues_a_snapshot_exactly():
    config = SimulatorConfig(initial_cash=1e4, hmax=40, cost_bps=10, fill="next_open")
    starts, ends = torch.tensor([0, 2, 2, 7]), torch.tensor([15, 14, 20, 19])
    actions = actions_for("shares", 10, len(starts), PANEL.N)
    sim = Simulator(PANEL, config)
    sim.reset(start=starts, end=ends)
    for action in actions[:4]:
        sim.step(action)
    snapshot = sim.state
    saved = BalanceState(*(getattr(snapshot, name).clone() for name in ("cash", "holdings", "t", "value")))
    first = [sim.step(action) for action in actions[4:]]

    restored = Simulator(PANEL, config)  # a fresh simulator, as after loading a checkpoint
    for other in (sim, restored):
        state = other.restore(saved, end=ends)
        assert torch.equal(state.t, starts + 4) and torch.equal(state.cash, saved.cash)
        assert state.cash is not saved.cash  # copied: the caller's tensors stay theirs
        again = [other.step(action) for action in actions[4:]]
        for a, b in zip(first, again, strict=True):
            for name in ("reward", "value", "costs", "traded_value", "done"):
                assert torch.equal(getattr(a, name), getattr(b, name)), name
            assert torch.equal(a.state.holdings, b.state.holdings) and torch.equal(a.state.cash, b.state.cash)


def test_restore_rejects_a_state_of_the_wrong_shape():
    sim = Simulator(PANEL)
    state = sim.reset(2)
    bad = BalanceState(cash=state.cash, holdings=state.holdings[:, :2], t=state.t, value=state.value)
    with pytest.raises(UserError, match="holdings"):
        sim.restore(bad)
    with pytest.raises(UserError, match="start < end"):
        sim.restore(state, end=0)


def test_concatenated_paths_keep_each_portfolio_inside_its_own_piece():
    # MetaTrader's subsets: short paths laid end to end, portfolios bounded by per-portfolio days.
    pieces = [random_panel(T=6, seed=seed) for seed in (1, 2, 3)]
    joined = MarketPath.from_arrays(np.concatenate([p.close for p in pieces]))
    config = SimulatorConfig(initial_cash=1e4, hmax=40)
    piece = torch.tensor([2, 0, 1, 2])
    actions = actions_for("shares", 5, len(piece), 3)
    together = trajectory(Simulator(joined, config), piece * 6, piece * 6 + 5, actions)
    for b, k in enumerate(piece.tolist()):
        alone = trajectory(
            Simulator(MarketPath.from_arrays(pieces[k].close), config), 0, 5, actions[:, b : b + 1]
        )
        assert_identical(alone, [x[b : b + 1] for x in together])


def test_the_intraday_slot_names_the_issue_that_fills_it():
    class Twap(IntradaySchedule):
        def execute(self, parent_orders, bars, arrival_price) -> IntradayFills:
            raise AssertionError("never called")

    with pytest.raises(NotImplementedError, match="HRPM issue"):
        Simulator(PANEL, execution=Twap())
    with pytest.raises(TypeError):
        IntradaySchedule()  # the contract is abstract


def test_path_and_execution_mistakes_raise_clear_errors():
    with pytest.raises(UserError, match="config.fill"):
        Simulator(PANEL, SimulatorConfig(fill="close"), execution=FillAtNextOpen())
    with pytest.raises(DataError, match="finite and positive"):
        MarketPath.from_arrays([[1.0, np.nan], [1.0, 2.0]])
    with pytest.raises(DataError, match="shape"):
        MarketPath.from_arrays(np.ones((3, 2)), np.ones((3, 3)))
    with pytest.raises(DataError, match="dates"):
        MarketPath.from_arrays(np.ones((3, 2)), dates=PANEL.dates[:2])
    with pytest.raises(DataError, match="at least 2 trading days"):
        Simulator(MarketPath.from_arrays(np.ones((1, 2))))
