"""Honest evaluation: metrics, the day-by-day backtest, its result object, and the critic's
value-overestimation diagnostic."""

from trustfolio.evaluation.backtest import Observation, Policy, backtest
from trustfolio.evaluation.metrics import METRIC_NAMES, compute_metrics
from trustfolio.evaluation.overestimation import OverestimationResult, has_critic, value_overestimation
from trustfolio.evaluation.result import BacktestResult

__all__ = [
    "METRIC_NAMES",
    "BacktestResult",
    "Observation",
    "OverestimationResult",
    "Policy",
    "backtest",
    "compute_metrics",
    "has_critic",
    "value_overestimation",
]
