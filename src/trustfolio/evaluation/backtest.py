"""`backtest`: run a policy day by day through the simulator and record what happened.

Timing (the papers' convention, `design.md`): at the close of each trading day ``t`` of the window
the policy sees an `Observation` (market data up to and including ``t``, its cash and holdings) and
returns an order, which fills at the close of ``t`` (or the open of ``t+1`` with ``fill="next_open"``).
``V_0`` is the initial capital at the close of the first day, before any trade; the last day only
marks the portfolio to market. A window of ``T'`` trading days therefore gives ``T' - 1`` daily
returns (729 days → 728 returns for the CSI test window 2019-04-01 → 2022-04-01).

Data before ``start`` is visible to the policy as history (strategies need trailing windows); data
after ``t`` never is: `Observation.history` is the panel cut at ``t``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from trustfolio.data.panel import Panel
from trustfolio.errors import DataError, UserError
from trustfolio.evaluation.result import BacktestResult


@dataclass
class Observation:
    """What a policy sees at the close of day ``t`` (nothing after ``t``)."""

    t: int  # day index in the *full* panel
    date: np.datetime64
    history: Panel  # the panel restricted to days <= t: look-ahead is impossible by construction
    cash: float
    holdings: np.ndarray  # [N] shares held before today's trade
    weights: np.ndarray  # [N] holdings * close[t] / value
    value: float  # cash + holdings · close[t]


@runtime_checkable
class Policy(Protocol):
    """Anything that turns an `Observation` into an order: classic strategies and trained agents.

    ``order_mode == "weights"``: `act` returns target weights ``[N]`` (>= 0, sum <= 1, the rest is
    cash). ``order_mode == "shares"``: `act` returns share orders in ``[-1, 1]`` (times ``hmax``).
    A policy may also define ``index_level(panel) -> float array [T] | None``: a passive index whose
    backtest is the index itself (see the ``market`` strategy), and ``label(panel) -> str``.
    """

    name: str
    order_mode: Literal["shares", "weights"]

    def reset(self) -> None: ...

    def act(self, obs: Observation) -> np.ndarray: ...


def backtest(
    policy: Policy,
    panel: Panel,
    start: Any = None,
    end: Any = None,
    *,
    cost_bps: float = 10.0,
    initial_cash: float = 1e6,
    fill: Literal["close", "next_open"] = "close",
    round_lots: bool = True,
    hmax: float = 100.0,
) -> BacktestResult:
    """Trade `policy` on `panel` over the trading days in ``[start, end]`` and record each day.

    Defaults: fill at the close, 10 bps per side, share quantities floored to the calendar's lot
    size (100 shares on CSI data), initial cash 1e6 in the panel's currency — enough to buy whole
    lots of 88 CSI stocks at equal weight (the most expensive costs ~2,000 CNY a share, so a lot is
    ~200,000 CNY and 1/N rounding stays coarse but workable; with 1e5 most stocks could not be bought).
    `panel` must be clean (`trustfolio.data.cleaning.clean`). Calls ``policy.reset()`` first.
    """
    import torch

    from trustfolio.market.simulator import Simulator, SimulatorConfig

    if not panel.is_clean:
        raise DataError(
            f"{panel.name}: the panel has missing prices; clean it first with trustfolio.data.cleaning.clean"
        )
    i0, i1 = panel.span(start, end)
    if i1 - i0 < 2:
        raise UserError(f"{panel.name}: a backtest needs at least 2 trading days between {start} and {end}")
    if policy.order_mode not in ("shares", "weights"):
        raise UserError(f"policy {policy.name!r}: order_mode must be 'shares' or 'weights'")
    # A policy that declares its own hmax (a trained agent) sends orders in units of it: trading them
    # at another scale would be a different policy.
    hmax = float(getattr(policy, "hmax", None) or hmax)
    config = {
        "strategy": policy.name,
        "panel": panel.name,
        "start": str(panel.dates[i0]),
        "end": str(panel.dates[i1 - 1]),
        "cost_bps": float(cost_bps),
        "initial_cash": float(initial_cash),
        "fill": fill,
        "round_lots": bool(round_lots),
        "lot_size": panel.calendar.lot_size,
        "hmax": float(hmax),
        "order_mode": policy.order_mode,
    }
    policy.reset()
    label = policy.label(panel) if hasattr(policy, "label") else policy.name
    index_level = policy.index_level(panel) if hasattr(policy, "index_level") else None
    if index_level is not None:
        return _index_result(policy.name, label, panel, i0, i1, np.asarray(index_level), config)

    sim_config = SimulatorConfig(
        initial_cash=float(initial_cash),
        hmax=float(hmax),
        cost_bps=float(cost_bps),
        fill=fill,
        round_lots=bool(round_lots),
        order_mode=policy.order_mode,
    )
    simulator = Simulator(panel, sim_config, dtype=torch.float64)
    state = simulator.reset(batch_size=1, start=i0, end=i1 - 1)

    n_days, n_stocks = i1 - i0, panel.N
    close = panel.close.astype(np.float64)
    values = np.empty(n_days)
    weights = np.empty((n_days, n_stocks))
    turnover = np.zeros(n_days)
    costs = np.zeros(n_days)
    values[0] = float(state.value[0])
    # `.numpy()` gives views of the simulator's (CPU) tensors: reading them costs no tensor op.
    for k in range(n_days - 1):
        t = i0 + k
        cash = float(state.cash.numpy()[0])
        holdings = state.holdings.numpy()[0].copy()
        value = float(state.value.numpy()[0])
        obs = Observation(
            t=t,
            date=panel.dates[t],
            history=_history_until(panel, t),
            cash=cash,
            holdings=holdings,
            weights=holdings * close[t] / value,
            value=value,
        )
        action = _checked_action(policy, obs, n_stocks)
        step = simulator.step(torch.from_numpy(action[None, :]))
        state = step.state
        values[k + 1] = step.value.numpy()[0]
        costs[k] = step.costs.numpy()[0]
        turnover[k] = step.traded_value.numpy()[0] / (2.0 * value)
        # Weights held at today's close: after today's fill when filling at the close, before the
        # (tomorrow-open) fill otherwise.
        if fill == "close":
            held, held_cash = state.holdings.numpy()[0], float(state.cash.numpy()[0])
        else:
            held, held_cash = holdings, cash
        weights[k] = held * close[t] / (held_cash + held @ close[t])
    weights[-1] = state.holdings.numpy()[0] * close[i1 - 1] / values[-1]

    returns = np.zeros(n_days)
    returns[1:] = values[1:] / values[:-1] - 1.0
    return BacktestResult(
        name=policy.name,
        label=label,
        dates=panel.dates[i0:i1],
        values=values,
        returns=returns,
        weights=weights,
        turnover=turnover,
        costs=costs,
        tickers=panel.tickers,
        trading_days_per_year=panel.calendar.trading_days_per_year,
        config=config,
    )


def _history_until(panel: Panel, t: int) -> Panel:
    """What a policy may see at the close of day ``t``: the panel cut after ``t``."""
    return panel.take_days(slice(0, t + 1))


def _checked_action(policy: Policy, obs: Observation, n_stocks: int) -> np.ndarray:
    action = np.asarray(policy.act(obs), dtype=np.float64)
    if action.shape != (n_stocks,):
        raise ValueError(f"policy {policy.name!r} returned shape {action.shape}, expected ({n_stocks},)")
    if not np.isfinite(action).all():
        raise ValueError(f"policy {policy.name!r} returned a non-finite order on {obs.date}")
    return action


def _index_result(
    name: str, label: str, panel: Panel, i0: int, i1: int, level: np.ndarray, config: dict
) -> BacktestResult:
    """The backtest of a passive index: its level, rescaled to the initial capital; no trades."""
    level = level[i0:i1].astype(np.float64)
    if not np.isfinite(level).all() or (level <= 0).any():
        raise DataError(f"{panel.name}: the benchmark has missing or non-positive levels in the window")
    values = config["initial_cash"] * level / level[0]
    returns = np.zeros(len(values))
    returns[1:] = values[1:] / values[:-1] - 1.0
    n_days = i1 - i0
    return BacktestResult(
        name=name,
        label=label,
        dates=panel.dates[i0:i1],
        values=values,
        returns=returns,
        weights=np.full((n_days, panel.N), np.nan),  # an index holds none of the panel's stocks
        turnover=np.zeros(n_days),
        costs=np.zeros(n_days),
        tickers=panel.tickers,
        trading_days_per_year=panel.calendar.trading_days_per_year,
        config={**config, "index": panel.benchmark_name or "benchmark"},
    )
