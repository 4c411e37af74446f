"""The example agent of docs/architecture.md (examples/reinforce_agent.py): it is the file the doc
shows, under 80 lines; it learns a planted trend (beside its untrained self), resumes exactly from a
checkpoint, and runs as a method of an experiment file."""

from __future__ import annotations

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
sys.path.insert(0, str(EXAMPLE.parent))
from reinforce_agent import ReinforceAgent, ReinforceConfig  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def registered_only_here():
    """The example registers itself on import; other test modules see the built-in agents only."""
    from trustfolio import methods
    from trustfolio.agents.registry import AGENTS, register_agent

    register_agent("reinforce", ReinforceAgent, AGENTS["reinforce"][1], replace=True)
    yield
    AGENTS.pop("reinforce", None)
    methods.METHODS.pop("reinforce", None)
    methods._FACTORIES.pop("reinforce", None)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_doc_shows_the_example_file_verbatim_and_it_is_under_80_lines():
    source = EXAMPLE.read_text()
    doc = (ROOT / "docs" / "architecture.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    assert source in blocks and len(source.splitlines()) < 80


def test_it_learns_to_hold_the_trending_stock(tmp_path):
    panel, states = trending_market(trending=2)
    data = AgentData(panel, states, 0, TRAIN_END, SIM)
    config = ReinforceConfig(steps=200, checkpoint_every=200, log_every=50)
    untrained = ReinforceAgent(panel.N, 5, config, seed=0)
    untrained.fit(data, steps=0, out_dir=tmp_path / "untrained", progress=False)
    agent = ReinforceAgent(panel.N, 5, config, seed=0)
    summary = agent.fit(data, out_dir=tmp_path / "trained", progress=False)
    before = held_out_backtest(untrained.policy(states), panel)
    after = held_out_backtest(agent.policy(states), panel)

    assert summary.updates == 200 and (tmp_path / "trained" / "progress.csv").read_text().count("\n") == 1 + 4
    assert before.weights[:, 2].mean() < 0.3  # the untrained net spreads over 4 stocks and cash
    assert after.weights[:, 2].mean() > 0.6  # measured 0.86 (the untrained net: 0.23)
    assert after.CR > before.CR + 0.1


def test_a_resumed_run_ends_exactly_as_an_uninterrupted_one(tmp_path):
    panel, states = trending_market()
    data = AgentData(panel, states, 0, TRAIN_END, SIM)
    config = ReinforceConfig(steps=12, checkpoint_every=6, log_every=3)
    whole = ReinforceAgent(panel.N, 5, config, seed=3)
    whole.fit(data, out_dir=tmp_path / "whole", progress=False)
    halves = ReinforceAgent(panel.N, 5, config, seed=3)
    halves.fit(data, steps=6, out_dir=tmp_path / "halves", progress=False)
    checkpoint = tmp_path / "halves" / "checkpoint.pt"
    shutil.copy(checkpoint, tmp_path / "at-6.pt")
    resumed = ReinforceAgent(panel.N, 5, config, seed=3)  # a new process would start from scratch too
    summary = resumed.fit(data, out_dir=tmp_path / "halves", progress=False)

    assert summary.resumed_from == 6 and resumed.updates == whole.updates == 12
    for name, tensor in whole.net.state_dict().items():
        assert torch.equal(tensor, resumed.net.state_dict()[name])
    assert held_out_backtest(resumed.policy(states), panel).metrics() == held_out_backtest(
        whole.policy(states), panel
    ).metrics()


def test_it_runs_in_an_experiment_file(tmp_path):
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
