"""Market dynamics: the batched trading simulator and its Gymnasium wrapper."""

from trustfolio.market.env import TradingEnv, default_market_features
from trustfolio.market.simulator import (
    BalanceState,
    Simulator,
    SimulatorConfig,
    StepResult,
    execute_orders,
    target_weights_to_orders,
)

__all__ = [
    "BalanceState",
    "Simulator",
    "SimulatorConfig",
    "StepResult",
    "TradingEnv",
    "default_market_features",
    "execute_orders",
    "target_weights_to_orders",
]
