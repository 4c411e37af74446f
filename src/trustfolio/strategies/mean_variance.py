"""Mean-variance portfolios with skfolio: minimum variance and maximum Sharpe ratio, long-only.

Every `refit_every` trading days the strategy fits skfolio's `MeanRisk` on the daily close-to-close
returns of the trailing `window` days of its history (days up to ``t`` only) and rebalances to the
fitted weights; in between it holds. A failed fit (solver error, or maximum Sharpe when every
expected return is negative) keeps the previous target weights (1/N before the first success) and
warns, instead of stopping a backtest.
"""

from __future__ import annotations

import warnings

import numpy as np
from skfolio.optimization import MeanRisk, ObjectiveFunction

from trustfolio.errors import UserError
from trustfolio.evaluation.backtest import Observation
from trustfolio.strategies.classic import equal_weights


class MeanVariance:
    """Long-only mean-variance portfolio refitted on a trailing window (see the module docstring).

    ``objective="min-variance"`` minimizes variance; ``"max-sharpe"`` maximizes the ratio of
    expected return to standard deviation (risk-free 0). Fewer than `min_history` past returns → 1/N.
    """

    OBJECTIVES = {
        "min-variance": ObjectiveFunction.MINIMIZE_RISK,
        "max-sharpe": ObjectiveFunction.MAXIMIZE_RATIO,
    }
    order_mode = "weights"

    def __init__(
        self,
        objective: str = "min-variance",
        window: int = 252,
        refit_every: int = 21,
        min_history: int = 60,
    ) -> None:
        if objective not in self.OBJECTIVES:
            raise UserError(f"objective must be one of {', '.join(self.OBJECTIVES)}, not {objective!r}")
        if window < 2 or refit_every < 1 or min_history < 2:
            raise UserError("mean-variance: window and min_history must be >= 2, refit_every >= 1")
        self.name = objective
        self.objective = objective
        self.window = window
        self.refit_every = refit_every
        self.min_history = min(min_history, window)
        self._days = 0
        self._target: np.ndarray | None = None

    def reset(self) -> None:
        self._days = 0
        self._target = None

    def act(self, obs: Observation) -> np.ndarray:
        due = self._days % self.refit_every == 0
        self._days += 1
        if not due:
            return obs.weights
        self._target = self.fit_weights(obs.history.close, obs.history.tickers, obs.date)
        return self._target

    def fit_weights(self, close: np.ndarray, tickers=None, date=None) -> np.ndarray:
        """Weights fitted on the returns of the last `window` days of `close` (``float32[t+1, N]``);
        `tickers` and `date` only word the warning of a failed fit."""
        n_stocks = close.shape[1]
        fallback = self._target if self._target is not None else equal_weights(n_stocks)
        prices = close[-(self.window + 1) :].astype(np.float64)
        if len(prices) - 1 < self.min_history:
            return equal_weights(n_stocks)
        returns = prices[1:] / prices[:-1] - 1.0
        model = MeanRisk(objective_function=self.OBJECTIVES[self.objective], raise_on_failure=True)
        try:
            model.fit(returns)
            weights = np.asarray(model.weights_, dtype=np.float64)
        except Exception as exc:  # noqa: BLE001 - any solver failure must not stop a backtest
            warnings.warn(self._failure(exc, returns, tickers, date), stacklevel=2)
            return fallback
        if not np.isfinite(weights).all():
            where = "" if date is None else f" on {date}"
            warnings.warn(f"{self.name}{where}: skfolio returned non-finite weights; keeping the previous weights",
                          stacklevel=2)  # fmt: skip
            return fallback
        # The solver's weights can be a hair negative or sum to 1 + 1e-15: make them a valid order.
        weights = np.clip(weights, 0.0, None)
        return weights / max(1.0, weights.sum())

    def _failure(self, exc: Exception, returns: np.ndarray, tickers, date) -> str:
        """One line: the day, and the stocks whose price did not move over the window (a variance of 0,
        which skfolio cannot fit) by ticker, else skfolio's own message on one line."""
        where = "" if date is None else f" on {date}"
        flat = np.flatnonzero(~(np.nanstd(returns, axis=0) > 0))
        if len(flat) and tickers is not None:
            names = [str(tickers[j]) for j in flat[:5]] + ([f"{len(flat) - 5} more"] if len(flat) > 5 else [])
            reason = f"the price of {', '.join(names)} did not move over the {len(returns)}-day window"
        else:
            reason = " ".join(str(exc).split())
        return f"{self.name}{where}: skfolio fit failed ({reason}); keeping the previous weights"
