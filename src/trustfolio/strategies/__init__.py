"""Non-learning portfolios: market, 1/N, buy-and-hold, minimum variance, maximum Sharpe, momentum.

`make_strategy(name, **kwargs)` builds one by its command-line name; `STRATEGIES` describes them.
"""

from __future__ import annotations

import inspect
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

# Command-line name -> (class, the arguments the name fixes). A user may set any other parameter of
# the class's constructor; `strategy_parameters` lists them.
_FACTORIES: dict[str, tuple[type, dict[str, Any]]] = {
    "market": (Market, {}),
    "equal-weight": (EqualWeight, {}),
    "buy-and-hold": (BuyAndHold, {}),
    "min-variance": (MeanVariance, {"objective": "min-variance"}),
    "max-sharpe": (MeanVariance, {"objective": "max-sharpe"}),
    "momentum": (Momentum, {}),
}


def strategy_parameters(name: str) -> tuple[str, ...]:
    """The parameters a user may give the strategy called `name` (its constructor's, minus fixed ones)."""
    cls, fixed = _factory(name)
    parameters = inspect.signature(cls).parameters
    return tuple(p for p in parameters if p not in fixed and parameters[p].kind is not inspect.Parameter.VAR_KEYWORD)


def make_strategy(name: str, **kwargs: Any) -> Policy:
    """The strategy called `name` (a key of `STRATEGIES`), built with `kwargs` (e.g. ``window=126``)."""
    cls, fixed = _factory(name)
    valid = strategy_parameters(name)
    unknown = [key for key in kwargs if key not in valid]
    if unknown:
        allowed = f"valid parameters: {', '.join(valid)}" if valid else "it takes no parameters"
        raise UserError(f"strategy {name!r}: bad options {', '.join(unknown)}; {allowed}")
    try:
        return cls(**fixed, **kwargs)
    except TypeError:  # a value of the wrong type, e.g. lookback='long'
        given = ", ".join(f"{key}={value!r}" for key, value in kwargs.items())
        raise UserError(f"strategy {name!r}: bad option values {given}; give whole numbers of days") from None


def _factory(name: str) -> tuple[type, dict[str, Any]]:
    if name not in _FACTORIES:
        raise UserError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
    return _FACTORIES[name]


__all__ = [
    "STRATEGIES",
    "BuyAndHold",
    "EqualWeight",
    "Market",
    "MeanVariance",
    "Momentum",
    "make_strategy",
    "strategy_parameters",
]
