"""Honest evaluation: metrics, the day-by-day backtest, and its result object."""

from trustfolio.evaluation.backtest import Observation, Policy, backtest
from trustfolio.evaluation.metrics import METRIC_NAMES, compute_metrics
from trustfolio.evaluation.result import BacktestResult

__all__ = ["METRIC_NAMES", "BacktestResult", "Observation", "Policy", "backtest", "compute_metrics"]
