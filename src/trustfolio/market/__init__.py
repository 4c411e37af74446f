"""Market dynamics: the price path, order execution, the batched trading simulator, and its
Gymnasium wrapper.

- `MarketPath` — the price tables a simulator steps on, from a `Panel` or from plain arrays
  (e.g. MetaTrader's transformed subsets laid end to end);
- `Execution` — where an order decided at the close of day t fills: `FillAtClose`,
  `FillAtNextOpen`, and the `IntradaySchedule` slot for intraday executors (HRPM issue);
- `execute_orders` / `target_weights_to_orders` — the fill arithmetic (no shorting, no borrowing,
  costs, lots) shared by every execution;
- `Simulator` — B portfolios stepped at once on one path (`reset`, `step`, `restore`);
- `TradingEnv` — one portfolio as a Gymnasium env, observing what the agents observe
  (`trustfolio.market.observation`).
"""

from trustfolio.market.env import TradingEnv, default_market_features
from trustfolio.market.execution import (
    Execution,
    FillAtClose,
    FillAtNextOpen,
    IntradayFills,
    IntradaySchedule,
    execution_for,
)
from trustfolio.market.orders import execute_orders, target_weights_to_orders
from trustfolio.market.path import MarketPath
from trustfolio.market.simulator import BalanceState, Simulator, SimulatorConfig, StepResult

__all__ = [
    "BalanceState",
    "Execution",
    "FillAtClose",
    "FillAtNextOpen",
    "IntradayFills",
    "IntradaySchedule",
    "MarketPath",
    "Simulator",
    "SimulatorConfig",
    "StepResult",
    "TradingEnv",
    "default_market_features",
    "execute_orders",
    "execution_for",
    "target_weights_to_orders",
]
