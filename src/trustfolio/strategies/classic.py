"""Classic non-learning portfolios in target-weights mode: market, 1/N, buy-and-hold, momentum.

Every strategy is a `trustfolio.evaluation.backtest.Policy`: `act(obs)` sees only `obs.history`
(data up to the close of day ``t``) and its own balance, and returns target weights ``[N]``
(>= 0, sum <= 1, the rest stays in cash). A strategy that does not want to trade on a day returns
``obs.weights``, the weights it already holds, so that it keeps its shares.
"""

from __future__ import annotations

import numpy as np

from trustfolio.data.panel import Panel
from trustfolio.errors import UserError
from trustfolio.evaluation.backtest import Observation


def equal_weights(n_stocks: int) -> np.ndarray:
    return np.full(n_stocks, 1.0 / n_stocks)


class EqualWeight:
    """1/N rebalanced every day (DeMiguel, Garlappi & Uppal 2009): the honest bar to beat."""

    name = "equal-weight"
    order_mode = "weights"

    def reset(self) -> None:
        pass

    def act(self, obs: Observation) -> np.ndarray:
        return equal_weights(len(obs.holdings))


class BuyAndHold:
    """Equal weights bought on the first day of the backtest, then held (weights drift with prices)."""

    name = "buy-and-hold"
    order_mode = "weights"

    def __init__(self) -> None:
        self._bought = False

    def reset(self) -> None:
        self._bought = False

    def act(self, obs: Observation) -> np.ndarray:
        if self._bought:
            return obs.weights
        self._bought = True
        return equal_weights(len(obs.holdings))


class Market(BuyAndHold):
    """The market: the dataset's benchmark index when it has one (the backtest is the index level
    itself: no trades, no costs); otherwise an equal-weight buy-and-hold "market proxy" (the CSI
    data carries no index, so the paper's market baseline is approximated and labelled as such)."""

    name = "market"

    def index_level(self, panel: Panel) -> np.ndarray | None:
        return panel.benchmark

    def label(self, panel: Panel) -> str:
        if panel.benchmark is None:
            return "market proxy (equal-weight buy-and-hold)"
        index = panel.benchmark_name or "benchmark"
        return f"market ({index})" if index.lower().endswith("index") else f"market ({index} index)"


class Momentum:
    """Cross-sectional momentum: every `rebalance_every` days, hold the `top_k` stocks with the
    highest trailing return over `lookback` days, equally weighted; hold in between.

    Defaults: ``lookback=126`` (about six months, a common medium-term momentum horizon),
    ``top_k = max(1, N // 5)`` (the top quintile), ``rebalance_every=21`` (monthly). With less history
    than `lookback` days, the return is measured from the first available day. Ties are broken by
    ticker order (stable sort), so decisions are deterministic.
    """

    name = "momentum"
    order_mode = "weights"

    def __init__(self, lookback: int = 126, top_k: int | None = None, rebalance_every: int = 21) -> None:
        if lookback < 1 or rebalance_every < 1 or (top_k is not None and top_k < 1):
            raise UserError("momentum: lookback, top_k and rebalance_every must be positive")
        self.lookback = lookback
        self.top_k = top_k
        self.rebalance_every = rebalance_every
        self._days = 0

    def reset(self) -> None:
        self._days = 0

    def act(self, obs: Observation) -> np.ndarray:
        due = self._days % self.rebalance_every == 0
        self._days += 1
        if not due:
            return obs.weights
        close = obs.history.close
        past = close[max(0, len(close) - 1 - self.lookback)].astype(np.float64)
        trailing = close[-1].astype(np.float64) / past - 1.0
        n_stocks = close.shape[1]
        k = min(n_stocks, self.top_k if self.top_k is not None else max(1, n_stocks // 5))
        winners = np.argsort(-trailing, kind="stable")[:k]
        weights = np.zeros(n_stocks)
        weights[winners] = 1.0 / k
        return weights
