"""The composition root: every strategy, predictor and agent registered as a runner method, here and only here.

A method is what one runner job runs — something that turns a window's data into a `Policy`. It is
named in an experiment file (``methods: [{name: momentum, config: {window: 126}}]``) and built with
`make_method(name, config)`:

- the classic strategies (`trustfolio.strategies`) only look back at prices, so `build_policy` just
  constructs them and fits nothing;
- the predict-then-hold baselines fit a return predictor on the training window;
- the learning agents (`trustfolio.agents.registry.AGENTS`, plus any added with `register_agent`)
  train on the window with `trustfolio.agent_runs.AgentMethod`; they are imported when first built,
  so listing methods or parsing an experiment file imports no agent and no torch.

A method's `build_policy` may fit on the panel's days in ``window.train`` (and ``window.finetune``,
and select on ``window.validation``) only; the panel it receives ends on the window's last test day
because the backtest needs the test prices, not because the method may look at them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from trustfolio.agents.registry import AGENTS
from trustfolio.data.panel import Panel
from trustfolio.errors import UserError
from trustfolio.evaluation.backtest import Policy
from trustfolio.evaluation.protocols import Window
from trustfolio.strategies import STRATEGIES, make_strategy
from trustfolio.strategies.predict_then_hold import PREDICT_HOLD_METHODS, make_predict_hold_method


@runtime_checkable
class Method(Protocol):
    """Builds the policy that a job backtests on the window's test days."""

    name: str
    deterministic: bool  # True: every seed gives the same result, so the runner runs seed 0 only

    # Optional: a method whose use of the seed depends on the data (e.g. predict-hold-gbm, seeded only
    # above 200,000 training rows) also defines ``deterministic_on(window, dates, n_stocks) -> bool``,
    # which the runner asks for each window (`is_deterministic`).

    def build_policy(self, panel: Panel, window: Window, seed: int, work_dir: Path) -> Policy:
        """Fit on ``window.train`` (+ ``finetune``/``validation``) days of `panel` only, with all
        randomness drawn from `seed`; `work_dir` is scratch space for checkpoints and logs."""
        ...


#: Method name -> one-line description (what `trustfolio` lists to users); agents are added below.
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


def is_method(name: str) -> bool:
    """Whether `name` is a method (a registered one, or an agent), without building or importing it."""
    return name in _FACTORIES or name in AGENTS


def make_method(name: str, config: dict[str, Any] | None = None) -> Method:
    """The method registered as `name`, configured with `config` (None = its defaults)."""
    if name not in _FACTORIES and name in AGENTS:  # an agent added with `register_agent` after import
        register_method(name, _agent_method(name), AGENTS[name][1])
    if name not in _FACTORIES:
        raise UserError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    if config is not None and not isinstance(config, dict):
        raise UserError(f"method {name!r}: config must be a mapping of options, not {config!r}")
    return _FACTORIES[name](dict(config or {}))


def is_deterministic(method: Method, window: Window, dates=None, n_stocks: int | None = None) -> bool:
    """Whether every seed gives `method` the same result on `window`: its `deterministic` flag, or,
    when the panel's `dates` and (upper bound on the) `n_stocks` are known and the method can tell from
    them, its ``deterministic_on(window, dates, n_stocks)``."""
    decide = getattr(method, "deterministic_on", None)
    if bool(method.deterministic) or decide is None or dates is None or n_stocks is None:
        return bool(method.deterministic)
    return bool(decide(window, dates, n_stocks))


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

# Predict-then-hold baselines (paper category D): each fits a return predictor on the training window.
for _name, (_predictor, _description) in PREDICT_HOLD_METHODS.items():
    register_method(_name, lambda config, name=_name: make_predict_hold_method(name, config), _description)


# The learning agents: trained on each window by `AgentMethod` (imported, with torch, when first built).
def _agent_method(name: str) -> Callable[[dict[str, Any]], Method]:
    def factory(config: dict[str, Any]) -> Method:
        from trustfolio.agent_runs import AgentMethod

        return AgentMethod(name, config)

    return factory


for _name, (_target, _description) in AGENTS.items():
    register_method(_name, _agent_method(_name), _description)

__all__ = [
    "METHODS",
    "Method",
    "StrategyMethod",
    "is_deterministic",
    "is_method",
    "make_method",
    "register_method",
]
