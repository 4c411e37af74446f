"""Non-learning portfolios: market, 1/N, buy-and-hold, minimum variance, maximum Sharpe, momentum.

`make_strategy(name, **kwargs)` builds one by its command-line name; `STRATEGIES` describes them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from trustfolio.errors import UserError
from trustfolio.evaluation.backtest import Policy
from trustfolio.strategies.classic import BuyAndHold, EqualWeight, Market, Momentum
from trustfolio.strategies.mean_variance import MeanVariance

#: Command-line name -> one-line description.
STRATEGIES: dict[str, str] = {
    "market": "the dataset's benchmark index, else an equal-weight buy-and-hold 'market proxy'",
    "equal-weight": "1/N: equal weights, rebalanced every day",
    "buy-and-hold": "equal weights bought on the first day, then held",
    "min-variance": "long-only minimum variance (skfolio), refitted every 21 days on 252 days",
    "max-sharpe": "long-only maximum Sharpe ratio (skfolio), refitted every 21 days on 252 days",
    "momentum": "top N//5 stocks by 126-day return, equal-weighted, rebalanced every 21 days",
}

_FACTORIES: dict[str, Callable[..., Policy]] = {
    "market": Market,
    "equal-weight": EqualWeight,
    "buy-and-hold": BuyAndHold,
    "min-variance": lambda **kw: MeanVariance("min-variance", **kw),
    "max-sharpe": lambda **kw: MeanVariance("max-sharpe", **kw),
    "momentum": Momentum,
}


def make_strategy(name: str, **kwargs: Any) -> Policy:
    """The strategy called `name` (a key of `STRATEGIES`), built with `kwargs` (e.g. ``window=126``)."""
    if name not in _FACTORIES:
        raise UserError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    try:
        return _FACTORIES[name](**kwargs)
    except TypeError as exc:
        raise UserError(f"strategy {name!r}: bad options {sorted(kwargs)} ({exc})") from exc


__all__ = ["STRATEGIES", "BuyAndHold", "EqualWeight", "Market", "MeanVariance", "Momentum", "make_strategy"]
