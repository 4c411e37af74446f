"""The minimal agent contract: `AgentConfig`, `AgentData`, `Agent`, `TrainSummary`, `AgentPolicy`.

Every learner is an `Agent`: a config dataclass (with its ``quick``/``cpu``/``paper`` budgets as the
class attribute `budgets`), `market_states` (the action-free states it reads, fitted on the training
window only), ``learn(data, phase=..., steps=..., out_dir=..., resume=...)`` (`fit` and `finetune`
are its two phases), `policy` (a backtest `Policy`), `save` / `load`. Layers add the machinery of a
family of learners: `trustfolio.agents.off_policy.OffPolicyAgent` (replay buffer, ``build`` / ``act``
/ ``update(batch)``, the off-policy loop); a population or a two-level agent is an `Agent` with its
own `learn`, run inside the one training harness (`trustfolio.agents.harness`).

Agents trade from one flat observation per portfolio and day (`trustfolio.market.observation`):
``[h[t] flattened ‖ cash / initial_cash ‖ weights]``. An agent with a critic exposes
``critic_value(obs, action)`` (what diagnostics such as the value-overestimation check read).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from trustfolio.agents.harness import (
    CHECKPOINT_FORMAT,
    capture,
    is_learned,
    load_checkpoint,
    restore,
    save_atomic,
)
from trustfolio.agents.registry import AGENTS
from trustfolio.agents.registry import agent_class as registered_class
from trustfolio.data.features import MarketStates, build_features
from trustfolio.data.panel import Panel
from trustfolio.errors import DataError, UserError
from trustfolio.market.observation import balance_features, observation, observation_dim
from trustfolio.market.simulator import SimulatorConfig

PHASES = ("fit", "finetune")


# ---------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class AgentConfig:
    """What every agent's config has: its training length and its monitoring schedule.

    A *step* is the agent's unit of training (an environment step of all its portfolios for the
    off-policy agents, a generation for a population, …); `fit` runs `steps`, `finetune` runs
    `finetune_steps`. Subclasses add their fields and validate them in `__post_init__`.
    """

    steps: int = 10_000  # steps of `fit`
    finetune_steps: int = 0  # steps of `finetune` (0: no finetuning)
    validation_days: int = 60  # last days of the training span: held out, for the evaluation callback
    eval_every: int = 1_000  # steps between evaluations on the validation days (0: never)
    checkpoint_every: int = 1_000  # steps between checkpoints
    log_every: int = 100  # steps between rows of progress.csv

    def __post_init__(self) -> None:
        self.check_whole_numbers(at_least_one=("checkpoint_every", "log_every"),
                                 at_least_zero=("steps", "finetune_steps", "validation_days", "eval_every"))  # fmt: skip

    def check_whole_numbers(self, *, at_least_one: tuple[str, ...] = (), at_least_zero: tuple[str, ...] = ()) -> None:
        """`UserError` naming the first of these fields that is not a whole number >= 1 (>= 0)."""
        for name in (*at_least_one, *at_least_zero):
            value, low = getattr(self, name), 1 if name in at_least_one else 0
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise UserError(
                    f"{type(self).__name__}: {name} must be a whole number >= {low}, got {value!r}"
                )

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> AgentConfig:
        """A config from plain values (a YAML/JSON mapping); unknown fields are a `UserError`."""
        if not isinstance(values, dict):
            raise UserError(f"{where}: expected a mapping of {cls.__name__} fields, got {values!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(
                f"{where}: unknown field(s) {', '.join(unknown)}; {cls.__name__} has {', '.join(sorted(known))}"
            )
        try:
            return cls(**values)
        except TypeError as exc:  # e.g. a string where a number belongs
            raise UserError(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class AgentData:
    """What an agent trains on: a clean panel, its market states (aligned day by day), the inclusive
    day-index span ``[start, end]`` it may use, and how orders execute."""

    panel: Panel
    states: MarketStates
    start: int
    end: int
    sim: SimulatorConfig = field(default_factory=SimulatorConfig)

    def __post_init__(self) -> None:
        panel, h = self.panel, self.states.h
        if not panel.is_clean:
            raise DataError(
                f"{panel.name}: agents need a clean panel; run trustfolio.data.cleaning.clean first"
            )
        if h.shape[:2] != (panel.T, panel.N) or not np.array_equal(self.states.dates, panel.dates):
            raise DataError(
                f"{panel.name}: market states of shape {h.shape[:2]} do not cover the panel's "
                f"{panel.T} days x {panel.N} stocks day by day; build them from this same panel"
            )
        if not 0 <= self.start < self.end < panel.T:
            raise UserError(
                f"{panel.name}: need 0 <= start < end < {panel.T}, got [{self.start}, {self.end}]"
            )

    @classmethod
    def between(
        cls, panel: Panel, states: MarketStates, start: Any, end: Any, sim: SimulatorConfig | None = None
    ) -> AgentData:
        """The data of the trading days in ``[start, end]`` (dates, inclusive)."""
        i0, i1 = panel.span(start, end)
        return cls(panel, states, i0, i1 - 1, sim or SimulatorConfig())

    @property
    def n_stocks(self) -> int:
        return self.panel.N

    @property
    def n_features(self) -> int:
        return self.states.h.shape[2]


@dataclass
class TrainSummary:
    """What a `fit`/`finetune` call did. `last_eval` holds the last validation metrics (CR, SR, …)."""

    agent: str
    phase: str  # "fit" or "finetune"
    steps: int
    transitions: int
    updates: int
    seconds: float  # training time, summed over resumed sessions
    resumed_from: int | None  # the checkpoint step this call started from (None: from scratch)
    last_eval: dict[str, float]
    out_dir: Path


# ---------------------------------------------------------------------------------------- agent
class Agent(ABC):
    """A learner. Subclasses set `name`, `config_class`, `budgets` (and `log_keys`, the keys of the
    rows they log), and implement `build` (networks and optimizers as attributes), `act` and `learn`.

    Everything learned is found by attribute: every `nn.Module`, `torch.optim.Optimizer`, tensor, and
    list/tuple/dict of them goes into checkpoints and `save` (so a subclass cannot forget one),
    together with the agent's random generator and its update counter.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[AgentConfig]] = AgentConfig
    #: budget name (quick / cpu / paper) -> the config fields that differ from the class's defaults
    budgets: ClassVar[dict[str, dict[str, Any]]] = {}
    order_mode: ClassVar[str] = "shares"  # what `act` returns: "shares" orders or target "weights"
    log_keys: ClassVar[tuple[str, ...]] = ()  # keys of the logged training rows (progress.csv)
    classes: ClassVar[dict[str, type[Agent]]] = {}  # agent name -> class (what `load` looks up)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            Agent.classes[cls.name] = cls

    def __init__(
        self,
        n_stocks: int,
        n_features: int,
        config: AgentConfig | None = None,
        *,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise UserError(
                f"{self.name}: config must be a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.n_stocks, self.n_features = int(n_stocks), int(n_features)
        self.obs_dim = observation_dim(self.n_stocks, self.n_features)
        self.action_dim = self.n_stocks
        self.device = torch.device(device)
        self.seed = int(seed)
        self.updates = 0  # gradient updates so far
        self.trained_with: dict[str, Any] | None = None  # execution settings and tickers (set by learn)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)
        # Network initialization draws from torch's global generator: fork it so the caller's is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.build()

    # ------------------------------------------------------------------ what an algorithm defines
    @abstractmethod
    def build(self) -> None:
        """Create the networks (moved to `self.device`) and their optimizers as attributes."""

    @abstractmethod
    def act(self, obs: torch.Tensor, *, deterministic: bool) -> torch.Tensor:
        """Actions ``[B, N]`` (share orders in ``[-1, 1]`` or target weights, see `order_mode`) for
        observations ``[B, obs_dim]``, without gradient."""

    @abstractmethod
    def learn(
        self,
        data: AgentData,
        *,
        phase: str,
        steps: int,
        seed: int,
        out_dir: Path,
        resume: bool = True,
        progress: bool = True,
    ) -> TrainSummary:
        """Train on ``data`` for `steps` steps of `phase` (``fit`` or ``finetune``) inside the
        training harness, checkpointing into `out_dir`; with ``resume=True`` a checkpoint of the
        same run is continued and the result equals an uninterrupted run."""

    @classmethod
    def market_states(
        cls, panel: Panel, train_start: Any, train_end: Any, config: AgentConfig, **options: Any
    ) -> MarketStates:
        """The market states this agent reads, for the whole `panel`, fitted on the training window
        only. Default: FinRL-style raw features (normalized OHLCV + the 8 indicators; `options`
        such as ``progress`` are for encoder-based states); agents on encoder states override this."""
        return build_features(panel, train_start=train_start, train_end=train_end).market_states()

    # ------------------------------------------------------------------ training: the two phases
    def fit(self, data: AgentData, *, steps: int | None = None, seed: int | None = None, out_dir: str | Path,
            resume: bool = True, progress: bool = True) -> TrainSummary:  # fmt: skip
        """Train on ``data`` for `steps` (default `config.steps`); see `learn`."""
        steps = self.config.steps if steps is None else steps
        return self._learn_phase("fit", data, steps, seed, out_dir, resume, progress)

    def finetune(self, data: AgentData, *, steps: int | None = None, seed: int | None = None,
                 out_dir: str | Path, resume: bool = True, progress: bool = True) -> TrainSummary:  # fmt: skip
        """Continue training on ``data`` (e.g. the last year before the test) for `steps` (default
        `config.finetune_steps`); see `learn`."""
        steps = self.config.finetune_steps if steps is None else steps
        return self._learn_phase("finetune", data, steps, seed, out_dir, resume, progress)

    def _learn_phase(self, phase, data, steps, seed, out_dir, resume, progress) -> TrainSummary:
        if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 0:
            raise UserError(f"{self.name} {phase}: steps must be a whole number >= 0, got {steps!r}")
        if (data.n_stocks, data.n_features) != (self.n_stocks, self.n_features):
            raise UserError(
                f"{self.name}: built for {self.n_stocks} stocks x {self.n_features} features, "
                f"the data have {data.n_stocks} x {data.n_features}"
            )
        seed = self.seed if seed is None else seed
        return self.learn(data, phase=phase, steps=int(steps), seed=seed, out_dir=Path(out_dir), resume=resume,
                          progress=progress)  # fmt: skip

    def policy(self, states: MarketStates, name: str | None = None) -> AgentPolicy:
        """A backtest `Policy` that trades this agent's deterministic action on `states`."""
        return AgentPolicy(self, states, name or self.name)

    def execution_facts(self, data: AgentData) -> dict[str, Any]:
        """What a trained agent must be backtested with (stored as `trained_with`)."""
        return {
            "initial_cash": data.sim.initial_cash,
            "hmax": data.sim.hmax,
            "cost_bps": data.sim.cost_bps,
            "fill": data.sim.fill,
            "tickers": list(data.panel.tickers),
            "columns": list(data.states.columns),
            "panel": data.panel.name,
        }

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything learned (by attribute name), the generator state and the update count."""
        state: dict[str, Any] = {"updates": self.updates, "generator": self.generator.get_state()}
        for attribute, value in vars(self).items():
            if is_learned(value):
                state[attribute] = capture(value)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Inverse of `state_dict` (exact: a restored agent continues bit for bit)."""
        for attribute, value in vars(self).items():
            if is_learned(value):
                restore(value, state[attribute])
        self.updates = int(state["updates"])
        self.generator.set_state(state["generator"].cpu())

    def save(self, path: str | Path) -> None:
        """Write the agent (config, sizes, learned state, execution settings) atomically."""
        payload = {
            "format": CHECKPOINT_FORMAT,
            "agent": self.name,
            "config": self.config.to_dict(),
            "n_stocks": self.n_stocks,
            "n_features": self.n_features,
            "seed": self.seed,
            "trained_with": self.trained_with,
            "learner": self.state_dict(),
        }
        save_atomic(payload, Path(path))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Agent:
        """An agent written by `save` (``torch.load(weights_only=True)``: no code is unpickled)."""
        payload = load_checkpoint(Path(path), device)
        name = payload.get("agent")
        if name not in Agent.classes and name in AGENTS:  # a registered agent whose module is not imported yet
            registered_class(name)
        agent_class = Agent.classes.get(name)
        if agent_class is None or not issubclass(agent_class, cls):
            raise UserError(f"{path}: holds a {payload.get('agent')!r} agent, not a {cls.__name__}")
        config = agent_class.config_class.from_dict(payload["config"], where=str(path))
        agent = agent_class(
            payload["n_stocks"], payload["n_features"], config, seed=payload["seed"], device=device
        )
        agent.load_state_dict(payload["learner"])
        agent.trained_with = payload["trained_with"]
        return agent


# ---------------------------------------------------------------------------------------- policy
class AgentPolicy:
    """A trained agent as a backtest `Policy` (the agent's `order_mode`, deterministic action).

    `act` reads ``h[obs.t]`` from `states`, which must be aligned with the backtest's panel (same
    dates; checked on every call) and hold the stocks the agent was trained on. The backtest must
    execute as training did: same initial cash (checked on the first day, since cash is divided by
    it) and same ``hmax`` (not visible to a policy: `initial_cash` and `hmax` are exposed here so
    callers can pass them to `backtest`).
    """

    def __init__(self, agent: Agent, states: MarketStates, name: str) -> None:
        self.order_mode = agent.order_mode
        T, N, D = states.h.shape
        if (N, D) != (agent.n_stocks, agent.n_features):
            raise DataError(
                f"{name}: market states have {N} stocks x {D} features, the agent was "
                f"trained on {agent.n_stocks} x {agent.n_features}"
            )
        trained = agent.trained_with or {}
        if trained.get("tickers") and list(states.tickers) != list(trained["tickers"]):
            raise DataError(f"{name}: the market states' stocks differ from the {N} the agent was trained on")
        self.name, self.agent, self.dates = name, agent, states.dates
        self.initial_cash = float(trained.get("initial_cash", SimulatorConfig().initial_cash))
        self.hmax = float(trained.get("hmax", SimulatorConfig().hmax))
        self.market = torch.tensor(states.h.reshape(T, N * D), device=agent.device)
        self._first_day = True

    def reset(self) -> None:
        self._first_day = True

    def act(self, obs: Any) -> np.ndarray:
        if obs.date != self.dates[obs.t]:
            raise DataError(
                f"{self.name}: market states are not aligned with the backtest panel "
                f"(day {obs.t} is {self.dates[obs.t]} in the states, {obs.date} in the panel)"
            )
        if self._first_day:
            self._first_day = False
            if abs(obs.value / self.initial_cash - 1.0) > 1e-9:
                raise UserError(
                    f"{self.name}: trained with initial cash {self.initial_cash:g}, backtested with "
                    f"{obs.value:g}; backtest with initial_cash={self.initial_cash:g} (in an experiment, "
                    "give the method the same initial_cash as the experiment's backtest options)"
                )
        cash = torch.tensor([obs.cash], dtype=torch.float64)
        weights = torch.as_tensor(obs.weights, dtype=torch.float64).unsqueeze(0)
        balance = balance_features(cash, weights, self.initial_cash)
        x = observation(self.market[obs.t].unsqueeze(0), balance.to(self.agent.device))
        with torch.inference_mode():
            action = self.agent.act(x, deterministic=True)[0]
        return action.cpu().numpy().astype(np.float64)


__all__ = ["PHASES", "Agent", "AgentConfig", "AgentData", "AgentPolicy", "TrainSummary"]
