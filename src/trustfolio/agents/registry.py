"""Agents by name: the table of trainable agents, their configs by budget, and named market states.

This module imports no agent (and no torch) until one is asked for, so listing the agents or
checking an experiment file is instant. Each agent's budgets live in its own file, as its class
attribute `budgets`:

- ``quick``: seconds on the embedded sp500 data (what `trustfolio run` and CI use);
- ``cpu``: a serious run on CSI (88 stocks) within minutes per seed on 2 cores;
- ``paper``: paper-like sizes (MetaTrader's Table 5; FinRL's SAC/DDPG settings; the CQL authors').

A budget is a config preset, overridden field by field by a config file or mapping (`resolve_config`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from trustfolio.errors import UserError

#: Agent name -> (``"module:Class"``, one-line description).
AGENTS: dict[str, tuple[str, str]] = {
    "sac": ("trustfolio.agents.sac:SACAgent", "FinRL-SAC: soft actor-critic on raw features (OHLCV + 8 indicators)"),
    "ddpg": ("trustfolio.agents.ddpg:DDPGAgent", "FinRL-DDPG: deep deterministic policy gradient on raw features"),
    "stockformer": (
        "trustfolio.agents.stockformer:StockFormerAgent",
        "StockFormer: SAC on the three frozen encoder branches (relational, 5-day and 1-day predictors)",
    ),
    "sarl": (
        "trustfolio.agents.sarl:SARLAgent",
        "SARL: SAC on raw features augmented with predicted 1-day and 5-day returns (light encoder)",
    ),
    "cql": ("trustfolio.agents.cql:CQLAgent", "CQL: SAC with the conservative Q penalty (CQL(H), fixed weight 1) on raw features"),
    "iql": ("trustfolio.agents.iql:IQLAgent", "IQL: expectile value (0.7) and advantage-weighted SAC actor (beta 3) on raw features"),
    "metatrader": (
        "trustfolio.agents.metatrader:MetaTraderAgent",
        "MetaTrader: bilevel SAC on transformed data (F1-F3) with the worst-case TD target, then bilevel finetuning",
    ),
}  # fmt: skip

#: Market states selectable by name instead of the agent's own (`Agent.market_states`):
#: name -> ``"module:function"`` of a builder ``(panel, train_start, train_end) -> MarketStates``.
STATE_BUILDERS: dict[str, str] = {"raw": "trustfolio.agents.registry:raw_states"}


def register_agent(name: str, target: str | type, description: str, *, replace: bool = False) -> None:
    """Make an agent trainable by name (``trustfolio train``) and usable as a runner method
    (``methods: [{name: NAME, config: {budget: quick}}]``); `target` is the class or its
    ``"module:Class"`` path (imported when first used)."""
    if name in AGENTS and not replace:
        raise ValueError(f"agent {name!r} is already registered; pass replace=True to override it")
    path = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"
    AGENTS[name] = (path, description)


def agent_class(name: str) -> type:
    """The class of agent `name` (imported now); a `UserError` lists the known names."""
    if name not in AGENTS:
        raise UserError(f"unknown agent {name!r}; choose one of {', '.join(AGENTS)}")
    return _import(AGENTS[name][0])


def resolve_config(name: str, budget: str = "quick", config: Any = None):
    """The config of agent `name`: its `budget` preset, then the fields of `config` (a mapping, a
    YAML/JSON file path, or an `AgentConfig`, which is used as is)."""
    cls = agent_class(name)
    if isinstance(config, cls.config_class):
        return config
    where = "config"
    if isinstance(config, str | Path):
        where, config = str(config), _read_config_file(Path(config))
    if config is not None and not isinstance(config, dict):
        raise UserError(f"{where}: expected a mapping of config fields, got {config!r}")
    overrides = dict(config or {})
    budget = overrides.pop("budget", budget)  # a config file may name its base budget
    if budget not in cls.budgets:
        raise UserError(f"{where}: unknown budget {budget!r} for {name}; choose one of {', '.join(cls.budgets)}")
    return cls.config_class.from_dict({**cls.budgets[budget], **overrides}, where=where)


def state_builder(kind: str) -> Callable:
    """The market-state builder registered as `kind`."""
    if kind not in STATE_BUILDERS:
        raise UserError(f"unknown market states {kind!r}; choose one of {', '.join(STATE_BUILDERS)}")
    return _import(STATE_BUILDERS[kind])


def raw_states(panel, train_start: Any, train_end: Any):
    """FinRL-style states: normalized OHLCV + the 8 indicators, normalizer fitted on the training window."""
    from trustfolio.data.features import build_features

    return build_features(panel, train_start=train_start, train_end=train_end).market_states()


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text())  # JSON is YAML, so this reads both
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML/JSON ({' '.join(str(exc).split())})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a mapping of config fields, got {type(values).__name__}")
    return values


def _import(target: str) -> Any:
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


__all__ = ["AGENTS", "STATE_BUILDERS", "agent_class", "register_agent", "resolve_config", "state_builder"]
