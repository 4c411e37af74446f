"""Experiments: the YAML file that describes a study, and the independent jobs it expands to.

An experiment names a dataset, a protocol (its windows, `trustfolio.evaluation.protocols`), methods
with their configs (`trustfolio.methods`), seeds and cost multiples:

    name: quickstart
    dataset: sp500                       # any `load_dataset` spec: sp500, table:PATH, stockformer:PATH…
    protocol: {kind: offline, train: [2010-01-01, 2019-12-31], test: [2020-01-01, 2022-12-28]}
    methods: [equal-weight, {name: momentum, config: {lookback: 126}}]
    seeds: [0, 1, 2]                     # or a count: 3
    cost_bps: 10                         # per side; each job runs at cost_bps × one cost multiple
    cost_multiples: [1, 3, 5]
    reference: equal-weight              # what the statistics test the others against
    backtest: {initial_cash: 1000000}    # optional `backtest` options: initial_cash, fill, round_lots, hmax
    imports: [my_agents]                 # optional modules that register extra methods
    on_outliers: fail                    # one-day spikes / stale prices: fail (default) | warn | clip

It expands to one `JobSpec` per method × window × seed × cost multiple; deterministic methods (the
classic strategies, ridge predict-then-hold, and boosted trees on windows of at most 200,000
training rows) run on seed 0 only. `trustfolio.runner` runs the jobs.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trustfolio.agents.registry import AGENTS
from trustfolio.data.cleaning import OUTLIER_POLICIES
from trustfolio.errors import UserError
from trustfolio.evaluation.protocols import Window, resolve_protocol, windows_from_config
from trustfolio.methods import METHODS, is_deterministic, is_method, make_method
from trustfolio.rundir import safe_name

_BACKTEST_OPTIONS = {
    "initial_cash": (int, float),
    "fill": (str,),
    "round_lots": (bool,),
    "hmax": (int, float),
}
_REQUIRED = ("dataset", "protocol", "methods")


# ---------------------------------------------------------------------------------------- jobs
@dataclass(frozen=True)
class JobSpec:
    """One job: a method (with its config) on one window, one seed, one cost multiple."""

    method: str
    method_config: dict[str, Any]
    seed: int
    window: Window
    cost_bps: float  # the experiment's base cost per side; the backtest uses effective_cost_bps
    cost_multiple: float
    dataset: str
    deterministic: bool = False  # True: a seed-independent method, run on seed 0 only
    backtest: dict[str, Any] = field(default_factory=dict)  # extra `backtest` options
    on_outliers: str = "fail"  # what cleaning does with one-day spikes and stale prices (`clean`)

    @property
    def group_id(self) -> str:
        """Jobs with the same group id share one policy (they differ only in the cost multiple)."""
        return _safe(f"{self.method}--{self.window.name}--seed{self.seed}")

    @property
    def job_id(self) -> str:
        return _safe(f"{self.group_id}--x{self.cost_multiple:g}")

    @property
    def effective_cost_bps(self) -> float:
        return self.cost_bps * self.cost_multiple

    def to_dict(self) -> dict[str, Any]:
        """What `job.json` holds (plus the runner's cleaning and timing facts)."""
        out = {"job_id": self.job_id, **asdict(self), "window": self.window.to_dict()}
        return {**out, "effective_cost_bps": self.effective_cost_bps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        keys = (
            "method",
            "method_config",
            "seed",
            "cost_bps",
            "cost_multiple",
            "dataset",
            "deterministic",
            "backtest",
            "on_outliers",
        )
        return cls(window=Window.from_dict(data["window"]), **{k: data[k] for k in keys if k in data})


# ---------------------------------------------------------------------------------------- experiment
@dataclass
class Experiment:
    """What to run. Construct directly or with `from_yaml`; bad fields raise `UserError` naming them."""

    name: str
    dataset: str
    protocol: dict[str, Any]
    methods: list[dict[str, Any]]  # [{"name": ..., "config": {...}}]; plain names are accepted
    seeds: list[int] = field(default_factory=lambda: [0])  # an int n means [0, …, n-1]
    cost_bps: float = 10.0
    cost_multiples: list[float] = field(default_factory=lambda: [1.0])
    reference: str | None = "equal-weight"  # the method others are tested against (None: no tests)
    backtest: dict[str, Any] = field(default_factory=dict)  # initial_cash, fill, round_lots, hmax
    imports: list[str] = field(default_factory=list)  # modules that register extra methods
    on_outliers: str = "fail"  # cleaning's answer to one-day spikes and stale prices: fail | warn | clip

    def __post_init__(self) -> None:
        self.name = safe_name(self.name, "name")  # it names the run directory
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise UserError(
                f"dataset: expected a dataset spec like sp500 or table:PATH, got {self.dataset!r}"
            )
        self.protocol = resolve_protocol(self.protocol)
        self.imports = import_modules(self.imports)  # before the methods: they may register some
        self.methods = _check_methods(self.methods)
        self.seeds = _check_seeds(self.seeds)
        if isinstance(self.cost_bps, bool) or not isinstance(self.cost_bps, int | float) or self.cost_bps < 0:
            raise UserError(f"cost_bps: expected a number of basis points >= 0, got {self.cost_bps!r}")
        self.cost_bps = float(self.cost_bps)
        self.cost_multiples = _check_multiples(self.cost_multiples)
        names = [m["name"] for m in self.methods]
        if self.reference is not None and self.reference not in names:
            raise UserError(
                f"reference: {self.reference!r} is not among the methods ({', '.join(names)}); add it"
            )
        if self.on_outliers not in OUTLIER_POLICIES:
            raise UserError(f"on_outliers: expected one of {', '.join(OUTLIER_POLICIES)}, got {self.on_outliers!r}")
        self.backtest = _check_backtest(self.backtest)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Experiment:
        """Read an experiment file (``yaml.safe_load``); any bad field is one `UserError` line."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as exc:
            raise UserError(f"{path}: cannot read the experiment file ({exc.strerror})") from None
        except yaml.YAMLError as exc:
            where = getattr(exc, "problem_mark", None)
            line = f" at line {where.line + 1}" if where is not None else ""
            raise UserError(f"{path}: not valid YAML{line} ({getattr(exc, 'problem', exc)})") from None
        return cls.from_dict(data, source=str(path), default_name=path.stem)

    @classmethod
    def from_dict(
        cls, data: Any, *, source: str = "experiment", default_name: str = "experiment"
    ) -> Experiment:
        """Build from a parsed mapping; errors are prefixed with `source` (the file)."""
        if not isinstance(data, dict):
            raise UserError(f"{source}: expected a mapping of fields ({', '.join(_REQUIRED)}, …)")
        allowed = list(cls.__dataclass_fields__)
        unknown = [k for k in data if k not in allowed]
        if unknown:
            raise UserError(f"{source}: unknown field {unknown[0]!r}; allowed fields: {', '.join(allowed)}")
        missing = [k for k in _REQUIRED if data.get(k) is None]
        if missing:
            raise UserError(f"{source}: missing field {missing[0]!r}")
        try:
            return cls(**{"name": default_name, **data})
        except UserError as exc:
            raise UserError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The resolved experiment (what `experiment.yaml` in a run directory holds)."""
        return asdict(self)

    def build_methods(self) -> dict[str, Any]:
        """Every method built once (its options checked; agents and torch imported now): name -> `Method`."""
        built = {}
        for i, entry in enumerate(self.methods):
            try:
                built[entry["name"]] = make_method(entry["name"], entry["config"])
            except UserError as exc:
                raise UserError(f"methods[{i}]: {exc}") from None
        return built

    def jobs(self, dates, *, trading_days_per_year: int = 252, n_stocks: int | None = None) -> list[JobSpec]:
        """Every job on the trading days `dates`: method × window × seed × cost multiple; a method
        deterministic on a window runs it on seed 0 only (`methods.is_deterministic`: with `n_stocks`,
        the panel's stock count, a method whose use of the seed depends on the data size can tell).
        Builds every method first, so a bad option fails here."""
        windows = windows_from_config(self.protocol, dates, trading_days_per_year=trading_days_per_year)
        methods = self.build_methods()
        jobs = []
        for entry in self.methods:
            for window in windows:
                deterministic = is_deterministic(methods[entry["name"]], window, dates, n_stocks)
                for seed in [0] if deterministic else self.seeds:
                    for multiple in self.cost_multiples:
                        spec = JobSpec(
                            method=entry["name"],
                            method_config=entry["config"],
                            seed=seed,
                            window=window,
                            cost_bps=self.cost_bps,
                            cost_multiple=multiple,
                            dataset=self.dataset,
                            deterministic=deterministic,
                            backtest=self.backtest,
                            on_outliers=self.on_outliers,
                        )
                        jobs.append(spec)
        return jobs


def import_modules(imports) -> list[str]:
    """Import each module of `imports` (they register extra methods); UserError naming a failure."""
    if not isinstance(imports, list | tuple) or not all(isinstance(m, str) for m in imports):
        raise UserError(f"imports: expected a list of module names, got {imports!r}")
    for i, module in enumerate(imports):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"imports[{i}]: cannot import {module!r} ({exc}); is it on PYTHONPATH?") from None
    return list(imports)


def _check_methods(methods) -> list[dict[str, Any]]:
    if not isinstance(methods, list) or not methods:
        raise UserError("methods: expected a non-empty list of method names or {name:, config:} entries")
    checked = []
    for i, entry in enumerate(methods):
        entry = {"name": entry} if isinstance(entry, str) else entry
        if (
            not isinstance(entry, dict)
            or set(entry) - {"name", "config"}
            or not isinstance(entry.get("name"), str)
        ):
            raise UserError(f"methods[{i}]: expected a name or {{name: ..., config: {{...}}}}, got {entry!r}")
        name, config = entry["name"], entry.get("config") or {}
        if any(name == c["name"] for c in checked):
            raise UserError(f"methods[{i}]: {name!r} is listed twice")
        if not is_method(name):
            raise UserError(f"methods[{i}]: unknown method {name!r}; choose one of {', '.join(METHODS)}")
        try:  # strategies and predictors are checked now; agents (torch) when the jobs are made
            if name in AGENTS:
                if not isinstance(config, dict):
                    raise UserError(f"method {name!r}: config must be a mapping of options, not {config!r}")
            else:
                make_method(name, config)
        except UserError as exc:
            raise UserError(f"methods[{i}]: {exc}") from None
        checked.append({"name": name, "config": dict(config)})
    return checked


def _check_seeds(seeds) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds))
    ok = (
        isinstance(seeds, list)
        and seeds
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
    )
    if not ok or len(set(seeds)) != len(seeds):
        raise UserError(
            f"seeds: expected a count n >= 1 or a list of distinct whole numbers >= 0, got {seeds!r}"
        )
    return list(seeds)


def _check_multiples(multiples) -> list[float]:
    if not isinstance(multiples, list) or not multiples:
        raise UserError(
            f"cost_multiples: expected a non-empty list of numbers like [1, 3, 5], got {multiples!r}"
        )
    for value in multiples:
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise UserError(f"cost_multiples: {value!r} is not a number >= 0")
    if len({f"{m:g}" for m in multiples}) != len(multiples):
        raise UserError(f"cost_multiples: {multiples!r} lists a multiple twice")
    return [float(m) for m in multiples]


def _check_backtest(options) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise UserError(
            f"backtest: expected a mapping of options ({', '.join(_BACKTEST_OPTIONS)}), got {options!r}"
        )
    for key, value in options.items():
        if key not in _BACKTEST_OPTIONS:
            raise UserError(f"backtest.{key}: unknown option; allowed: {', '.join(_BACKTEST_OPTIONS)}")
        if not isinstance(value, _BACKTEST_OPTIONS[key]) or (isinstance(value, bool) and key != "round_lots"):
            raise UserError(f"backtest.{key}: {value!r} has the wrong type")
    return dict(options)


def _safe(text: str) -> str:
    """A file-system-safe name: anything but letters, digits, '.', '_' and '-' becomes '_'."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)


__all__ = ["Experiment", "JobSpec"]
