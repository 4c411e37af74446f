"""Order execution: the price at which an order decided at the close of day t fills.

A portfolio decides at the close of its day t (it has seen data up to that close, no later). The
`Execution` step of the `Simulator` says where that decision fills. Today's two executions fill a
whole order at one price per stock and day, read off the market path, so the price does not depend
on the order: each is a *price table* over the path, computed once when the simulator is built,
whose row t is the fill price of decisions taken at the close of t. The simulator's step then only
reads the rows of each portfolio's day (a view or one gather), as fast as before executions were
pluggable.

- `FillAtClose` (`SimulatorConfig(fill="close")`, the papers' convention): the close of t.
- `FillAtNextOpen` (`fill="next_open"`): the open of t+1.
- `IntradaySchedule`: the slot for executors that split a parent order over the intraday bars of the
  execution day (TWAP, VWAP, Almgren-Chriss, a learned executor). Their fill prices depend on the
  order (market impact), so they are not a price table; they arrive with the HRPM issue, which
  also brings the intraday bars. Until then the simulator refuses one with a clear error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from trustfolio.errors import UserError

HRPM_ISSUE = (
    "the HRPM issue (hierarchical portfolio execution: intraday bars and TWAP / VWAP / "
    "Almgren-Chriss / learned executors, see docs/paper-notes.md § HRPM)"
)


class Execution(ABC):
    """Where an order decided at the close of day t fills; `fill` is its `SimulatorConfig.fill` name."""

    fill: ClassVar[str]

    @abstractmethod
    def price_table(self, close: torch.Tensor, open: torch.Tensor) -> torch.Tensor:  # noqa: A002
        """`[T, N]`: row t is the fill price of an order decided at the close of day t, from the
        path's `close` and `open` `[T, N]` (already in the simulator's dtype and device)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class FillAtClose(Execution):
    """Fill at the close of the decision day t."""

    fill = "close"

    def price_table(self, close: torch.Tensor, open: torch.Tensor) -> torch.Tensor:  # noqa: A002
        # The close table itself, not a copy: the simulator then fills at the close row it has
        # already read to value the portfolios, with no second read per step.
        return close


class FillAtNextOpen(Execution):
    """Fill at the open of day t+1, the first price after the decision."""

    fill = "next_open"

    def price_table(self, close: torch.Tensor, open: torch.Tensor) -> torch.Tensor:  # noqa: A002
        # The last row is a placeholder: no step starts on the last day, so it is never read.
        return torch.cat([open[1:], open[-1:]], dim=0)


@dataclass
class IntradayFills:
    """What an intraday executor returns for B portfolios' parent orders over N stocks."""

    shares: torch.Tensor  # [B, N] signed shares executed (+ bought, - sold); may fall short of the order
    average_price: torch.Tensor  # [B, N] volume-weighted price of the child fills
    costs: torch.Tensor  # [B] commission + half-spread + market impact paid, in cash


class IntradaySchedule(Execution):
    """The contract of an intraday executor (not implemented yet: see `HRPM_ISSUE`).

    An implementation receives, per decision, the parent orders ``[B, N]`` (signed shares, after the
    simulator's caps: no shorting, no borrowing), the intraday bars of the execution day
    ``[B, K, N, F]`` (K bars of open, high, low, close, volume: day t+1 for a decision at the close
    of t, or day t itself for an intraday decision) and the arrival price ``[B, N]`` (the price
    when the order is handed over, the benchmark of implementation shortfall). It splits each order
    into child orders over the bars, completes it by the last bar, and returns `IntradayFills`.
    Portfolios are valued at the real daily close; only execution prices come from the bars.
    """

    fill = "intraday"

    @abstractmethod
    def execute(
        self, parent_orders: torch.Tensor, bars: torch.Tensor, arrival_price: torch.Tensor
    ) -> IntradayFills:
        """Fills and costs of `parent_orders` executed over `bars` (see the class docstring)."""

    def price_table(self, close: torch.Tensor, open: torch.Tensor) -> torch.Tensor:  # noqa: A002
        raise NotImplementedError(
            f"{type(self).__name__}: the simulator cannot run an intraday execution schedule yet; the "
            f"intraday bars and the step that feeds them to an executor come with {HRPM_ISSUE}. "
            "Use fill='close' or fill='next_open' until then."
        )


DAILY_EXECUTIONS: dict[str, type[Execution]] = {"close": FillAtClose, "next_open": FillAtNextOpen}


def execution_for(fill: str) -> Execution:
    """The execution a `SimulatorConfig.fill` name selects."""
    if fill not in DAILY_EXECUTIONS:
        raise UserError(f"unknown fill {fill!r}; choose from {', '.join(map(repr, DAILY_EXECUTIONS))}")
    return DAILY_EXECUTIONS[fill]()


__all__ = [
    "DAILY_EXECUTIONS",
    "Execution",
    "FillAtClose",
    "FillAtNextOpen",
    "IntradayFills",
    "IntradaySchedule",
    "execution_for",
]
