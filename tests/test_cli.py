"""The command line: user mistakes give one line and exit status 2, and leave nothing behind."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from trustfolio import cli


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["trustfolio", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (0 if code is None else int(code)), captured.out, captured.err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    for word in words:
        assert word.lower() in err.lower(), err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["backtest", "--strategy", "equal-weight", "--dataset", "nonsense"], ["nonsense"]),
        (["backtest", "--strategy", "no-such", "--dataset", "sp500"], ["no-such"]),
        (["backtest", "--strategy", "equal-weight", "--dataset", "table:/no/such/file.csv"], ["/no/such/file.csv"]),
        (["backtest", "--strategy", "equal-weight", "--start", "2021-01-01", "--end", "2020-01-01"], ["2021-01-01"]),
        (["backtest", "--strategy", "equal-weight", "--start", "not-a-date"], ["not-a-date"]),
        (["data", "inspect", "yahoo-dir:/no/such/dir"], ["/no/such/dir"]),
    ],
)
def test_user_mistakes_exit_2_with_one_line(monkeypatch, capsys, args, words):
    code, _, err = run_cli(monkeypatch, capsys, *args)
    assert_one_line_error(code, err, *words)


def test_malformed_csv_is_one_line(monkeypatch, capsys, tmp_path: Path):
    bad = tmp_path / "prices.csv"
    bad.write_text("date,ticker,close\n2020-01-02,AAA,10\n2020-01-03,AAA,abc\n2020-01-06,AAA,-1\n")
    code, _, err = run_cli(monkeypatch, capsys, "data", "inspect", f"table:{bad}")
    assert_one_line_error(code, err, "prices.csv")


def test_failed_run_leaves_no_directory(monkeypatch, capsys, tmp_path: Path):
    code, _, err = run_cli(
        monkeypatch, capsys, "run", "--out", str(tmp_path), "--name", "x", "--test-start", "2030-01-01"
    )
    assert_one_line_error(code, err)
    assert list(tmp_path.iterdir()) == []


def test_run_writes_metrics_daily_and_report(monkeypatch, capsys, tmp_path: Path):
    code, out, err = run_cli(
        monkeypatch, capsys, "run", "--out", str(tmp_path), "--name", "demo",
        "--test-start", "2022-01-03", "--test-end", "2022-06-30",
    )
    assert code == 0, err
    run_dir = tmp_path / "demo"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = {"market", "equal-weight", "buy-and-hold", "min-variance", "max-sharpe", "momentum"}
    assert set(metrics["strategies"]) == expected
    for values in metrics["strategies"].values():
        assert {"CR", "AR", "SR", "MDD"} <= set(values)
    # costs can only lower the cumulative return of a strategy that trades
    for name in ("equal-weight", "min-variance"):
        assert metrics["strategies"][name]["CR"] < metrics["strategies_no_costs"][name]["CR"]
    daily = pd.read_parquet(run_dir / "daily.parquet")
    assert {"date", "strategy", "value", "return"} <= set(daily.columns)
    assert not daily.duplicated(["date", "strategy"]).any()
    assert set(daily["strategy"]) == expected
    assert daily.groupby("strategy").size().nunique() == 1  # every strategy covers the same days
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "equal-weight" in html
    assert (run_dir / "cumulative_return.png").stat().st_size > 1000
    # no staging directories are left behind
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]
    # a second run with the same name refuses instead of overwriting
    code, _, err = run_cli(monkeypatch, capsys, "run", "--out", str(tmp_path), "--name", "demo")
    assert_one_line_error(code, err, "exists")
