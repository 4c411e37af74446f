"""Every published figure reproduces from landed code: the same agent trained from the command line
and as a job of the runner gives the same numbers, and each result says what produced it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_cli import run_cli
from trustfolio.data.loaders import load_dataset
from trustfolio.experiment import Experiment
from trustfolio.runner import load_finished_jobs, run_experiment


def test_a_quick_train_from_the_cli_and_the_same_job_in_the_runner_give_identical_metrics(
    tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "train"
    code, _, err = run_cli(monkeypatch, capsys, "train", "sac", "--config", "quick", "--out", str(run_dir))
    assert code == 0, err
    # evaluate in a new process, as a user does: the agent's module is imported from its name
    evaluate = subprocess.run([sys.executable, "-m", "trustfolio.cli", "evaluate", str(run_dir)],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert evaluate.returncode == 0, evaluate.stderr
    cli = json.loads((run_dir / "metrics.json").read_text())

    last_day = str(load_dataset("sp500").dates[-1])
    experiment = Experiment.from_dict({
        "name": "same-job",
        "dataset": "sp500",
        "protocol": {"kind": "offline", "train": ["2010-01-01", "2019-12-31"], "test": ["2020-01-01", last_day]},
        "methods": ["equal-weight", {"name": "sac", "config": {"budget": "quick"}}],
        "seeds": [0],
    })  # fmt: skip
    run_experiment(experiment, tmp_path / "run", workers=1, progress=False)
    runner = {spec.method: result.metrics() for spec, result in load_finished_jobs(tmp_path / "run")}

    assert (cli["start"], cli["end"]) == ("2020-01-02", last_day)
    assert runner["sac"] == cli["strategies"]["sac"]
    assert runner["equal-weight"] == cli["strategies"]["equal-weight"]
    # the result records what produced it
    assert cli["code"]["trustfolio"] and cli["environment"]["torch_threads"] == 1 and cli["data"]
