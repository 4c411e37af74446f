"""Progress off a terminal (plain lines), the resumed line, and Ctrl-C (one line, exit 130, resumable)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from trustfolio import progress
from trustfolio.progress import ProgressReporter

LINE = re.compile(r"^(?P<label>.+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+) \((?P<percent>\d+)%\)(?P<rest>.*)$")
SRC = Path(__file__).resolve().parents[1] / "src"


def test_plain_lines_every_10_percent_then_at_the_end(capsys):
    with ProgressReporter("sac fit", 200, plain=True) as bar:
        for step in range(1, 201):
            bar.update(step)
    lines = capsys.readouterr().out.splitlines()
    assert [int(LINE.match(line)["done"]) for line in lines] == list(range(20, 201, 20))
    assert re.fullmatch(r"sac fit: 40/200 steps \(20%\), \d+:\d\d:\d\d elapsed, ~\d+:\d\d:\d\d left", lines[1])
    assert "left" not in lines[-1] and lines[-1].startswith("sac fit: 200/200 steps (100%), ")


def test_plain_lines_every_30_seconds_when_progress_is_slow(capsys, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    with ProgressReporter("slow", 1000, plain=True) as bar:
        for step in range(1, 41):  # 4 % in 40 × 10 s: no 10 % mark, a line each 30 s
            clock[0] += 10.0
            bar.update(step)
    lines = capsys.readouterr().out.splitlines()
    assert [LINE.match(line)["done"] for line in lines] == [str(k) for k in range(3, 41, 3)]
    assert lines[0] == "slow: 3/1000 steps (0%), 0:00:30 elapsed, ~2:46:10 left"


def test_a_resumed_run_counts_earlier_sessions_and_estimates_from_this_one(capsys, monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    with ProgressReporter("run", 100, completed=50, elapsed_before=3600.0, unit="jobs", info="0 failed", plain=True) as bar:
        clock[0] = 60.0
        bar.update(advance=10)
    assert capsys.readouterr().out == "run: 60/100 jobs (60%), 0 failed, 1:01:00 elapsed, ~0:04:00 left\n"


def test_disabled_or_finished_progress_prints_nothing(capsys):
    with ProgressReporter("off", 10, enabled=False, plain=True) as bar:
        bar.update(10)
    with ProgressReporter("done before", 10, completed=10, plain=True) as bar:
        bar.update(10)
    assert capsys.readouterr().out == ""


def test_captured_output_is_not_a_terminal():
    assert not progress.interactive()  # pytest captures stdout: a log, not a terminal


def test_run_experiment_reports_jobs_in_plain_lines(tmp_path: Path, capsys):
    from trustfolio.runner import run_experiment

    experiment = tmp_path / "one.yaml"
    experiment.write_text(
        "name: one\ndataset: sp500\n"
        "protocol: {kind: offline, train: [2015-01-01, 2021-12-31], test: [2022-01-03, 2022-03-31]}\n"
        "methods: [equal-weight, buy-and-hold]\nseeds: [0]\ncost_bps: 10\n"
    )
    run_experiment(experiment, tmp_path / "run", workers=1)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(", ")[:2] for line in lines] == [["one: 1/2 jobs (50%)", "0 failed"],
                                                        ["one: 2/2 jobs (100%)", "0 failed"]]  # fmt: skip


# ---------------------------------------------------------------------------------------- the command
TINY_SAC = """budget: quick
hidden_sizes: [8, 8]
num_envs: 2
episode_length: 5
batch_size: 8
learning_starts: 0
eval_every: 0
checkpoint_every: 5
log_every: 5
finetune_steps: 0
"""


def train_command(tmp_path: Path) -> list[str]:
    config = tmp_path / "tiny.yaml"
    config.write_text(TINY_SAC)
    return [sys.executable, "-m", "trustfolio.cli", "train", "sac", "--config", str(config), "--steps", "150",
            "--out", str(tmp_path / "sac")]  # fmt: skip


def environment(tmp_path: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "TRUSTFOLIO_CACHE": str(tmp_path / "cache"),
            "OMP_NUM_THREADS": "1", "COLUMNS": "200"}  # fmt: skip


@pytest.fixture(scope="module")
def interrupted_then_resumed(tmp_path_factory):
    """`trustfolio train` with stdout a pipe: Ctrl-C at its first progress line, then the same command."""
    tmp_path = tmp_path_factory.mktemp("train")
    command, env = train_command(tmp_path), environment(tmp_path)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = process.stdout.readline()  # the 10 % line (stdout is a pipe: plain lines, not a bar),
    process.send_signal(signal.SIGINT)  # printed after the step-15 checkpoint
    rest, err = process.communicate(timeout=120)
    interrupted = (process.returncode, first + rest, err)
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    return tmp_path, interrupted, (again.returncode, again.stdout, again.stderr)


def test_train_off_a_terminal_prints_plain_progress_lines(interrupted_then_resumed):
    _, _, (code, out, err) = interrupted_then_resumed
    assert code == 0, err
    lines = [LINE.match(line) for line in out.splitlines()]
    progress_lines = [m for m in lines if m and m["label"] == "sac fit"]
    assert progress_lines and progress_lines[-1]["done"] == "150" and progress_lines[-1]["percent"] == "100"
    assert "\x1b[" not in out  # no terminal control codes in a log


def test_ctrl_c_prints_one_line_and_exits_130(interrupted_then_resumed):
    _, (code, out, err), _ = interrupted_then_resumed
    assert LINE.match(out.splitlines()[0])["done"] == "15", out
    assert code == 130, err
    assert err.strip() == "interrupted — rerun the same command to resume"


def test_the_rerun_says_from_which_step_it_resumed(interrupted_then_resumed):
    tmp_path, _, (code, out, err) = interrupted_then_resumed
    assert code == 0, err
    resumed = [line for line in out.splitlines() if "resumed from step" in line]
    assert len(resumed) == 1, out
    match = re.fullmatch(r"sac fit: resumed from step (\d+) of 150 \(checkpoint (.+)\)", resumed[0])
    assert match and 15 <= int(match[1]) < 150 and int(match[1]) % 5 == 0, resumed
    assert Path(match[2]) == tmp_path / "sac" / "fit" / "checkpoint.pt"
    assert "Traceback" not in err


def test_evaluate_prints_the_test_window_it_used(interrupted_then_resumed, monkeypatch, capsys):
    import json

    from trustfolio import cli

    tmp_path, _, _ = interrupted_then_resumed
    monkeypatch.setenv("TRUSTFOLIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", ["trustfolio", "evaluate", str(tmp_path / "sac"), "--end", "2020-06-30"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    out, err = capsys.readouterr()
    assert exit_info.value.code in (None, 0), err
    document = json.loads((tmp_path / "sac" / "metrics.json").read_text())
    assert document["start"] == "2020-01-02"  # the first trading day after training (2019-12-31)
    assert f"test window: 2020-01-02 → {document['end']} (from the day after training)" in out
