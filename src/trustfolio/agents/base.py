"""The common agent API: `AgentConfig`, `AgentData`, `Agent`, `TrainSummary` and the `AgentPolicy` adapter.

An agent trades share orders ``a ∈ [-1, 1]^N`` (times ``hmax`` shares, the simulator's ``"shares"``
mode) from one flat **observation** per portfolio and day:

    obs_t = [ h[t] flattened (N·D) ‖ cash_t / initial_cash ‖ w_t (N) ]

where ``h[t]`` is the action-free market state of day ``t`` (`MarketStates`, e.g. the normalized
OHLCV + indicators of `FeatureSet.market_states()`), and ``w_t = holdings · close[t] / value`` are
the portfolio weights. The N + 1 balance features are the balance state ``z_t`` of the paper
(cash and holdings), made scale-free. Training runs in `trustfolio.agents.training`; an algorithm
(one file each: `sac.py`, `ddpg.py`, …) only says how to build its networks, how to act and how to
update from a replay batch.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from trustfolio.data.features import MarketStates, build_features
from trustfolio.data.panel import Panel
from trustfolio.errors import DataError, UserError
from trustfolio.market.simulator import SimulatorConfig

CHECKPOINT_FORMAT = 1


# ---------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class AgentConfig:
    """What every off-policy agent shares: network sizes, rollouts, replay, updates, monitoring.

    Steps are *environment steps*: one step moves all `num_envs` portfolios one day, giving
    `num_envs` transitions, and is followed by `updates_per_step` gradient updates.
    """

    hidden_sizes: tuple[int, ...] = (256, 256)
    gamma: float = 0.99
    tau: float = 0.005  # Polyak factor of the target networks
    num_envs: int = 16  # portfolios stepped together, each from its own random start day
    episode_length: int = 60  # trading days per episode; every portfolio restarts after it
    reward_scale: float = 100.0  # reward = daily return x this (100: percent)
    buffer_size: int = 100_000  # transitions kept in the replay buffer
    batch_size: int = 256
    learning_starts: int = 100  # env steps of uniform random actions before the first update
    updates_per_step: int = 1
    steps: int = 10_000  # env steps of `fit`
    finetune_steps: int = 0  # env steps of `finetune` (0: no finetuning)
    validation_days: int = 60  # last days of the training span: held out, for the evaluation callback
    eval_every: int = 1_000  # env steps between evaluations on the validation days (0: never)
    checkpoint_every: int = 1_000  # env steps between checkpoints
    log_every: int = 100  # env steps between rows of progress.csv

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        if not self.hidden_sizes or min(self.hidden_sizes) < 1:
            raise UserError(f"{type(self).__name__}: hidden_sizes must be positive, got {self.hidden_sizes}")
        at_least_one = (
            "num_envs",
            "episode_length",
            "buffer_size",
            "batch_size",
            "updates_per_step",
            "checkpoint_every",
            "log_every",
        )
        at_least_zero = ("learning_starts", "steps", "finetune_steps", "validation_days", "eval_every")
        for name in (*at_least_one, *at_least_zero):
            value, low = getattr(self, name), 1 if name in at_least_one else 0
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise UserError(
                    f"{type(self).__name__}: {name} must be a whole number >= {low}, got {value!r}"
                )
        if not 0.0 <= self.gamma < 1.0 or not 0.0 < self.tau <= 1.0 or not self.reward_scale > 0:
            raise UserError(f"{type(self).__name__}: need 0 <= gamma < 1, 0 < tau <= 1 and reward_scale > 0")

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


def observation_dim(n_stocks: int, n_features: int) -> int:
    """Length of an observation: market state (N·D), cash share (1), weights (N)."""
    return n_stocks * n_features + 1 + n_stocks


def balance_features(cash: torch.Tensor, weights: torch.Tensor, initial_cash: float) -> torch.Tensor:
    """``[cash / initial_cash ‖ weights]`` as float32 ``[B, N + 1]`` (cash ``[B]``, weights ``[B, N]``)."""
    return torch.cat([(cash / initial_cash).unsqueeze(-1), weights], dim=-1).float()


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
    """An off-policy learner. Subclasses set `name`, `config_class`, `log_keys` and implement
    `build` (networks and optimizers as attributes), `act` and `update`.

    Everything learned is found by attribute: every `nn.Module`, `torch.optim.Optimizer` and tensor
    attribute goes into checkpoints and `save` (so a subclass cannot forget one), together with the
    agent's random generator and its update counter.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[AgentConfig]] = AgentConfig
    log_keys: ClassVar[tuple[str, ...]] = ()  # keys of `update`'s result, logged to progress.csv
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
        self.trained_with: dict[str, Any] | None = None  # execution settings and tickers (set by fit)
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
        """Share orders ``[B, N]`` in ``[-1, 1]`` for observations ``[B, obs_dim]`` (no gradient)."""

    @abstractmethod
    def update(self, batch: Any) -> dict[str, torch.Tensor]:
        """One gradient update from a replay `Batch`; returns detached scalars named in `log_keys`."""

    @classmethod
    def market_states(
        cls, panel: Panel, train_start: Any, train_end: Any, config: AgentConfig, **options: Any
    ) -> MarketStates:
        """The market states this agent reads, for the whole `panel`, fitted on the training window
        only. Default: FinRL-style raw features (normalized OHLCV + the 8 indicators; `options`
        such as ``progress`` are for encoder-based states); agents on encoder states (StockFormer,
        SARL) override this."""
        return build_features(panel, train_start=train_start, train_end=train_end).market_states()

    # ------------------------------------------------------------------ training
    def fit(
        self,
        data: AgentData,
        *,
        steps: int | None = None,
        seed: int | None = None,
        out_dir: str | Path,
        resume: bool = True,
        progress: bool = True,
    ) -> TrainSummary:
        """Train on ``data`` for `steps` env steps (default `config.steps`), checkpointing into `out_dir`.

        With ``resume=True`` a checkpoint in `out_dir` from an interrupted call with the same
        settings is continued, and the result is the same as an uninterrupted run.
        """
        from trustfolio.agents.training import train_off_policy

        steps = self.config.steps if steps is None else steps
        return train_off_policy(
            self,
            data,
            steps=steps,
            seed=self.seed if seed is None else seed,
            out_dir=Path(out_dir),
            resume=resume,
            progress=progress,
            phase="fit",
        )

    def finetune(
        self,
        data: AgentData,
        *,
        steps: int | None = None,
        seed: int | None = None,
        out_dir: str | Path,
        resume: bool = True,
        progress: bool = True,
    ) -> TrainSummary:
        """Continue training on ``data`` (e.g. the last year before the test) with a fresh replay
        buffer, for `steps` env steps (default `config.finetune_steps`)."""
        from trustfolio.agents.training import train_off_policy

        steps = self.config.finetune_steps if steps is None else steps
        return train_off_policy(
            self,
            data,
            steps=steps,
            seed=self.seed if seed is None else seed,
            out_dir=Path(out_dir),
            resume=resume,
            progress=progress,
            phase="finetune",
        )

    def policy(self, states: MarketStates, name: str | None = None) -> AgentPolicy:
        """A backtest `Policy` that trades this agent's deterministic action on `states`."""
        return AgentPolicy(self, states, name or self.name)

    # ------------------------------------------------------------------ state
    def learner_state(self) -> dict[str, Any]:
        """Networks, optimizers and tensors (by attribute name), the generator state, the update count."""
        state: dict[str, Any] = {"updates": self.updates, "generator": self.generator.get_state()}
        for attribute, value in vars(self).items():
            if isinstance(value, nn.Module | torch.optim.Optimizer):
                state[attribute] = value.state_dict()
            elif isinstance(value, torch.Tensor):
                state[attribute] = value.detach().clone()
        return state

    def load_learner_state(self, state: dict[str, Any]) -> None:
        """Inverse of `learner_state` (exact: a restored agent continues bit for bit)."""
        for attribute, value in vars(self).items():
            if isinstance(value, nn.Module | torch.optim.Optimizer):
                value.load_state_dict(state[attribute])
            elif isinstance(value, torch.Tensor):
                with torch.no_grad():
                    value.copy_(state[attribute])
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
            "learner": self.learner_state(),
        }
        save_atomic(payload, Path(path))

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> Agent:
        """An agent written by `save` (``torch.load(weights_only=True)``: no code is unpickled)."""
        payload = load_checkpoint(Path(path), device)
        agent_class = Agent.classes.get(payload.get("agent"))
        if agent_class is None or not issubclass(agent_class, cls):
            raise UserError(f"{path}: holds a {payload.get('agent')!r} agent, not a {cls.__name__}")
        config = agent_class.config_class.from_dict(payload["config"], where=str(path))
        agent = agent_class(
            payload["n_stocks"], payload["n_features"], config, seed=payload["seed"], device=device
        )
        agent.load_learner_state(payload["learner"])
        agent.trained_with = payload["trained_with"]
        return agent


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """`torch.save` to a temporary file beside `path`, then rename: a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with a `UserError` for a missing or foreign file."""
    if not path.is_file():
        raise UserError(f"{path}: no such checkpoint file")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise UserError(f"{path}: not a trustfolio checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path}: not a trustfolio checkpoint of format {CHECKPOINT_FORMAT}")
    return payload


# ---------------------------------------------------------------------------------------- policy
class AgentPolicy:
    """A trained agent as a backtest `Policy` (``"shares"`` orders, deterministic action).

    `act` reads ``h[obs.t]`` from `states`, which must be aligned with the backtest's panel (same
    dates; checked on every call) and hold the stocks the agent was trained on. The backtest must
    execute as training did: same initial cash (checked on the first day, since cash is divided by
    it) and same ``hmax`` (not visible to a policy: `initial_cash` and `hmax` are exposed here so
    callers can pass them to `backtest`).
    """

    order_mode = "shares"

    def __init__(self, agent: Agent, states: MarketStates, name: str) -> None:
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
        balance = np.concatenate([[obs.cash / self.initial_cash], obs.weights]).astype(np.float32)
        x = torch.cat([self.market[obs.t], torch.from_numpy(balance).to(self.agent.device)]).unsqueeze(0)
        with torch.inference_mode():
            action = self.agent.act(x, deterministic=True)[0]
        return action.cpu().numpy().astype(np.float64)


__all__ = [
    "Agent",
    "AgentConfig",
    "AgentData",
    "AgentPolicy",
    "TrainSummary",
    "balance_features",
    "load_checkpoint",
    "observation_dim",
    "save_atomic",
]
