"""Batched trading simulator: the balance dynamics of B portfolios on one fixed market path.

The market path (`MarketPath`: prices that do not depend on what the portfolios do) is turned into
tensors once, at construction; a step only moves the *balance state* — cash and holdings — of every
portfolio at once with a handful of tensor operations (no Python loop over portfolios or stocks).
This is the partial-offline setting of the MetaTrader paper (§2): any action can be tried on the
historical path and gets its exact reward.

Timeline of one step for a portfolio at day index `t` (a decision made at the close of `t`):

1. `V_t = cash + holdings · close[t]` (the value before trading);
2. the `Execution` step gives the fill price: `close[t]` (`FillAtClose`, `fill="close"`, the
   papers' convention) or `open[t+1]` (`FillAtNextOpen`, `fill="next_open"`); share orders, or the
   orders that reach target weights, fill there (`trustfolio.market.orders`): sells first (capped
   at the holdings: no shorting), then buys, scaled down together so that buys plus their costs
   never exceed the cash (no borrowing);
3. costs are `cost_bps / 1e4` of the traded value on each side;
4. `V_{t+1} = cash' + holdings' · close[t+1]`, reward `(V_{t+1} / V_t - 1) * reward_scale`.

Accounting runs in float64 by default so that `value == cash + holdings · price` holds to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from trustfolio.data.panel import Panel
from trustfolio.errors import DataError, UserError
from trustfolio.market.execution import Execution, execution_for
from trustfolio.market.orders import (
    OrderScratch,
    execute_negated_orders,
    execute_orders,
    target_weights_to_orders,
)
from trustfolio.market.path import MarketPath


@dataclass(frozen=True)
class SimulatorConfig:
    """How orders are executed and rewarded (see the module docstring for the timeline)."""

    initial_cash: float = 1_000_000.0
    hmax: float = 100.0  # shares per unit of a share order: action 1.0 buys hmax shares
    cost_bps: float = 10.0  # proportional cost per side, basis points of traded value
    fill: Literal["close", "next_open"] = "close"  # decision at close t fills at close t or open t+1
    round_lots: bool = False  # floor share quantities toward zero to the path's lot_size
    order_mode: Literal["shares", "weights"] = "shares"
    reward_scale: float = 1.0

    def __post_init__(self) -> None:
        if not self.initial_cash > 0:
            raise UserError(f"SimulatorConfig: initial_cash must be positive, got {self.initial_cash}")
        if not self.hmax > 0:
            raise UserError(f"SimulatorConfig: hmax must be positive, got {self.hmax}")
        if not 0 <= self.cost_bps < 10_000:
            raise UserError(f"SimulatorConfig: cost_bps must be in [0, 10000), got {self.cost_bps}")
        if self.fill not in ("close", "next_open"):
            raise UserError(f"SimulatorConfig: fill must be 'close' or 'next_open', got {self.fill!r}")
        if self.order_mode not in ("shares", "weights"):
            raise UserError(
                f"SimulatorConfig: order_mode must be 'shares' or 'weights', got {self.order_mode!r}"
            )

    @property
    def cost_rate(self) -> float:
        """Cost as a fraction of traded value (10 bps -> 0.001)."""
        return self.cost_bps / 10_000.0


@dataclass
class BalanceState:
    """What the actions change: cash and holdings of each of the B portfolios at day index `t`."""

    cash: torch.Tensor  # [B]
    holdings: torch.Tensor  # [B, N] shares
    t: torch.Tensor  # LongTensor [B], day index in the market path
    value: torch.Tensor  # [B] = cash + holdings · close[t]


@dataclass
class StepResult:
    """The outcome of one step of every portfolio. Read-only: `value` is also `state.value`, and
    `done` is one all-False tensor shared by the steps before the first portfolio finishes."""

    reward: torch.Tensor  # [B] (V_{t+1} / V_t - 1) * reward_scale
    value: torch.Tensor  # [B] V_{t+1}
    costs: torch.Tensor  # [B] paid this step
    traded_value: torch.Tensor  # [B] sum |shares traded| * fill price
    done: torch.Tensor  # BoolTensor [B]: the portfolio reached its end day
    state: BalanceState


class Simulator:
    """B portfolios trading the same market path, each from its own start day, stepped together.

    `path` is a `MarketPath` (a `Panel` is accepted too and converted with `MarketPath.from_panel`).
    The `Execution` step is `execution` if given, else the one `config.fill` names; an explicit
    execution must agree with `config.fill`, so that the config always tells how orders filled.

    Market state (day index, prices) and balance state (cash, holdings) are exposed separately:
    `market_index()` / `prices()` versus `state`.
    """

    def __init__(
        self,
        path: MarketPath | Panel,
        config: SimulatorConfig = SimulatorConfig(),  # noqa: B008 - frozen, hence a safe default
        *,
        execution: Execution | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if isinstance(path, Panel):
            path = MarketPath.from_panel(path)  # raises if the panel has missing prices
        if dtype not in (torch.float64, torch.float32):
            raise UserError(f"Simulator: dtype must be torch.float64 or torch.float32, got {dtype}")
        if path.T < 2:
            raise DataError(f"{path.name}: the simulator needs at least 2 trading days, got {path.T}")
        self.path = path
        self.config = config
        self.device = torch.device(device)
        self.dtype = dtype
        self.lot_size = path.lot_size if config.round_lots else None
        self.cost_rate = config.cost_rate
        # Market path, converted once (float32 data widened to the accounting dtype).
        self.close = torch.as_tensor(path.close, device=self.device).to(dtype)
        self.open = torch.as_tensor(path.open, device=self.device).to(dtype)
        self.execution = execution_for(config.fill) if execution is None else execution
        # fill_price[t] is the price at which a decision taken at the close of t executes.
        self.fill_price = self.execution.price_table(self.close, self.open)
        if self.execution.fill != config.fill:
            raise UserError(
                f"Simulator: the execution {self.execution!r} fills at {self.execution.fill!r} but "
                f"config.fill is {config.fill!r}; make them agree"
            )
        # Filling at the close reuses the close row the step reads anyway (no second read).
        self._fills_at_close = self.fill_price is self.close
        self._state: BalanceState | None = None
        self._end: torch.Tensor | None = None
        self._steps_left = 0
        self._common_day: int | None = None
        self._close_now: torch.Tensor | None = None
        # With per-portfolio days, close rows are gathered into two buffers used in turn: this
        # step's fill price (close[t]) and the next close (close[t+1]), which is the next fill price.
        self._close_spare: torch.Tensor | None = None
        self._fill_rows: torch.Tensor | None = None
        # When all portfolios share a day, rows are views; `table.unbind(0)`, made on first use, hands
        # them out a few us faster per step than `table[day]`.
        self._row_views: dict[str, tuple[torch.Tensor, ...]] = {}
        self._scratch: OrderScratch | None = None
        # Step constants as 0-dim tensors (cheaper in arithmetic than Python numbers).
        self._minus_hmax = torch.tensor(-config.hmax, dtype=dtype, device=self.device)
        self._reward_scale = torch.tensor(config.reward_scale, dtype=dtype, device=self.device)
        self._one_day = torch.tensor(1, dtype=torch.long, device=self.device)

    @property
    def T(self) -> int:
        return self.path.T

    @property
    def N(self) -> int:
        return self.path.N

    # ------------------------------------------------------------------ episode
    def reset(
        self,
        batch_size: int = 1,
        start: int | torch.Tensor = 0,
        end: int | torch.Tensor | None = None,
    ) -> BalanceState:
        """Start B portfolios with `initial_cash` and no holdings.

        `start` is a day index, or a LongTensor[B] (or integer array) of per-portfolio start days
        (then B is its length);
        `end` is the last day index (default T-1), an int or a LongTensor[B]. Every portfolio needs
        `0 <= start < end <= T-1`; all portfolios step together until the first one reaches its end.
        """
        if isinstance(start, np.ndarray):
            start = torch.as_tensor(start)
        if isinstance(start, torch.Tensor) and start.ndim > 0:
            if batch_size not in (1, start.numel()):
                raise UserError(f"reset: batch_size {batch_size} != {start.numel()} start days given")
            batch_size = start.numel()
        if batch_size < 1:
            raise UserError(f"reset: batch_size must be at least 1, got {batch_size}")
        last = self.T - 1
        t = _as_day_index(start, batch_size, self.device, "start")
        end_t = _as_day_index(last if end is None else end, batch_size, self.device, "end")
        if bool((t < 0).any()) or bool((end_t > last).any()) or bool((t >= end_t).any()):
            raise UserError(
                f"reset: need 0 <= start < end <= {last} (the path has {self.T} days); got start "
                f"{_describe(t)}, end {_describe(end_t)}"
            )
        cash = torch.full((batch_size,), self.config.initial_cash, dtype=self.dtype, device=self.device)
        holdings = torch.zeros((batch_size, self.N), dtype=self.dtype, device=self.device)
        self._state = BalanceState(cash=cash, holdings=holdings, t=t, value=cash.clone())
        self._end = end_t
        self._steps_left = int((end_t - t).min())
        # When every portfolio is on the same day, price rows are plain views (no gather per step).
        self._common_day = int(t[0]) if bool((t == t[0]).all()) else None
        self._close_now = self._rows("close", t, 0)  # close[t], reused as the next fill price
        if self._scratch is None or self._scratch.shape != tuple(holdings.shape):
            self._scratch = OrderScratch(holdings.shape, self.dtype, self.device, self.cost_rate)
            self._close_spare = torch.empty_like(holdings)
            self._fill_rows = torch.empty_like(holdings)
        # Until the first portfolio reaches its end, `done` is all False: one tensor serves every step.
        self._none_done = torch.zeros(batch_size, dtype=torch.bool, device=self.device)
        return self._state

    def restore(self, state: BalanceState, end: int | torch.Tensor | None = None) -> BalanceState:
        """Put B portfolios back in a saved balance state, e.g. from a checkpoint, and go on from it.

        The portfolios stand on days `state.t` with end days `end` (as in `reset`), holding the
        state's cash and holdings, valued at `state.value` (the V_t of the next reward). A step never
        writes into the tensors of a state it returned, so `simulator.state` read at any moment is
        a snapshot; `restore` copies the tensors all the same, so the caller may reuse them.
        """
        self.reset(start=state.t.reshape(-1), end=end)  # positions the days and price rows
        B, N = self._state.holdings.shape
        tensors = {}
        for name, shape in (("cash", (B,)), ("holdings", (B, N)), ("value", (B,))):
            tensor = torch.as_tensor(getattr(state, name))
            if tuple(tensor.shape) != shape:
                raise UserError(f"restore: state.{name} has shape {tuple(tensor.shape)}, expected {shape}")
            tensors[name] = tensor.to(device=self.device, dtype=self.dtype, copy=True)
        self._state = BalanceState(t=self._state.t, **tensors)
        return self._state

    @property
    def state(self) -> BalanceState:
        """The current balance state of every portfolio."""
        return self._require_state()

    @property
    def done(self) -> torch.Tensor:
        """BoolTensor[B]: which portfolios have reached their end day."""
        state = self._require_state()
        return state.t >= self._end

    def market_index(self) -> torch.Tensor:
        """LongTensor[B]: the current day index t of every portfolio."""
        return self._require_state().t

    def prices(self) -> torch.Tensor:
        """[B, N]: close prices at each portfolio's current day (market state, action-free)."""
        return self.close.index_select(0, self._require_state().t)

    def weights(self) -> torch.Tensor:
        """[B, N]: the value share of each holding at the current close (the rest is cash)."""
        state = self._require_state()
        return state.holdings * self.prices() / state.value.unsqueeze(-1)

    # ------------------------------------------------------------------ step
    def step(self, action: torch.Tensor) -> StepResult:
        """Execute `action` [B,N] decided at the close of each portfolio's day t, filled by the
        execution step (at the close of t or the open of t+1), and advance to t+1.

        `"shares"` mode: values are clipped to [-1, 1] and multiplied by `hmax` shares.
        `"weights"` mode: target weights, each >= 0 with sum <= 1 per portfolio (the rest is cash).
        Raises `UserError` (leaving the state unchanged) when a portfolio has already finished or
        the action is malformed.
        """
        state = self._require_state()
        if self._steps_left <= 0:
            finished = torch.nonzero(self.done).flatten().tolist()
            raise UserError(
                f"step: portfolio(s) {finished[:10]} already reached their end day; call reset() first"
            )
        action = self._check_action(action)
        config, work = self.config, self._scratch
        if self._fills_at_close:
            price = self._close_now
        else:
            price = self._rows("fill_price", state.t, 0, out=self._fill_rows)
        if config.order_mode == "shares":
            # -orders = clip(action, -1, 1) * -hmax, written straight into the (negated) order book
            torch.clamp(action, -1.0, 1.0, out=work.minus_trades).mul_(self._minus_hmax)
        else:
            orders = target_weights_to_orders(state.cash, state.holdings, action, price, self.cost_rate)
            torch.neg(orders, out=work.minus_trades)
        cash, holdings, costs, traded_value = execute_negated_orders(
            work, state.cash, state.holdings, price, self.lot_size
        )
        t_next = torch.add(state.t, self._one_day)
        close_next = self._rows("close", t_next, 1, out=self._close_spare)
        # value = cash + holdings · close[t+1]; the order book's scratch is free again for the product
        value = torch.mul(holdings, close_next, out=work.minus_trades).sum(-1).add_(cash)
        # NaN in an action ends up here; one cheap check (a sum only when there are several values)
        if not math.isfinite(value.item() if value.numel() == 1 else value.sum().item()):
            raise UserError("step: the action contains NaN (portfolio values became NaN)")
        reward = torch.div(value, state.value).sub_(work.one)
        if config.reward_scale != 1.0:
            reward.mul_(self._reward_scale)
        self._steps_left -= 1
        done = self._none_done if self._steps_left > 0 else t_next >= self._end
        if self._common_day is None:  # the spare buffer now holds close[t+1]; close[t] is free
            self._close_spare = self._close_now
        else:
            self._common_day += 1
        self._close_now = close_next
        self._state = BalanceState(cash=cash, holdings=holdings, t=t_next, value=value)
        return StepResult(
            reward=reward,
            value=value,
            costs=costs,
            traded_value=traded_value,
            done=done,
            state=self._state,
        )

    # ------------------------------------------------------------------ helpers
    def _rows(
        self, table: str, t: torch.Tensor, offset: int, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Rows of `self.<table>` at days `t` (which include `offset`, the days past the common day):
        a [N] view when all portfolios share a day, else a [B, N] gather (into `out` if given)."""
        if self._common_day is not None:
            if table not in self._row_views:
                self._row_views[table] = getattr(self, table).unbind(0)
            return self._row_views[table][self._common_day + offset]
        return torch.index_select(getattr(self, table), 0, t, out=out)

    def _require_state(self) -> BalanceState:
        if self._state is None:
            raise UserError("the simulator has not been reset; call reset() before using it")
        return self._state

    def _check_action(self, action: torch.Tensor) -> torch.Tensor:
        if not (type(action) is torch.Tensor and action.dtype == self.dtype and action.device == self.device):
            action = torch.as_tensor(action, dtype=self.dtype, device=self.device)
        if action.requires_grad:  # the simulator is not differentiable; don't build a graph
            action = action.detach()
        expected = self._state.holdings.shape
        if action.shape != expected:
            raise UserError(f"step: action has shape {tuple(action.shape)}, expected {tuple(expected)}")
        if self.config.order_mode == "weights":
            # A small tolerance absorbs the rounding of softmax-like outputs; NaN fails `>= 0`.
            if not bool((action >= 0).all()) or bool((action.sum(-1) > 1.0 + 1e-6).any()):
                raise UserError("step: target weights must be >= 0 and sum to at most 1 per portfolio")
        return action


def _as_day_index(
    value: int | torch.Tensor, batch_size: int, device: torch.device, what: str
) -> torch.Tensor:
    """A LongTensor[B] of day indices from an int or a tensor (scalar or [B])."""
    if isinstance(value, np.ndarray):
        value = torch.as_tensor(value)
    if isinstance(value, torch.Tensor):
        if value.dtype.is_floating_point or value.dtype == torch.bool:
            raise UserError(f"reset: {what} must hold integer day indices, got dtype {value.dtype}")
        index = value.to(device=device, dtype=torch.long).reshape(-1)
        if index.numel() == 1:
            return index.expand(batch_size).clone()
        if index.numel() != batch_size:
            raise UserError(f"reset: {what} has {index.numel()} entries, expected {batch_size}")
        return index.clone()
    if isinstance(value, (bool, float)) or not isinstance(value, (int, np.integer)):
        raise UserError(f"reset: {what} must be an int day index or a LongTensor, got {value!r}")
    return torch.full((batch_size,), int(value), dtype=torch.long, device=device)


def _describe(index: torch.Tensor) -> str:
    """Compact text of a day-index tensor for error messages."""
    lo, hi = int(index.min()), int(index.max())
    return str(lo) if lo == hi else f"{lo}..{hi}"


# `execute_orders` and `target_weights_to_orders` lived here before orders.py; kept importable.
__all__ = [
    "BalanceState",
    "Simulator",
    "SimulatorConfig",
    "StepResult",
    "execute_orders",
    "target_weights_to_orders",
]
