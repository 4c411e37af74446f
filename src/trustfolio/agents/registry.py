"""Agents by name, their budgets, `train_agent` / `evaluate_run`, and the agents as runner methods.

Budgets are config presets, overridden field by field by a config file or mapping:

- ``quick``: seconds on the embedded sp500 data (what `trustfolio run` and CI use);
- ``cpu``: a serious run on CSI (88 stocks) within minutes per seed on 2 cores;
- ``paper``: paper-like sizes — MetaTrader's 30k training and 5k finetuning steps with B = 32
  portfolios and 256-unit layers (Table 5), FinRL's SAC/DDPG batch sizes, buffers and learning
  rates (StockFormer's SAC used FinRL's: batch 64, buffer 100k, lr 1e-4, ``ent_coef="auto_0.1"``).

A run directory written by `train_agent`:

    run.json          what was trained: agent, dataset, windows, config, seed, execution settings
    fit/              checkpoint.pt (resumable), progress.csv, eval.csv   (finetune/ likewise)
    agent.pt          the trained agent (`Agent.load`)
    metrics.json      written by `evaluate_run`: {"strategies": {name: {CR, AR, SR, MDD, …}}, …}
    overestimation.json, overestimation.png
                      written by `evaluate_run` for agents with a critic: its estimate against the
                      realized discounted return on the test days (`trustfolio.evaluation.overestimation`)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trustfolio.agents.base import Agent, AgentConfig, AgentData
from trustfolio.agents.cql import CQLAgent
from trustfolio.agents.ddpg import DDPGAgent
from trustfolio.agents.iql import IQLAgent
from trustfolio.agents.metatrader import MetaTraderAgent
from trustfolio.agents.sac import SACAgent
from trustfolio.agents.sarl import SARLAgent
from trustfolio.agents.stockformer import StockFormerAgent
from trustfolio.data.cleaning import clean
from trustfolio.data.features import MarketStates, build_features
from trustfolio.data.loaders import load_dataset
from trustfolio.data.panel import Panel, to_day
from trustfolio.errors import UserError
from trustfolio.evaluation.protocols import Window
from trustfolio.market.simulator import SimulatorConfig
from trustfolio.methods import register_method

#: Agent name -> (class, one-line description).
AGENTS: dict[str, tuple[type[Agent], str]] = {}
#: Agent name -> budget name -> config fields that differ from the agent's defaults.
BUDGETS: dict[str, dict[str, dict[str, Any]]] = {}
#: Market states selectable by name instead of the agent's own (`Agent.market_states`):
#: name -> builder(panel, train_start, train_end).
STATE_BUILDERS: dict[str, Callable[[Panel, Any, Any], MarketStates]] = {}

_COMMON_BUDGETS: dict[str, dict[str, Any]] = {
    "quick": dict(
        hidden_sizes=(64, 64),
        num_envs=8,
        episode_length=40,
        steps=600,
        finetune_steps=100,
        batch_size=64,
        buffer_size=20_000,
        learning_starts=50,
        validation_days=60,
        eval_every=200,
        checkpoint_every=200,
        log_every=50,
    ),
    "cpu": dict(
        hidden_sizes=(256, 256),
        num_envs=16,
        episode_length=120,
        steps=5_000,
        finetune_steps=1_000,
        batch_size=128,
        buffer_size=200_000,
        learning_starts=100,
        validation_days=120,
        eval_every=500,
        checkpoint_every=500,
        log_every=100,
    ),
    "paper": dict(
        hidden_sizes=(256, 256),
        num_envs=32,
        episode_length=64,
        steps=30_000,
        finetune_steps=5_000,
        buffer_size=100_000,
        learning_starts=100,
        validation_days=120,
        eval_every=2_000,
        checkpoint_every=2_000,
        log_every=200,
    ),
}
_PAPER_SAC = dict(batch_size=64, actor_lr=1e-4, critic_lr=1e-4, alpha_lr=1e-4)  # FinRL SAC_PARAMS
_PAPER_DDPG = dict(batch_size=128, buffer_size=50_000, actor_lr=1e-3, critic_lr=1e-3)  # FinRL DDPG_PARAMS
_PAPER_CQL = dict(actor_lr=1e-4, critic_lr=3e-4, alpha_lr=1e-4)  # the CQL authors' (batch: default 256)

#: Windows used when `train_agent` is given no dates: the papers' for known datasets, else the
#: first 80% of the days.
DEFAULT_WINDOWS = {
    "csi88": {"train": ("2011-01-17", "2018-12-31"), "finetune": ("2018-01-04", "2018-12-31")},
    "sp500": {"train": ("2010-01-01", "2019-12-31")},
}
RUN_FILE, AGENT_FILE, METRICS_FILE = "run.json", "agent.pt", "metrics.json"
OVERESTIMATION_JSON, OVERESTIMATION_PNG = "overestimation.json", "overestimation.png"


def register_agent(
    name: str,
    agent_class: type[Agent],
    description: str,
    budgets: dict[str, dict[str, Any]],
    *,
    replace: bool = False,
) -> None:
    """Make an agent trainable by name (`train_agent`, ``trustfolio train``) and usable as a runner
    method (``methods: [{name: sac, config: {budget: quick}}]``)."""
    AGENTS[name] = (agent_class, description)
    BUDGETS[name] = budgets
    register_method(name, lambda config: AgentMethod(name, config), description, replace=replace)


def register_states(name: str, builder: Callable[[Panel, Any, Any], MarketStates]) -> None:
    """Make a market-state builder selectable as ``states: NAME`` (encoders register theirs)."""
    STATE_BUILDERS[name] = builder


def raw_states(panel: Panel, train_start: Any, train_end: Any) -> MarketStates:
    """FinRL-style states: normalized OHLCV + the 8 indicators, normalizer fitted on the training window."""
    return build_features(panel, train_start=train_start, train_end=train_end).market_states()


# ---------------------------------------------------------------------------------------- configs
def resolve_config(name: str, budget: str = "quick", config: Any = None) -> AgentConfig:
    """The config of agent `name`: its `budget` preset, then the fields of `config` (a mapping, a
    YAML/JSON file path, or an `AgentConfig`, which is used as is)."""
    agent_class = agent_class_of(name)
    if isinstance(config, AgentConfig):
        return config
    where = "config"
    if isinstance(config, str | Path):
        where, config = str(config), _read_config_file(Path(config))
    if config is not None and not isinstance(config, dict):
        raise UserError(f"{where}: expected a mapping of config fields, got {config!r}")
    overrides = dict(config or {})
    budget = overrides.pop("budget", budget)  # a config file may name its base budget
    if budget not in BUDGETS[name]:
        raise UserError(
            f"{where}: unknown budget {budget!r} for {name}; choose one of {', '.join(BUDGETS[name])}"
        )
    return agent_class.config_class.from_dict({**BUDGETS[name][budget], **overrides}, where=where)


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


def agent_class_of(name: str) -> type[Agent]:
    if name not in AGENTS:
        raise UserError(f"unknown agent {name!r}; choose one of {', '.join(AGENTS)}")
    return AGENTS[name][0]


def default_hmax(panel: Panel, train_start: Any, train_end: Any, initial_cash: float) -> float:
    """Shares per unit of order such that a full order (1.0) of a median-priced stock (training-window
    prices) is worth 1/N of the capital, in whole lots: one step can build a 1/N position."""
    i0, i1 = panel.span(train_start, train_end)
    lot = panel.calendar.lot_size
    shares = initial_cash / (panel.N * float(np.median(panel.close[i0:i1])))
    return float(max(lot, round(shares / lot) * lot))


# ---------------------------------------------------------------------------------------- train / evaluate
def train_agent(
    name: str,
    dataset: str | Panel,
    *,
    config: Any = None,
    budget: str = "quick",
    seed: int = 0,
    steps: int | None = None,
    out_dir: str | Path,
    train_start: Any = None,
    train_end: Any = None,
    finetune_start: Any = None,
    finetune_end: Any = None,
    initial_cash: float = 1e6,
    hmax: float | None = None,
    cost_bps: float = 10.0,
    states: str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """Train agent `name` on `dataset`'s training window (then finetune, if a finetune window is
    given or known for the dataset); returns the run directory `out_dir`.

    Rerunning the same call resumes from the last checkpoint (a killed run loses at most
    `checkpoint_every` steps) and gives the same agent as an uninterrupted run.
    """
    config = resolve_config(name, budget, config)
    if steps is not None:
        config = replace(config, steps=steps)
    raw = dataset if isinstance(dataset, Panel) else load_dataset(dataset)
    windows = _windows(raw, train_start, train_end, finetune_start, finetune_end)
    (t0, t1), finetune = windows["train"], windows.get("finetune")
    last_day = max(t1, finetune[1]) if finetune else t1
    panel, _ = clean(raw.slice(None, last_day), train_start=t0, train_end=t1)
    market_states = _build_states(states, AGENTS[name][0], config, panel, t0, t1)
    sim = SimulatorConfig(
        initial_cash=initial_cash,
        cost_bps=cost_bps,
        hmax=hmax if hmax is not None else default_hmax(panel, t0, t1, initial_cash),
    )
    run_dir = Path(out_dir)
    run = {
        "agent": name,
        "dataset": dataset if isinstance(dataset, str) else raw.name,
        "budget": budget,
        "config": config.to_dict(),
        "seed": seed,
        "states": states,
        "device": device,
        "train": [str(t0), str(t1)],
        "finetune": [str(d) for d in finetune] if finetune else None,
        "sim": {"initial_cash": sim.initial_cash, "hmax": sim.hmax, "cost_bps": sim.cost_bps},
        "tickers": list(panel.tickers),
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(run_dir / RUN_FILE, json.dumps(run, indent=2))
    agent = AGENTS[name][0](panel.N, market_states.h.shape[2], config, seed=seed, device=device)
    agent.fit(
        AgentData.between(panel, market_states, t0, t1, sim),
        seed=seed,
        out_dir=run_dir / "fit",
        progress=progress,
    )
    if finetune and config.finetune_steps > 0:
        data = AgentData.between(panel, market_states, *finetune, sim)
        agent.finetune(data, seed=seed, out_dir=run_dir / "finetune", progress=progress)
    agent.save(run_dir / AGENT_FILE)
    return run_dir


def evaluate_run(
    run_dir: str | Path,
    dataset: str | Panel | None = None,
    start: Any = None,
    end: Any = None,
    *,
    cost_bps: float = 10.0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Backtest a trained run on ``[start, end]`` (default: from the day after its last training day
    to the end of the data) with costs (`cost_bps`, 100-share lots on CSI) and without, beside 1/N;
    writes and returns ``metrics.json`` ``{"strategies": {...}, "strategies_no_costs": {...}, …}``.
    For an agent with a critic, the value-overestimation diagnostic of the same days (with costs)
    is written too and summarized under ``"overestimation"``."""
    from trustfolio.evaluation.backtest import backtest
    from trustfolio.evaluation.overestimation import has_critic, value_overestimation
    from trustfolio.strategies import make_strategy

    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file() or not (run_dir / AGENT_FILE).is_file():
        raise UserError(
            f"{run_dir}: not a finished training run (needs {RUN_FILE} and {AGENT_FILE}); train it first"
        )
    run = json.loads((run_dir / RUN_FILE).read_text())
    agent = Agent.load(run_dir / AGENT_FILE, device=device)
    raw = dataset if isinstance(dataset, Panel) else load_dataset(dataset or run["dataset"])
    learned_until = to_day(max(run["train"][1], (run["finetune"] or run["train"])[1]))
    start = to_day(start) if start is not None else learned_until + 1
    if start <= learned_until:
        raise UserError(
            f"{run_dir}: the evaluation starts on {start}, but the agent learned from days up to "
            f"{learned_until}; evaluate after its training window"
        )
    panel, _ = clean(raw.slice(None, end), train_start=run["train"][0], train_end=run["train"][1])
    if list(panel.tickers) != run["tickers"]:
        raise UserError(
            f"{run_dir}: cleaning {panel.name} keeps other stocks than the {len(run['tickers'])} the "
            "agent was trained on; evaluate on the dataset it was trained on"
        )
    market_states = _build_states(run["states"], type(agent), agent.config, panel, *run["train"])
    policy = agent.policy(market_states, name=run["agent"])
    execution = dict(initial_cash=run["sim"]["initial_cash"], hmax=run["sim"]["hmax"], round_lots=True)
    document: dict[str, Any] = {"strategies": {}, "strategies_no_costs": {}}
    for key, cost in (("strategies", cost_bps), ("strategies_no_costs", 0.0)):
        for strategy in (policy, make_strategy("equal-weight")):
            result = backtest(strategy, panel, start, end, cost_bps=cost, **execution)
            document[key][strategy.name] = result.metrics()
            if strategy is policy and key == "strategies":
                result.save(run_dir / "backtest")
    if has_critic(agent):
        i0, i1 = panel.span(start, end)
        diagnostic = value_overestimation(
            agent,
            panel,
            market_states,
            i0,
            i1 - 1,
            initial_cash=execution["initial_cash"],
            hmax=execution["hmax"],
            cost_bps=cost_bps,
        )
        diagnostic.to_json(run_dir / OVERESTIMATION_JSON)
        diagnostic.plot(run_dir / OVERESTIMATION_PNG)
        document["overestimation"] = diagnostic.summary(nan_as_none=True)
    document.update(
        {
            "start": str(result.dates[0]),
            "end": str(result.dates[-1]),
            "cost_bps": cost_bps,
            "lots": True,
            "agent": run["agent"],
            "seed": run["seed"],
            "dataset": run["dataset"],
        }
    )
    _write_atomic(run_dir / METRICS_FILE, json.dumps(document, indent=2, default=_json_default))
    return document


def _windows(panel: Panel, train_start, train_end, finetune_start, finetune_end) -> dict[str, tuple]:
    """Training (and finetuning) windows as trading days: given, else `DEFAULT_WINDOWS`, else 80%."""
    known = DEFAULT_WINDOWS.get(panel.name, {})
    if train_start is None and train_end is None:
        train = known.get("train") or (panel.dates[0], panel.dates[int(0.8 * (panel.T - 1))])
        finetune = known.get("finetune") if finetune_start is None and finetune_end is None else None
    else:
        train, finetune = (train_start, train_end), None
    if finetune_start is not None or finetune_end is not None:
        finetune = (finetune_start, finetune_end)
    windows = {"train": _span_days(panel, *train)}
    if finetune:
        windows["finetune"] = _span_days(panel, *finetune)
    return windows


def _span_days(panel: Panel, start, end) -> tuple[np.datetime64, np.datetime64]:
    i0, i1 = panel.span(start, end)
    return panel.dates[i0], panel.dates[i1 - 1]


def _build_states(
    kind: str | None,
    agent_class: type[Agent],
    config: AgentConfig,
    panel: Panel,
    train_start,
    train_end,
    progress: bool = True,
) -> MarketStates:
    """The agent's own market states (`kind` None), or the ones registered as `kind`."""
    if kind is None:
        return agent_class.market_states(panel, train_start, train_end, config, progress=progress)
    if kind not in STATE_BUILDERS:
        raise UserError(f"unknown market states {kind!r}; choose one of {', '.join(STATE_BUILDERS)}")
    return STATE_BUILDERS[kind](panel, train_start, train_end)


def _json_default(value: Any) -> Any:
    return None if isinstance(value, float) and np.isnan(value) else str(value)


def _write_atomic(target: Path, text: str) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, target)


# ---------------------------------------------------------------------------------------- runner methods
@dataclass
class AgentMethod:
    """An agent as a runner method. Config: ``budget`` (quick/cpu/paper), ``states`` (default: the
    agent's own, `Agent.market_states`; or a name registered with `register_states`, e.g. ``raw``),
    ``initial_cash`` — the capital the agent trains with, which must equal the experiment's
    ``backtest`` option (default 1e6, the backtest's default; a mismatch is refused on the first
    test day) — ``hmax`` (default: `default_hmax`, a full order buys about 1/N of the capital; the
    backtest trades the policy's own hmax), ``cost_bps`` of training (10),
    ``device``, and any field of the agent's config."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    deterministic: bool = False

    def __post_init__(self) -> None:
        settings = dict(self.options)
        self.budget = settings.pop("budget", "quick")
        self.states = settings.pop("states", None)
        self.initial_cash = float(settings.pop("initial_cash", 1e6))
        hmax = settings.pop("hmax", None)
        self.hmax = None if hmax is None else float(hmax)
        self.cost_bps = float(settings.pop("cost_bps", 10.0))
        self.device = settings.pop("device", "cpu")
        self.config = resolve_config(self.name, self.budget, settings)  # bad fields fail now
        if self.states is not None and self.states not in STATE_BUILDERS:
            raise UserError(
                f"{self.name}: unknown states {self.states!r}; choose one of {', '.join(STATE_BUILDERS)}"
            )

    def build_policy(self, panel: Panel, window: Window, seed: int, work_dir: Path):
        """Train on ``window.train`` (then finetune on ``window.finetune``), checkpointing in `work_dir`."""
        agent_class = AGENTS[self.name][0]
        states = _build_states(  # no progress bars inside runner workers
            self.states, agent_class, self.config, panel, window.train_start, window.train_end, progress=False
        )
        hmax = self.hmax
        if hmax is None:
            hmax = default_hmax(panel, window.train_start, window.train_end, self.initial_cash)
        sim = SimulatorConfig(initial_cash=self.initial_cash, hmax=hmax, cost_bps=self.cost_bps)
        agent = agent_class(panel.N, states.h.shape[2], self.config, seed=seed, device=self.device)
        train = AgentData.between(panel, states, window.train_start, window.train_end, sim)
        agent.fit(train, seed=seed, out_dir=Path(work_dir) / "fit", progress=False)
        if window.finetune_start is not None and self.config.finetune_steps > 0:
            finetune = AgentData.between(panel, states, window.finetune_start, window.finetune_end, sim)
            agent.finetune(finetune, seed=seed, out_dir=Path(work_dir) / "finetune", progress=False)
        return agent.policy(states, name=self.name)


register_states("raw", raw_states)
register_agent(
    "sac",
    SACAgent,
    "FinRL-SAC: soft actor-critic on raw features (OHLCV + 8 indicators)",
    {b: {**c, **(_PAPER_SAC if b == "paper" else {})} for b, c in _COMMON_BUDGETS.items()},
)
register_agent(
    "ddpg",
    DDPGAgent,
    "FinRL-DDPG: deep deterministic policy gradient on raw features",
    {b: {**c, **(_PAPER_DDPG if b == "paper" else {})} for b, c in _COMMON_BUDGETS.items()},
)
# StockFormer's encoder follows the budget: quick = a tiny transformer, cpu = the release's sizes with
# a CPU-sized pretraining schedule, paper = the release's schedule (`EncoderConfig.preset`).
register_agent(
    "stockformer",
    StockFormerAgent,
    "StockFormer: SAC on the three frozen encoder branches (relational, 5-day and 1-day predictors)",
    {
        b: {**c, **(_PAPER_SAC if b == "paper" else {}), "encoder_budget": b}
        for b, c in _COMMON_BUDGETS.items()
    },
)
# SARL's light predictor is cheap enough for the release's full pretraining schedule beyond quick.
_SARL_PREDICTOR = {"quick": "quick", "cpu": "paper", "paper": "paper"}
register_agent(
    "sarl",
    SARLAgent,
    "SARL: SAC on raw features augmented with predicted 1-day and 5-day returns (light encoder)",
    {
        b: {**c, **(_PAPER_SAC if b == "paper" else {}), "predictor_budget": _SARL_PREDICTOR[b]}
        for b, c in _COMMON_BUDGETS.items()
    },
)
# CQL and IQL, the paper's offline-RL baselines: SAC's actor/critic networks (MetaTrader's), trained in
# the same partial-offline loop; the `paper` budget takes their authors' learning rates (IQL's defaults).
register_agent(
    "cql",
    CQLAgent,
    "CQL: SAC with the conservative Q penalty (CQL(H), fixed weight 1) on raw features",
    {b: {**c, **(_PAPER_CQL if b == "paper" else {})} for b, c in _COMMON_BUDGETS.items()},
)
register_agent(
    "iql",
    IQLAgent,
    "IQL: expectile value (0.7) and advantage-weighted SAC actor (beta 3) on raw features",
    {b: dict(c) for b, c in _COMMON_BUDGETS.items()},
)
# MetaTrader: `paper` is Table 5 (K = B = 32, M = 216, T = 64, hidden 256, 30k + 5k steps, the
# StockFormer release's encoder); `cpu` is the most faithful setting that trains one seed of the CSI
# offline protocol in <= 30 min on 2 cores (measured, BENCHMARKS.md); `quick` is for demos and CI.
_METATRADER_BUDGETS: dict[str, dict[str, Any]] = {
    "quick": dict(
        hidden_sizes=(64, 64), num_envs=8, steps=60, finetune_steps=20, batch_size=16,
        subsets_per_step=4, slices=8, slice_length=24, finetune_slices=4, subset_buffer_size=64,
        validation_days=60, eval_every=30, checkpoint_every=30, log_every=10,
        encoder_budget="quick", encoder_kind="light", encoder={"out_dim": 4},
    ),
    "cpu": dict(
        hidden_sizes=(256, 256), num_envs=16, steps=2_400, finetune_steps=500, batch_size=32,
        subsets_per_step=8, slices=54, slice_length=64, finetune_slices=16, subset_buffer_size=256,
        validation_days=120, eval_every=250, checkpoint_every=250, log_every=50,
        encoder_budget="cpu", encoder_kind="light", encoder={"out_dim": 8},
    ),
    "paper": dict(
        hidden_sizes=(256, 256), num_envs=32, steps=30_000, finetune_steps=5_000, batch_size=32,
        subsets_per_step=32, slices=216, slice_length=64, finetune_slices=32, subset_buffer_size=256,
        validation_days=120, eval_every=2_000, checkpoint_every=500, log_every=100,
        encoder_budget="paper", encoder_kind="stockformer",
    ),
}  # fmt: skip
register_agent(
    "metatrader",
    MetaTraderAgent,
    "MetaTrader: bilevel SAC on transformed data (F1-F3) with the worst-case TD target, then bilevel finetuning",
    _METATRADER_BUDGETS,
)

__all__ = [
    "AGENTS",
    "BUDGETS",
    "DEFAULT_WINDOWS",
    "STATE_BUILDERS",
    "AgentMethod",
    "default_hmax",
    "evaluate_run",
    "raw_states",
    "register_agent",
    "register_states",
    "resolve_config",
    "train_agent",
]
