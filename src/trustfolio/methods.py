"""Methods: what one runner job runs — something that turns a window's data into a `Policy`.

A method is named in an experiment file (``methods: [{name: momentum, config: {window: 126}}]``)
and built here with `make_method(name, config)`. The classic strategies are registered below; they
only look back at prices, so `build_policy` just constructs them and fits nothing. Learning agents
(later issues) register themselves with `register_method` from their own module:

    register_method("sac", lambda config: SACMethod(**config), "FinRL-style SAC on StockFormer states")

A method's `build_policy` may fit on the panel's days in ``window.train`` (and ``window.finetune``,
and select on ``window.validation``) only; the panel it receives ends on the window's last test day
because the backtest needs the test prices, not because the method may look at them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from trustfolio.data.panel import Panel
from trustfolio.errors import UserError
from trustfolio.evaluation.backtest import Policy
from trustfolio.evaluation.protocols import Window
from trustfolio.strategies import STRATEGIES, make_strategy


@runtime_checkable
class Method(Protocol):
    """Builds the policy that a job backtests on the window's test days."""

    name: str
    deterministic: bool  # True: every seed gives the same result, so the runner runs seed 0 only

    def build_policy(self, panel: Panel, window: Window, seed: int, work_dir: Path) -> Policy:
        """Fit on ``window.train`` (+ ``finetune``/``validation``) days of `panel` only, with all
        randomness drawn from `seed`; `work_dir` is scratch space for checkpoints and logs."""
        ...


#: Method name -> one-line description (what `trustfolio` lists to users).
METHODS: dict[str, str] = {}
_FACTORIES: dict[str, Callable[[dict[str, Any]], Method]] = {}


def register_method(
    name: str, factory: Callable[[dict[str, Any]], Method], description: str, *, replace: bool = False
) -> None:
    """Make `name` usable in experiment files: ``factory(config)`` returns the `Method`.

    The factory should reject a bad config with `UserError` (the runner builds every method once
    before any job starts, so mistakes surface immediately). Registering a taken name raises
    `ValueError` unless ``replace=True``.
    """
    if name in _FACTORIES and not replace:
        raise ValueError(f"method {name!r} is already registered; pass replace=True to override it")
    METHODS[name] = description
    _FACTORIES[name] = factory


def make_method(name: str, config: dict[str, Any] | None = None) -> Method:
    """The method registered as `name`, configured with `config` (None = its defaults)."""
    if name not in _FACTORIES:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    if config is not None and not isinstance(config, dict):
        raise UserError(f"method {name!r}: config must be a mapping of options, not {config!r}")
    return _FACTORIES[name](dict(config or {}))


@dataclass
class StrategyMethod:
    """A classic strategy as a method: nothing to fit, every seed gives the same result."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    deterministic: bool = True

    def __post_init__(self) -> None:
        make_strategy(self.name, **self.config)  # bad options fail now, before any job runs

    def build_policy(self, panel: Panel, window: Window, seed: int, work_dir: Path) -> Policy:
        """The strategy itself: it only ever looks back from the day it trades."""
        return make_strategy(self.name, **self.config)


for _name, _description in STRATEGIES.items():
    register_method(
        _name, lambda config, name=_name: StrategyMethod(name, config), f"classic: {_description}"
    )

__all__ = ["METHODS", "Method", "StrategyMethod", "make_method", "register_method"]

# Predict-then-hold baselines (paper category D): each fits a return predictor on the training window.
from trustfolio.strategies.predict_then_hold import PREDICT_HOLD_METHODS, make_predict_hold_method  # noqa: E402

for _name, (_predictor, _description) in PREDICT_HOLD_METHODS.items():
    register_method(_name, lambda config, name=_name: make_predict_hold_method(name, config), _description)

# The learning agents register themselves ("sac", "ddpg", …). Imported last, once register_method
# exists, so the import cycle (the registry imports this module) resolves either way round.
import trustfolio.agents.registry  # noqa: E402, F401
