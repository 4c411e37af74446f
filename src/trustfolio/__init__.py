"""trustfolio: robust reinforcement-learning portfolio optimization.

Leak-free market data (`trustfolio.data`), a batched trading simulator (`trustfolio.market`),
classic portfolios (`trustfolio.strategies`) and honest backtests (`trustfolio.evaluation`).
"""

from trustfolio.errors import DataError, TrustfolioError, UserError

__version__ = "0.1.0"
__all__ = ["DataError", "TrustfolioError", "UserError", "__version__"]
