"""The experiment runner: experiment files, job expansion, local runs, resume, failures, kill-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

import runner_helpers  # noqa: E402  (registers the test-slow and test-broken methods)

import trustfolio.runner as runner  # noqa: E402
from trustfolio.data.cleaning import clean  # noqa: E402
from trustfolio.data.loaders import load_dataset  # noqa: E402
from trustfolio.errors import UserError  # noqa: E402
from trustfolio.evaluation.backtest import backtest  # noqa: E402
from trustfolio.evaluation.result import BacktestResult  # noqa: E402
from trustfolio.runner import Experiment, load_finished_jobs, quickstart_experiment_path, run_experiment  # noqa: E402
from trustfolio.strategies import make_strategy  # noqa: E402

OFFLINE = {"kind": "offline", "train": ["2021-01-04", "2021-04-30"], "test": ["2021-05-01", "2021-08-13"]}


@pytest.fixture
def table(tmp_path) -> str:
    return "table:" + str(runner_helpers.write_synthetic_table(tmp_path / "prices.csv"))


def experiment(dataset: str, **fields) -> Experiment:
    base = {
        "name": "tiny",
        "dataset": dataset,
        "protocol": OFFLINE,
        "methods": ["equal-weight", {"name": "momentum", "config": {"lookback": 20, "rebalance_every": 5}}],
        "seeds": [0, 1],
        "cost_multiples": [1, 3],
    }
    return Experiment.from_dict({**base, **fields})


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def file_stats(run_dir: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every file under jobs/: a rewrite changes at least one of them."""
    return {str(p.relative_to(run_dir)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in (run_dir / "jobs").rglob("*") if p.is_file()}  # fmt: skip


# ---------------------------------------------------------------------------------------- experiment files
GOOD = {"dataset": "sp500", "protocol": OFFLINE, "methods": ["equal-weight"]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sedes": [0]}, "unknown field 'sedes'"),
        ({"dataset": None}, "missing field 'dataset'"),
        ({"methods": ["equal-weight", "no-such-method"]}, "methods\\[1\\]: unknown method 'no-such-method'"),
        (
            {"methods": [{"name": "momentum", "config": {"lookbak": 3}}]},
            "methods\\[0\\]: strategy 'momentum': bad options",
        ),
        ({"methods": ["equal-weight", "equal-weight"]}, "methods\\[1\\]: 'equal-weight' is listed twice"),
        ({"methods": []}, "methods: expected a non-empty list"),
        ({"seeds": [0, 0]}, "seeds:"),
        ({"seeds": "three"}, "seeds:"),
        ({"cost_bps": -1}, "cost_bps:"),
        ({"cost_multiples": [1, "x3"]}, "cost_multiples:"),
        ({"reference": "market"}, "reference: 'market' is not among the methods"),
        ({"protocol": {"kind": "offline", "train": ["2010-01-01", "2019-12-31"]}}, "protocol.test: required"),
        ({"protocol": {**OFFLINE, "test": ["2021-05-01", "soon"]}}, "protocol.test"),
        ({"backtest": {"fil": "close"}}, "backtest.fil: unknown option"),
        ({"imports": ["no_such_module_xyz"]}, "imports\\[0\\]: cannot import 'no_such_module_xyz'"),
    ],
)
def test_bad_experiment_fields_are_one_line_errors_naming_field_and_file(tmp_path, change, message):
    path = write_yaml(tmp_path / "bad.yaml", {**GOOD, **change})
    with pytest.raises(UserError, match=message) as caught:
        Experiment.from_yaml(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_unreadable_experiment_files(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        Experiment.from_yaml(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("dataset: sp500\nmethods: [equal-weight\n")
    with pytest.raises(UserError, match=f"{broken}: not valid YAML at line"):
        Experiment.from_yaml(broken)


def test_quickstart_experiment_is_shipped_and_resolves():
    path = quickstart_experiment_path()
    exp = Experiment.from_yaml(path)
    assert path.name == "quickstart.yaml" and exp.name == "quickstart" and exp.dataset == "sp500"
    assert exp.protocol["train"] == ["2010-01-01", "2019-12-31"] and exp.protocol["test"] == [
        "2020-01-01",
        "2022-12-28",
    ]
    # the main job runs every method implemented so far; learning ones at their quick budget
    from trustfolio.agents.registry import AGENTS
    from trustfolio.methods import METHODS

    names = [m["name"] for m in exp.methods]
    assert names[:6] == ["market", "equal-weight", "buy-and-hold", "min-variance", "max-sharpe", "momentum"]
    assert sorted(names) == sorted(m for m in METHODS if not m.startswith("test-"))  # (tests register test-*)
    assert all(m["config"].get("budget") == "quick" for m in exp.methods if m["name"] in AGENTS)
    assert (exp.seeds, exp.cost_bps, exp.cost_multiples, exp.reference) == (
        [0, 1, 2],
        10.0,
        [1.0, 3.0, 5.0],
        "equal-weight",
    )


def test_job_expansion_counts():
    days = np.arange("2021-01-04", "2021-03-01", dtype="datetime64[D]")
    days = days[np.is_busday(days)]  # 40 trading days
    exp = Experiment.from_dict(
        {
            "dataset": "sp500",
            "protocol": {"kind": "walk-forward", "train": 10, "test": 5, "step": 10},  # 3 windows
            "methods": ["equal-weight", "market", {"name": "test-slow", "config": {"sleep": 0}}],
            "seeds": 3,
            "cost_multiples": [1, 3],
        }
    )
    jobs = exp.jobs(days)
    # deterministic: 2 methods × 3 windows × seed 0 × 2 costs; test-slow: 3 windows × 3 seeds × 2 costs
    assert len(jobs) == 2 * 3 * 1 * 2 + 3 * 3 * 2 == 30
    assert len({j.job_id for j in jobs}) == 30
    assert {j.seed for j in jobs if j.method != "test-slow"} == {0}
    assert all(j.deterministic == (j.method != "test-slow") for j in jobs)
    assert (
        jobs[0].job_id == "equal-weight--wf-001--seed0--x1"
        and jobs[1].job_id == "equal-weight--wf-001--seed0--x3"
    )
    assert jobs[1].effective_cost_bps == 30.0


# ---------------------------------------------------------------------------------------- running
def test_local_pool_run_layout_and_results_equal_direct_backtest(tmp_path, table):
    exp = experiment(table)
    run_dir = tmp_path / "run"
    summary = run_experiment(exp, run_dir, workers=2, progress=False)
    ids = ["equal-weight--offline--seed0--x1", "equal-weight--offline--seed0--x3",
           "momentum--offline--seed0--x1", "momentum--offline--seed0--x3"]  # fmt: skip
    assert summary.ok and sorted(summary.finished) == ids and summary.skipped == [] and summary.total == 4
    assert summary.single_seed == ["equal-weight", "momentum"]
    assert yaml.safe_load((run_dir / "experiment.yaml").read_text()) == exp.to_dict()
    assert sorted(p.name for p in (run_dir / "jobs").iterdir()) == ids
    for job_id in ids:
        names = sorted(p.name for p in (run_dir / "jobs" / job_id).iterdir())
        assert names == ["DONE", "daily.parquet", "job.json", "metrics.json"]

    raw = load_dataset(table)
    panel, _ = clean(raw.slice(None, "2021-08-13"), train_start="2021-01-04", train_end="2021-04-30")
    finished = load_finished_jobs(run_dir)
    assert [spec.job_id for spec, _ in finished] == ids
    for spec, result in finished:
        job = json.loads((run_dir / "jobs" / spec.job_id / "job.json").read_text())
        assert job["window"] == {
            **spec.window.to_dict(),
            "test_start": "2021-05-03",
        }  # Saturday snapped to Monday
        assert (job["cost_bps"], job["effective_cost_bps"]) == (10.0, 10.0 * spec.cost_multiple)
        assert (job["method"], job["seed"], job["dataset"]) == (spec.method, 0, table)
        expected = backtest(
            make_strategy(spec.method, **spec.method_config),
            panel,
            "2021-05-03",
            "2021-08-13",
            cost_bps=job["effective_cost_bps"],
        )
        np.testing.assert_array_equal(result.values, expected.values)
        np.testing.assert_array_equal(result.weights, expected.weights)
        assert result.dates[0] == np.datetime64("2021-05-03") and result.dates[-1] == np.datetime64(
            "2021-08-13"
        )
    costs = {spec.job_id: result.metrics()["total_costs"] for spec, result in finished}
    assert costs["momentum--offline--seed0--x3"] > costs["momentum--offline--seed0--x1"] > 0


def test_only_training_days_decide_which_stocks_are_kept(tmp_path):
    path = runner_helpers.write_synthetic_table(tmp_path / "gappy.csv")
    frame = pd.read_csv(path)
    day = frame["date"].rank(method="dense").astype(int)
    in_test = frame["date"] >= "2021-05-01"
    # S2 misses every 8th training day (coverage 88% < 98%: dropped); S3 misses every 8th test day
    # (95% over the whole file, but 100% over training: kept, its gaps filled causally).
    gaps = ((frame["ticker"] == "S2") & ~in_test & (day % 8 == 0)) | (
        (frame["ticker"] == "S3") & in_test & (day % 8 == 0)
    )
    frame[~gaps].to_csv(path, index=False)
    run_dir = tmp_path / "run"
    run_experiment(
        experiment(f"table:{path}", methods=["equal-weight"], cost_multiples=[1]),
        run_dir,
        workers=1,
        progress=False,
    )
    job = json.loads((run_dir / "jobs" / "equal-weight--offline--seed0--x1" / "job.json").read_text())
    assert job["cleaning"]["kept"] == ["S0", "S1", "S3"] and list(job["cleaning"]["dropped"]) == ["S2"]
    ((_, result),) = load_finished_jobs(run_dir)
    assert result.tickers == ("S0", "S1", "S3")


def test_rerun_skips_finished_jobs_without_touching_them(tmp_path, table, monkeypatch):
    run_dir = tmp_path / "run"
    run_experiment(experiment(table), run_dir, workers=1, progress=False)
    before = file_stats(run_dir)
    calls = []
    monkeypatch.setattr(runner, "backtest", lambda *a, **k: calls.append(a) or backtest(*a, **k))
    again = run_experiment(experiment(table), run_dir, workers=1, progress=False)
    assert again.finished == [] and len(again.skipped) == 4 and again.ok
    assert calls == [] and file_stats(run_dir) == before and len(before) == 16

    # A leftover without DONE (a killed attempt) is removed and rerun; the others stay untouched.
    stale = run_dir / "jobs" / "momentum--offline--seed0--x3"
    (stale / "DONE").unlink()
    (stale / "half-written.tmp").write_text("junk")
    third = run_experiment(experiment(table), run_dir, workers=1, progress=False)
    assert third.finished == ["momentum--offline--seed0--x3"] and len(calls) == 1
    assert not (stale / "half-written.tmp").exists() and (stale / "DONE").exists()
    after = file_stats(run_dir)
    assert {k: v for k, v in after.items() if "x3" not in k or "equal" in k} == {
        k: v for k, v in before.items() if "x3" not in k or "equal" in k
    }


def test_resuming_with_a_different_experiment_is_refused(tmp_path, table):
    run_dir = tmp_path / "run"
    run_experiment(experiment(table, cost_multiples=[1]), run_dir, workers=1, progress=False)
    with pytest.raises(UserError, match="differs in cost_multiples\\); use a new run directory"):
        run_experiment(experiment(table, cost_multiples=[1, 5]), run_dir, workers=1, progress=False)
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an experiment run directory"):
        run_experiment(experiment(table), other, workers=1, progress=False)


def test_protocol_outside_the_data_fails_before_writing_anything(tmp_path, table):
    exp = experiment(table, protocol={**OFFLINE, "test": ["2023-01-01", "2023-06-30"]})
    with pytest.raises(UserError, match="protocol: test: no trading days"):
        run_experiment(exp, tmp_path / "run", workers=1, progress=False)
    assert not (tmp_path / "run").exists()


def test_ray_backend_without_ray_says_how_to_install_it(tmp_path, table, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(UserError, match=r"pip install 'trustfolio\[ray\]'"):
        run_experiment(experiment(table), tmp_path / "run", backend="ray", progress=False)
    assert not (tmp_path / "run").exists()
    with pytest.raises(UserError, match="backend must be"):
        run_experiment(experiment(table), tmp_path / "run", backend="dask", progress=False)


def test_a_failing_method_is_reported_and_the_others_finish(tmp_path, table):
    # Two worker processes: they import `runner_helpers` (from `imports:`) to know test-broken.
    exp = experiment(
        table, methods=["equal-weight", "test-broken"], imports=["runner_helpers"], cost_multiples=[1]
    )
    run_dir = tmp_path / "run"
    summary = run_experiment(exp, run_dir, workers=2, progress=False)
    assert summary.finished == ["equal-weight--offline--seed0--x1"]
    assert summary.failed == {"test-broken--offline--seed0--x1": "RuntimeError: boom on purpose"}
    broken = run_dir / "jobs" / "test-broken--offline--seed0--x1"
    assert not (broken / "DONE").exists()
    error = (broken / "error.txt").read_text()
    assert error.startswith("RuntimeError: boom on purpose\n") and "Traceback" in error
    assert [spec.method for spec, _ in load_finished_jobs(run_dir)] == ["equal-weight"]
    again = run_experiment(exp, run_dir, workers=1, progress=False)  # failed jobs are retried
    assert again.skipped == ["equal-weight--offline--seed0--x1"] and list(again.failed) == list(
        summary.failed
    )


def test_a_killed_run_resumes_without_recomputing_finished_jobs(tmp_path, table):
    log = tmp_path / "builds.log"
    path = write_yaml(
        tmp_path / "slow.yaml",
        {
            "dataset": table,
            "protocol": OFFLINE,
            "methods": [{"name": "test-slow", "config": {"sleep": 0.4, "log": str(log)}}],
            "seeds": 6,
            "reference": None,
            "imports": ["runner_helpers"],
        },
    )
    run_dir = tmp_path / "run"
    code = (
        f"import sys; sys.path.insert(0, {str(runner_helpers.FIXTURES)!r})\n"
        "from trustfolio.runner import run_experiment\n"
        f"run_experiment({str(path)!r}, {str(run_dir)!r}, workers=1, progress=False)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stderr=subprocess.PIPE)
    done: list[Path] = []
    deadline = time.monotonic() + 60
    while not done and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
        done = list(run_dir.glob("jobs/*/DONE"))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert done, f"no job finished before the deadline: {process.stderr.read().decode()[-2000:]}"
    done = list(run_dir.glob("jobs/*/DONE"))
    assert 1 <= len(done) < 6
    before = {p.parent.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done}

    summary = run_experiment(Experiment.from_yaml(path), run_dir, workers=1, progress=False)
    assert (
        sorted(summary.skipped) == sorted(before) and len(summary.finished) == 6 - len(before) and summary.ok
    )
    assert {name: (run_dir / "jobs" / name / "DONE").stat() for name in before} and all(
        ((run_dir / "jobs" / n / "DONE").stat().st_ino, (run_dir / "jobs" / n / "DONE").stat().st_mtime_ns)
        == s
        for n, s in before.items()
    )
    builds = log.read_text().splitlines()
    counts = {f"offline seed{s}": builds.count(f"offline seed{s}") for s in range(6)}
    for name in before:  # finished before the kill: built exactly once
        assert counts[f"offline {name.split('--')[2]}"] == 1
    assert (
        all(n in (1, 2) for n in counts.values()) and sum(counts.values()) <= 6 + 1
    )  # at most one in flight
    assert len(list(run_dir.glob("jobs/*/DONE"))) == 6
    assert all(isinstance(r, BacktestResult) for _, r in load_finished_jobs(run_dir))
