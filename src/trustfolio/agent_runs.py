"""Training runs of one agent, and agents as runner methods: `train_agent`, `evaluate_run`, `AgentMethod`.

`train_agent` trains an agent by name (`trustfolio.agents.registry`) on a dataset's training window
(then finetunes, when a finetune window is given or known) into a training run directory, resumable;
`evaluate_run` backtests it after its training window beside 1/N. `AgentMethod` is the same training
as a runner method (one job of an experiment). The run directory's layout is in `trustfolio.rundir`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from trustfolio.agents.base import Agent, AgentConfig, AgentData
from trustfolio.agents.registry import agent_class, resolve_config, state_builder
from trustfolio.data.cleaning import clean
from trustfolio.data.features import MarketStates
from trustfolio.data.loaders import load_dataset
from trustfolio.data.panel import Panel, to_day
from trustfolio.errors import UserError
from trustfolio.evaluation.protocols import Window
from trustfolio.files import write_atomic
from trustfolio.market.simulator import SimulatorConfig
from trustfolio.provenance import code_version, environment
from trustfolio.rundir import (
    AGENT_FILE,
    BACKTEST_DIR,
    OVERESTIMATION_JSON,
    OVERESTIMATION_PNG,
    RUN_FILE,
    clear_training_run,
    read_training_run,
)

#: Windows used when `train_agent` is given no dates: the papers' for known datasets, else the
#: first 80% of the days.
DEFAULT_WINDOWS = {
    "csi88": {"train": ("2011-01-17", "2018-12-31"), "finetune": ("2018-01-04", "2018-12-31")},
    "sp500": {"train": ("2010-01-01", "2019-12-31")},
}


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
    out_dir: str | Path | None = None,
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
    on_outliers: str = "fail",
    fresh: bool = False,
) -> Path:
    """Train agent `name` on `dataset`'s training window (then finetune, if a finetune window is
    given or known for the dataset); returns the run directory (`out_dir`, default `default_run_dir`).

    Rerunning the same call resumes from the last checkpoint (a killed run loses at most
    `checkpoint_every` steps) and gives the same agent as an uninterrupted run; a run directory of
    another run is refused, and left as it was, unless ``fresh=True`` (start over: what a training run
    wrote there is removed first). `run.json` and `agent.pt` are written when training ends.
    `on_outliers` says what cleaning does with one-day spikes and stale prices (fail | warn | clip).
    """
    check_device(device)
    config = resolve_config(name, budget, config)
    if steps is not None:
        config = replace(config, steps=steps)
    raw = dataset if isinstance(dataset, Panel) else load_dataset(dataset)
    windows = _windows(raw, train_start, train_end, finetune_start, finetune_end)
    (t0, t1), finetune = windows["train"], windows.get("finetune")
    last_day = max(t1, finetune[1]) if finetune else t1
    panel, _ = clean(raw.slice(None, last_day), train_start=t0, train_end=t1, on_outliers=on_outliers)
    cls = agent_class(name)
    market_states = build_states(states, cls, config, panel, t0, t1)
    sim = SimulatorConfig(
        initial_cash=initial_cash,
        cost_bps=cost_bps,
        hmax=hmax if hmax is not None else default_hmax(panel, t0, t1, initial_cash),
    )
    run_dir = Path(out_dir) if out_dir is not None else default_run_dir(name, raw, seed)
    if fresh:
        clear_training_run(run_dir)
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
        "data": panel.content_hash(),
        "code": code_version(),
    }
    agent = cls(panel.N, market_states.h.shape[2], config, seed=seed, device=device)
    agent.fit(
        AgentData.between(panel, market_states, t0, t1, sim),
        seed=seed,
        out_dir=run_dir / "fit",
        progress=progress,
    )
    if finetune and config.finetune_steps > 0:
        data = AgentData.between(panel, market_states, *finetune, sim)
        agent.finetune(data, seed=seed, out_dir=run_dir / "finetune", progress=progress)
    # Written only now: a run refused above (another run's checkpoint) leaves the folder as it was.
    write_atomic(run_dir / RUN_FILE, json.dumps({**run, "environment": environment()}, indent=2))
    agent.save(run_dir / AGENT_FILE)
    return run_dir


def default_run_dir(name: str, panel: Panel, seed: int) -> Path:
    """``runs/train-<agent>-<dataset name>-<content hash>-seed<S>``: two datasets never share a folder,
    and the same call always finds its own folder again (to resume)."""
    dataset = "".join(c if c.isalnum() or c in "._-" else "_" for c in panel.name) or "data"
    return Path("runs") / f"train-{name}-{dataset}-{panel.content_hash()[:8]}-seed{seed}"


def check_device(device: str) -> None:
    """A `UserError` (one line) for a device torch does not know or this machine does not have."""
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        kind = None
    if kind not in ("cpu", "cuda"):
        raise UserError(f"device {device!r}: not a device trustfolio trains on; use cpu or cuda (cuda:0, cuda:1, …)")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"device {device!r}: CUDA is not available on this machine (torch {torch.__version__} sees no GPU); "
            "use --device cpu"
        )


def evaluate_run(
    run_dir: str | Path,
    dataset: str | Panel | None = None,
    start: Any = None,
    end: Any = None,
    *,
    cost_bps: float = 10.0,
    device: str = "cpu",
    on_outliers: str = "fail",
) -> dict[str, Any]:
    """Backtest a trained run on ``[start, end]`` (default: from the day after its last training day
    to the end of the data) with costs (`cost_bps`, 100-share lots on CSI) and without, beside 1/N;
    writes and returns ``metrics.json`` (`write_metrics`: ``start``, ``end``, ``cost_bps``,
    ``strategies``, then ``strategies_no_costs``, ``lots``, ``agent``, ``seed``, ``dataset``).
    For an agent with a critic, the value-overestimation diagnostic of the same days (with costs)
    is written too and summarized under ``"overestimation"``."""
    from trustfolio.evaluation.backtest import backtest
    from trustfolio.evaluation.overestimation import has_critic, value_overestimation
    from trustfolio.evaluation.result import write_metrics
    from trustfolio.strategies import make_strategy

    run_dir = Path(run_dir)
    check_device(device)
    run = read_training_run(run_dir)
    agent = Agent.load(run_dir / AGENT_FILE, device=device)  # imports the agent's module by its name
    raw = dataset if isinstance(dataset, Panel) else load_dataset(dataset or run["dataset"])
    learned_until = to_day(max(run["train"][1], (run["finetune"] or run["train"])[1]))
    start = to_day(start) if start is not None else learned_until + 1
    if start <= learned_until:
        raise UserError(
            f"{run_dir}: the evaluation starts on {start}, but the agent learned from days up to "
            f"{learned_until}; evaluate after its training window"
        )
    panel, _ = clean(raw.slice(None, end), train_start=run["train"][0], train_end=run["train"][1],
                     on_outliers=on_outliers)  # fmt: skip
    if list(panel.tickers) != run["tickers"]:
        raise UserError(
            f"{run_dir}: cleaning {panel.name} keeps other stocks than the {len(run['tickers'])} the "
            "agent was trained on; evaluate on the dataset it was trained on"
        )
    market_states = build_states(run["states"], type(agent), agent.config, panel, *run["train"])
    policy = agent.policy(market_states, name=run["agent"])
    execution = dict(initial_cash=run["sim"]["initial_cash"], hmax=run["sim"]["hmax"], round_lots=True)
    document: dict[str, Any] = {"strategies": {}, "strategies_no_costs": {}}
    for key, cost in (("strategies", cost_bps), ("strategies_no_costs", 0.0)):
        for strategy in (policy, make_strategy("equal-weight")):
            result = backtest(strategy, panel, start, end, cost_bps=cost, **execution)
            document[key][strategy.name] = result.metrics()
            if strategy is policy and key == "strategies":
                result.save(run_dir / BACKTEST_DIR)
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
    sections = {k: v for k, v in document.items() if k != "strategies"}
    return write_metrics(
        run_dir,
        start=result.dates[0],
        end=result.dates[-1],
        cost_bps=cost_bps,
        strategies=document["strategies"],
        **sections,
        lots=True,
        agent=run["agent"],
        seed=run["seed"],
        dataset=run["dataset"],
        data=panel.content_hash(),
        trained_by=run.get("code"),
        code=code_version(),  # what evaluated it, with the libraries and thread count below
        environment=environment(),
    )


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


def build_states(
    kind: str | None,
    cls: type[Agent],
    config: AgentConfig,
    panel: Panel,
    train_start,
    train_end,
    progress: bool = True,
) -> MarketStates:
    """The agent's own market states (`kind` None), or the ones registered as `kind`."""
    if kind is None:
        return cls.market_states(panel, train_start, train_end, config, progress=progress)
    return state_builder(kind)(panel, train_start, train_end)


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
        check_device(self.device)
        self.config = resolve_config(self.name, self.budget, settings)  # bad fields fail now
        if self.states is not None:
            state_builder(self.states)  # an unknown name fails now, before any job runs

    def build_policy(self, panel: Panel, window: Window, seed: int, work_dir: Path):
        """Train on ``window.train`` (then finetune on ``window.finetune``), checkpointing in `work_dir`."""
        cls = agent_class(self.name)
        states = build_states(  # no progress bars inside runner workers
            self.states, cls, self.config, panel, window.train_start, window.train_end, progress=False
        )
        hmax = self.hmax
        if hmax is None:
            hmax = default_hmax(panel, window.train_start, window.train_end, self.initial_cash)
        sim = SimulatorConfig(initial_cash=self.initial_cash, hmax=hmax, cost_bps=self.cost_bps)
        agent = cls(panel.N, states.h.shape[2], self.config, seed=seed, device=self.device)
        train = AgentData.between(panel, states, window.train_start, window.train_end, sim)
        agent.fit(train, seed=seed, out_dir=Path(work_dir) / "fit", progress=False)
        if window.finetune_start is not None and self.config.finetune_steps > 0:
            finetune = AgentData.between(panel, states, window.finetune_start, window.finetune_end, sim)
            agent.finetune(finetune, seed=seed, out_dir=Path(work_dir) / "finetune", progress=False)
        return agent.policy(states, name=self.name)


__all__ = ["DEFAULT_WINDOWS", "AgentMethod", "build_states", "default_hmax", "evaluate_run", "train_agent"]
