"""The example agent of docs/architecture.md (examples/reinforce_agent.py): it is the file the doc
shows, under 80 lines; it learns a planted trend (beside its untrained self), resumes exactly from a
checkpoint, and runs as a method of an experiment file."""

from __future__ import annotations

import importlib
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from test_agents_sac import SIM, TRAIN_END, held_out_backtest, trending_market
from trustfolio.agents.base import AgentData

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "reinforce_agent.py"


@pytest.fixture(scope="module")
def example(monkeypatch_module):
    """The example module, imported (it registers the agent on import) for this file's tests only:
    other test files see the built-in agents."""
    from trustfolio import methods
    from trustfolio.agents.registry import AGENTS

    monkeypatch_module.syspath_prepend(str(EXAMPLE.parent))
    sys.modules.pop("reinforce_agent", None)
    yield importlib.import_module("reinforce_agent")
    sys.modules.pop("reinforce_agent", None)
    for table in (AGENTS, methods.METHODS, methods._FACTORIES):
        table.pop("reinforce", None)


def test_the_doc_shows_the_example_file_verbatim_and_it_is_under_80_lines(example):
    source = EXAMPLE.read_text()
    doc = (ROOT / "docs" / "architecture.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert source in blocks and len(source.splitlines()) < 80


def test_it_learns_to_hold_the_trending_stock(example, tmp_path):
    panel, states = trending_market(trending=2)
    data = AgentData(panel, states, 0, TRAIN_END, SIM)
    config = example.ReinforceConfig(steps=200, checkpoint_every=200, log_every=50)
    untrained = example.ReinforceAgent(panel.N, 5, config, seed=0)
    untrained.fit(data, steps=0, out_dir=tmp_path / "untrained", progress=False)
    agent = example.ReinforceAgent(panel.N, 5, config, seed=0)
    summary = agent.fit(data, out_dir=tmp_path / "trained", progress=False)
    before = held_out_backtest(untrained.policy(states), panel)
    after = held_out_backtest(agent.policy(states), panel)

    assert summary.updates == 200 and (tmp_path / "trained" / "progress.csv").read_text().count("\n") == 1 + 4
    assert before.weights[:, 2].mean() < 0.3  # the untrained net spreads over 4 stocks and cash
    assert after.weights[:, 2].mean() > 0.6  # measured 0.86 (the untrained net: 0.23)
    assert after.CR > before.CR + 0.1


def test_a_resumed_run_ends_exactly_as_an_uninterrupted_one(example, tmp_path):
    panel, states = trending_market()
    data = AgentData(panel, states, 0, TRAIN_END, SIM)
    config = example.ReinforceConfig(steps=12, checkpoint_every=6, log_every=3)
    whole = example.ReinforceAgent(panel.N, 5, config, seed=3)
    whole.fit(data, out_dir=tmp_path / "whole", progress=False)
    halves = example.ReinforceAgent(panel.N, 5, config, seed=3)
    halves.fit(data, steps=6, out_dir=tmp_path / "halves", progress=False)
    checkpoint = tmp_path / "halves" / "checkpoint.pt"
    shutil.copy(checkpoint, tmp_path / "at-6.pt")
    resumed = example.ReinforceAgent(panel.N, 5, config, seed=3)  # a new process would start from scratch too
    summary = resumed.fit(data, out_dir=tmp_path / "halves", progress=False)

    assert summary.resumed_from == 6 and resumed.updates == whole.updates == 12
    for name, tensor in whole.net.state_dict().items():
        assert torch.equal(tensor, resumed.net.state_dict()[name])
    assert held_out_backtest(resumed.policy(states), panel).metrics() == held_out_backtest(
        whole.policy(states), panel
    ).metrics()


def test_it_runs_in_an_experiment_file(example, tmp_path):
    from trustfolio.runner import Experiment, load_finished_jobs, run_experiment

    experiment = Experiment.from_dict({
        "name": "example-agent",
        "dataset": "sp500",
        "protocol": {"kind": "offline", "train": ["2018-01-01", "2019-12-31"], "test": ["2020-01-01", "2020-06-30"]},
        "methods": ["equal-weight", {"name": "reinforce", "config": {"budget": "quick", "steps": 4}}],
        "seeds": [0, 1],
        "imports": ["reinforce_agent"],
    })  # fmt: skip
    summary = run_experiment(experiment, tmp_path / "run", workers=1, progress=False)
    finished = {(spec.method, spec.seed): result for spec, result in load_finished_jobs(tmp_path / "run")}

    assert summary.ok and sorted(finished) == [("equal-weight", 0), ("reinforce", 0), ("reinforce", 1)]
    weights = finished[("reinforce", 0)].weights
    assert np.all(weights >= 0) and np.all(weights.sum(1) <= 1 + 1e-9)  # target weights, the rest in cash
    assert finished[("reinforce", 0)].metrics() != finished[("reinforce", 1)].metrics()  # seeds differ
