"""trustfolio: robust reinforcement-learning portfolio optimization.

Leak-free market data (`trustfolio.data`), a batched trading simulator (`trustfolio.market`),
classic portfolios (`trustfolio.strategies`) and honest backtests (`trustfolio.evaluation`).

The everyday entry points are importable from here::

    from trustfolio import load_dataset, clean, backtest, make_strategy, Comparison

They are imported when first used (`trustfolio.lazy`), so ``import trustfolio`` stays light (no torch).
"""

from trustfolio.errors import DataError, TrustfolioError, UserError
from trustfolio.lazy import lazy_attributes

__version__ = "0.1.0"

#: Public name -> the module (under `trustfolio`) that defines it.
EXPORTS = {
    "load_dataset": "data.loaders",
    "clean": "data.cleaning",
    "Panel": "data.panel",
    "make_strategy": "strategies",
    "backtest": "evaluation.backtest",
    "BacktestResult": "evaluation.result",
    "Comparison": "evaluation.comparison",
    "run_experiment": "runner",
    "train_agent": "agent_runs",
    "evaluate_run": "agent_runs",
}

__getattr__ = lazy_attributes(__name__, EXPORTS)


def __dir__() -> list[str]:
    return sorted([*globals(), *EXPORTS])


__all__ = ["DataError", "TrustfolioError", "UserError", "__version__", *EXPORTS]
