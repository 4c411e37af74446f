"""Nothing a user runs damages a finished result or writes outside its folder (issue: runs that cannot
be corrupted): safe names, run metadata written only after the identity check, folders that do not
collide across datasets, --fresh, device errors, the user's umask, and reruns that refuse to mix
results of other code or other data."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from test_cli import assert_one_line_error, run_cli
from trustfolio import provenance
from trustfolio.agent_runs import default_run_dir, evaluate_run, train_agent
from trustfolio.data.loaders import load_dataset
from trustfolio.errors import DataError, UserError
from trustfolio.experiment import Experiment
from trustfolio.files import write_atomic
from trustfolio.rundir import RUN_FILE, inside, safe_name
from trustfolio.runner import run_experiment

TINY = {"steps": 60, "learning_starts": 20, "eval_every": 0, "checkpoint_every": 30, "log_every": 30}
SMALL = {
    "dataset": "sp500",
    "protocol": {"kind": "offline", "train": ["2018-01-01", "2019-12-31"], "test": ["2020-01-02", "2020-03-31"]},
    "methods": ["equal-weight", "momentum"],
}


# ---------------------------------------------------------------------------------------- 1. names and paths
@pytest.mark.parametrize("name", ["../../somewhere", "a/b", "..", "/abs", "", "sp ace", ".hidden"])
def test_unsafe_experiment_names_are_refused(name):
    with pytest.raises(UserError, match="name"):
        Experiment.from_dict({**SMALL, "name": name})


def test_run_with_an_unsafe_name_writes_nothing_anywhere(monkeypatch, capsys, tmp_path):
    out = tmp_path / "runs"
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", str(out), "--name", "../escaped", "--workers", "1")
    assert_one_line_error(code, err, "../escaped")
    assert not out.exists() and not (tmp_path / "escaped").exists()


def test_paths_are_checked_to_stay_inside_their_folder(tmp_path):
    assert inside(tmp_path, "jobs", "a--b") == tmp_path / "jobs" / "a--b"
    for parts in (("..", "x"), ("jobs", "..", "..", "x"), ("/etc",)):
        with pytest.raises(UserError, match="outside"):
            inside(tmp_path, *parts)
    assert safe_name("quickstart-2.v1_a", "name") == "quickstart-2.v1_a"


# ---------------------------------------------------------------------------------------- 2. training runs
def test_a_refused_train_leaves_the_finished_run_untouched_and_fresh_starts_over(tmp_path):
    run_dir = train_agent("sac", "sp500", config=TINY, seed=0, out_dir=tmp_path / "run", progress=False)
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    with pytest.raises(UserError, match="belongs to a different run.*--fresh"):
        train_agent("sac", "sp500", config=TINY, seed=1, out_dir=run_dir, progress=False)
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before

    train_agent("sac", "sp500", config=TINY, seed=1, out_dir=run_dir, progress=False, fresh=True)
    assert json.loads((run_dir / RUN_FILE).read_text())["seed"] == 1
    assert evaluate_run(run_dir)["seed"] == 1


def test_default_run_folders_differ_across_datasets_with_the_same_name(tmp_path):
    frame = load_dataset("sp500").to_frame().reset_index()
    first, second = tmp_path / "a" / "prices.csv", tmp_path / "b" / "prices.csv"
    for path, scale in ((first, 1.0), (second, 2.0)):
        path.parent.mkdir()
        changed = frame.copy()
        changed["close"] = changed["close"] * scale
        changed.to_csv(path, index=False)
    panels = [load_dataset(f"table:{path}") for path in (first, second)]
    assert panels[0].name == panels[1].name
    folders = [default_run_dir("sac", panel, seed=0) for panel in panels]
    assert folders[0] != folders[1] and all(f.parent == Path("runs") for f in folders)
    assert default_run_dir("sac", panels[0], seed=0) == folders[0]  # stable: a rerun resumes


# ---------------------------------------------------------------------------------------- 3. devices
@pytest.mark.parametrize("device", ["gpu", "cuda"])
def test_a_device_that_is_not_there_is_one_line_and_writes_nothing(monkeypatch, capsys, tmp_path, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = tmp_path / "run"
    code, _, err = run_cli(monkeypatch, capsys, "train", "sac", "--device", device, "--out", str(out))
    assert_one_line_error(code, err, device)
    assert not out.exists()


# ---------------------------------------------------------------------------------------- 4. umask
@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_files_get_the_mode_the_umask_gives(tmp_path, mask):
    previous = os.umask(mask)
    try:
        path = write_atomic(tmp_path / "x.json", "{}")
        other = write_atomic(tmp_path / "y.bin", lambda p: p.write_bytes(b"1"))
    finally:
        os.umask(previous)
    for written in (path, other):
        assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~mask


# ---------------------------------------------------------------------------------------- 5. reruns
def test_a_rerun_refuses_to_mix_results_of_other_code(tmp_path, monkeypatch):
    experiment = Experiment.from_dict({**SMALL, "name": "small"})
    run_experiment(experiment, tmp_path / "run", workers=1, progress=False)
    assert run_experiment(experiment, tmp_path / "run", workers=1, progress=False).ok  # same code: resumes
    other = {**provenance.code_version(), "commit": "0" * 40, "dirty": False}
    monkeypatch.setattr("trustfolio.runner.code_version", lambda: other)
    with pytest.raises(UserError, match="other code"):
        run_experiment(experiment, tmp_path / "run", workers=1, progress=False)


def test_a_rerun_refuses_to_mix_results_of_other_data(tmp_path):
    path = tmp_path / "prices.csv"
    frame = load_dataset("sp500").slice("2018-01-01", "2020-03-31").to_frame().reset_index()
    frame.to_csv(path, index=False)
    experiment = Experiment.from_dict({**SMALL, "name": "small", "dataset": f"table:{path}"})
    run_experiment(experiment, tmp_path / "run", workers=1, progress=False)
    frame.loc[frame.index[-1], "close"] = float(np.float32(frame["close"].iloc[-1] * 1.01))
    frame.to_csv(path, index=False)
    with pytest.raises(UserError, match="other data"):
        run_experiment(experiment, tmp_path / "run", workers=1, progress=False)
    assert isinstance(pd.read_csv(path), pd.DataFrame)


def test_an_experiment_on_spiked_data_is_refused_in_one_line_unless_it_says_otherwise(tmp_path):
    frame = load_dataset("sp500").slice("2018-01-01", "2020-03-31").to_frame().reset_index()
    ticker = frame["ticker"].iloc[0]
    spiked = frame.index[(frame["ticker"] == ticker) & (frame["date"] == frame["date"].unique()[300])]
    frame.loc[spiked, "close"] *= 100.0
    path = tmp_path / "prices.csv"
    frame.to_csv(path, index=False)
    experiment = {**SMALL, "name": "spiked", "dataset": f"table:{path}"}
    with pytest.raises(DataError, match=ticker) as refused:
        run_experiment(Experiment.from_dict(experiment), tmp_path / "run", workers=1, progress=False)
    assert "\n" not in str(refused.value) and not (tmp_path / "run").exists()
    warned = run_experiment(Experiment.from_dict({**experiment, "on_outliers": "warn"}), tmp_path / "run",
                            workers=1, progress=False)  # fmt: skip
    assert warned.ok
    with pytest.raises(UserError, match="on_outliers"):
        Experiment.from_dict({**experiment, "on_outliers": "drop"})
