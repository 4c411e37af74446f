"""One name for one thing: `backtest --out`, `evaluate` and `run` (and every job of a run) write
`metrics.json` with one schema, read by one reader (`trustfolio.evaluation.result.read_metrics`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from trustfolio import cli
from trustfolio.errors import DataError
from trustfolio.evaluation.metrics import METRIC_NAMES
from trustfolio.evaluation.result import (
    METRICS_KEYS,
    METRICS_SCHEMA,
    BacktestResult,
    read_metrics,
    write_metrics,
)

TEST = ("2019-01-01", "2019-12-31")
EXPERIMENT = f"""
name: one-year
dataset: sp500
protocol: {{kind: offline, train: [2015-01-01, 2018-12-31], test: [{TEST[0]}, {TEST[1]}]}}
methods: [equal-weight, market]
seeds: 1
cost_bps: 10
cost_multiples: [1]
reference: equal-weight
"""


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["trustfolio", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def test_backtest_evaluate_and_run_write_the_same_file(monkeypatch, capsys, tmp_path: Path):
    import torch

    monkeypatch.setenv("TRUSTFOLIO_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # one thread inside the commands
    try:
        code, stdout, err = run_cli(monkeypatch, capsys, "backtest", "-s", "equal-weight", "--start", TEST[0],
                                    "--end", TEST[1], "--out", str(tmp_path / "bt"))  # fmt: skip
        assert code == 0, err
        assert str(tmp_path / "bt" / "metrics.json") in stdout.replace("\n", "")
        (tmp_path / "one-year.yaml").write_text(EXPERIMENT)
        code, stdout, err = run_cli(monkeypatch, capsys, "run", str(tmp_path / "one-year.yaml"), "--out",
                                    str(tmp_path / "runs"), "--workers", "1")  # fmt: skip
        assert code == 0, err
        code, _, err = run_cli(monkeypatch, capsys, "train", "sac", "--steps", "60", "--train-start", "2015-01-01",
                               "--train-end", "2018-12-31", "--out", str(tmp_path / "sac"))  # fmt: skip
        assert code == 0, err
        code, _, err = run_cli(monkeypatch, capsys, "evaluate", str(tmp_path / "sac"), "--start", TEST[0],
                               "--end", TEST[1])  # fmt: skip
        assert code == 0, err
    finally:
        monkeypatch.undo()
        torch.set_num_threads(threads)

    files = {
        "backtest --out": tmp_path / "bt" / "metrics.json",
        "run": tmp_path / "runs" / "one-year" / "metrics.json",
        "a job of the run": tmp_path / "runs" / "one-year" / "jobs" / "equal-weight--offline--seed0--x1" / "metrics.json",
        "evaluate": tmp_path / "sac" / "metrics.json",
        "evaluate's backtest": tmp_path / "sac" / "backtest" / "metrics.json",
    }
    assert not list(tmp_path.rglob("result.json"))  # the old name is gone
    documents = {what: read_metrics(path) for what, path in files.items()}
    for what, document in documents.items():
        assert list(document)[: len(METRICS_KEYS)] == list(METRICS_KEYS), what
        assert document["schema"] == METRICS_SCHEMA, what
        assert (document["start"], document["end"], document["cost_bps"]) == ("2019-01-02", "2019-12-31", 10.0), what
        for values in document["strategies"].values():
            assert set(values) == set(METRIC_NAMES), what
    # The same strategy on the same days with the same costs: the same numbers, whoever wrote them.
    cr = {what: d["strategies"]["equal-weight"]["CR"] for what, d in documents.items() if "equal-weight" in d["strategies"]}
    assert len(cr) == 4 and max(cr.values()) - min(cr.values()) < 1e-12, cr
    assert set(documents["evaluate"]["strategies_no_costs"]) == {"sac", "equal-weight"}
    assert documents["run"]["n_seeds"] == {"equal-weight": 1, "market": 1}
    # a single backtest's file is also what `BacktestResult.load` reads back
    loaded = BacktestResult.load(tmp_path / "bt")
    assert loaded.name == "equal-weight" and loaded.metrics()["CR"] == cr["backtest --out"]


def test_read_metrics_refuses_other_files_and_load_still_reads_result_json(tmp_path: Path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "metrics.json").write_text(json.dumps({"strategies": {"a": {"CR": 0.1}}}))
    with pytest.raises(DataError, match="not a trustfolio.metrics/1 file"):
        read_metrics(tmp_path / "old")
    document = write_metrics(tmp_path / "new", start="2020-01-02", end="2020-12-31", cost_bps=None,
                             strategies={"a": {"CR": float("nan")}}, note="x")  # fmt: skip
    assert read_metrics(tmp_path / "new" / "metrics.json") == document
    assert document["strategies"]["a"]["CR"] is None and document["cost_bps"] is None
    with pytest.raises(ValueError, match="required key"):
        write_metrics(tmp_path, start="2020-01-02", end="2020-12-31", cost_bps=0, strategies={}, schema="x")

    # a run directory written before metrics.json: its jobs still load
    from trustfolio.data.loaders import load_dataset
    from trustfolio.evaluation import backtest
    from trustfolio.strategies import make_strategy

    result = backtest(make_strategy("equal-weight"), load_dataset("sp500"), "2019-01-01", "2019-03-29")
    result.save(tmp_path / "job")
    saved = read_metrics(tmp_path / "job")
    legacy = {**saved["backtest"], "name": "equal-weight", "metrics": saved["strategies"]["equal-weight"]}
    (tmp_path / "job" / "metrics.json").unlink()
    (tmp_path / "job" / "result.json").write_text(json.dumps(legacy))
    assert BacktestResult.load(tmp_path / "job").metrics() == result.metrics()
