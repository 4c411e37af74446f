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
        (["backtest", "--strategy", "equal-weight", "--start", "01/04/2019"], ["01/04/2019", "YYYY-MM-DD"]),
        (["train", "sac", "--train-start", "2019/01/04"], ["2019/01/04", "YYYY-MM-DD"]),
        (["backtest", "-s", "equal-weight", "-s", "momentum"], ["once", "equal-weight", "momentum", "max-sharpe"]),
        (["backtest", "-s", "momentum", "--param", "lookbak=63"], ["lookbak", "lookback", "top_k", "rebalance_every"]),
        (["backtest", "-s", "momentum", "--param", "lookback"], ["lookback", "NAME=VALUE"]),
        (["backtest", "-s", "equal-weight", "--param", "window=3"], ["window", "no parameters"]),
        (["train", "sac", "--steps", "0"], ["--steps", ">= 1"]),
        (["train", "sac", "--on-outliers", "drop"], ["drop", "fail, warn, clip"]),
        (["data", "inspect", "yahoo-dir:/no/such/dir"], ["/no/such/dir"]),
        (["train", "no-such-agent"], ["no-such-agent"]),
        (["train", "sac", "--budget", "huge"], ["huge"]),
        (["train", "metatrader", "--config", "no-such-config.yaml"], ["no-such-config.yaml"]),
        (["evaluate", "/no/such/run"], ["/no/such/run"]),
        (["reproduce", "metatrader-table9", "--data-dir", "."], ["metatrader-table9"]),
        (["reproduce", "metatrader-table1", "--data-dir", "/no/such/csi"], ["/no/such/csi"]),
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


SMALL_EXPERIMENT = """
name: small
dataset: sp500
protocol: {kind: offline, train: [2015-01-01, 2021-12-31], test: [2022-01-03, 2022-06-30]}
methods: [market, equal-weight, buy-and-hold, min-variance, momentum]
seeds: [0, 1]
cost_bps: 10
cost_multiples: [1, 3]
reference: equal-weight
"""


def test_failed_run_leaves_no_directory(monkeypatch, capsys, tmp_path: Path):
    experiment = tmp_path / "late.yaml"
    experiment.write_text(SMALL_EXPERIMENT.replace("[2022-01-03, 2022-06-30]", "[2030-01-02, 2030-06-28]"))
    out = tmp_path / "runs"
    code, _, err = run_cli(monkeypatch, capsys, "run", str(experiment), "--out", str(out), "--workers", "1")
    assert_one_line_error(code, err, "2030")
    assert not out.exists() or list(out.iterdir()) == []


def test_bad_experiment_field_is_one_line(monkeypatch, capsys, tmp_path: Path):
    experiment = tmp_path / "bad.yaml"
    experiment.write_text(SMALL_EXPERIMENT.replace("seeds: [0, 1]", "seeds: [zero]"))
    code, _, err = run_cli(monkeypatch, capsys, "run", str(experiment), "--out", str(tmp_path / "runs"))
    assert_one_line_error(code, err, "seeds", "bad.yaml")


def test_run_writes_metrics_daily_and_report_and_resumes(monkeypatch, capsys, tmp_path: Path):
    experiment = tmp_path / "small.yaml"
    experiment.write_text(SMALL_EXPERIMENT)
    out = tmp_path / "runs"
    code, stdout, err = run_cli(monkeypatch, capsys, "run", str(experiment), "--out", str(out), "--workers", "1")
    assert code == 0, err
    run_dir = out / "small"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = {"market", "equal-weight", "buy-and-hold", "min-variance", "momentum"}
    assert set(metrics["strategies"]) == expected
    for values in metrics["strategies"].values():
        assert {"CR", "AR", "SR", "MDD", "turnover", "total_costs"} <= set(values)
    # metrics.json agrees with the job's own saved backtest (deterministic: one run, seed 0)
    job = json.loads((run_dir / "jobs" / "equal-weight--offline--seed0--x1" / "metrics.json").read_text())
    assert metrics["strategies"]["equal-weight"]["CR"] == pytest.approx(job["strategies"]["equal-weight"]["CR"], rel=1e-9)
    daily = pd.read_parquet(run_dir / "daily.parquet")
    assert {"date", "strategy", "value", "return"} <= set(daily.columns)
    assert not daily.duplicated(["date", "strategy"]).any()
    assert set(daily["strategy"]) == expected
    assert daily.groupby("strategy").size().nunique() == 1  # every strategy covers the same days
    last = daily[daily["strategy"] == "equal-weight"]["value"].iloc[-1]
    assert last - 1.0 == pytest.approx(metrics["strategies"]["equal-weight"]["CR"], rel=1e-6)
    html = (run_dir / "report.html").read_text()
    assert "data:image/png;base64," in html and "equal-weight" in html
    assert (run_dir / "cumulative_return.png").stat().st_size > 1000
    assert "equal-weight" in stdout and "report:" in stdout
    # rerunning the same command skips every finished job
    done = {p: p.stat().st_mtime_ns for p in run_dir.glob("jobs/*/DONE")}
    assert len(done) == 10  # 5 deterministic methods × seed 0 × 2 cost multiples
    code, stdout, err = run_cli(monkeypatch, capsys, "run", str(experiment), "--out", str(out), "--workers", "1")
    assert code == 0, err
    assert "0 run now, 10 already done" in stdout.replace("\n", " ")
    assert {p: p.stat().st_mtime_ns for p in run_dir.glob("jobs/*/DONE")} == done


def test_report_rebuilds_from_a_run_dir(monkeypatch, capsys, tmp_path: Path):
    code, _, err = run_cli(monkeypatch, capsys, "report", str(tmp_path / "nothing-here"))
    assert_one_line_error(code, err, "nothing-here")


def test_train_metatrader_with_a_budget_named_by_config_then_evaluate(monkeypatch, capsys, tmp_path):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep one thread inside the command
    out = tmp_path / "mt"
    code, stdout, err = run_cli(monkeypatch, capsys, "train", "metatrader", "--config", "quick", "--steps", "8",
                                "--out", str(out))  # fmt: skip
    assert code == 0, err
    run = json.loads((out / "run.json").read_text())
    assert run["budget"] == "quick" and run["config"]["slices"] == 8 and run["config"]["steps"] == 8
    assert (out / "fit" / "checkpoint.pt").is_file() and (out / "agent.pt").is_file()
    code, stdout, err = run_cli(monkeypatch, capsys, "evaluate", str(out), "--start", "2020-01-02",
                                "--end", "2020-12-31")  # fmt: skip
    assert code == 0, err
    document = json.loads((out / "metrics.json").read_text())
    assert "test window: 2020-01-02 → 2020-12-31\n" in stdout
    assert set(document["strategies"]) == {"metatrader", "equal-weight"}
    assert (out / "overestimation.json").is_file()
    monkeypatch.undo()
    torch.set_num_threads(threads)


def test_backtest_takes_strategy_parameters(monkeypatch, capsys, tmp_path: Path):
    from trustfolio.data.cleaning import clean
    from trustfolio.data.loaders import load_dataset
    from trustfolio.evaluation.backtest import backtest
    from trustfolio.evaluation.result import BacktestResult
    from trustfolio.strategies import make_strategy

    out = tmp_path / "momentum"
    code, stdout, err = run_cli(monkeypatch, capsys, "backtest", "-s", "momentum", "--param", "lookback=5",
                                "--param", "top_k=2", "--start", "2022-01-03", "--end", "2022-03-31",
                                "--out", str(out))  # fmt: skip
    assert code == 0, err
    saved = BacktestResult.load(out)
    assert saved.config["strategy_params"] == {"lookback": 5, "top_k": 2}
    raw = load_dataset("sp500")
    i0, i1 = raw.span("2022-01-03", "2022-03-31")
    panel, _ = clean(raw.take_days(slice(0, i1)), train_end=raw.dates[i0 - 1])
    direct = backtest(make_strategy("momentum", lookback=5, top_k=2), panel, "2022-01-03", "2022-03-31")
    assert saved.metrics()["CR"] == pytest.approx(direct.metrics()["CR"], rel=1e-12)
    default = backtest(make_strategy("momentum"), panel, "2022-01-03", "2022-03-31")
    assert saved.metrics()["CR"] != pytest.approx(default.metrics()["CR"], rel=1e-6)


def test_backtest_table_shows_idle_cash_and_warns_above_5_percent(monkeypatch, capsys):
    window = ("--start", "2022-01-03", "--end", "2022-03-31", "--cost-bps", "0")
    code, stdout, err = run_cli(monkeypatch, capsys, "backtest", "-s", "equal-weight", *window, "--initial-cash", "3000")
    assert code == 0, err
    assert "idle cash" in stdout
    warnings = [line for line in err.splitlines() if "idle" in line]
    assert len(warnings) == 1 and "equal-weight" in warnings[0] and "--no-lots" in warnings[0], err
    code, stdout, err = run_cli(monkeypatch, capsys, "backtest", "-s", "equal-weight", *window, "--no-lots")
    assert code == 0, err
    assert "idle cash" in stdout and "idle" not in err


def spiked_table(tmp_path: Path) -> Path:
    """A long table of three calm stocks over 300 business days, one close of BBB multiplied by 100."""
    import numpy as np

    rng = np.random.default_rng(0)
    dates = pd.bdate_range("2020-01-02", periods=300)
    frames = []
    for k, ticker in enumerate(("AAA", "BBB", "CCC")):
        close = 20.0 * (k + 1) * np.exp(np.cumsum(rng.normal(0.0003, 0.01, len(dates))))
        if ticker == "BBB":
            close[250] *= 100.0
        frames.append(pd.DataFrame({"date": dates, "ticker": ticker, "close": close, "volume": 1000.0}))
    path = tmp_path / "prices.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path


def test_a_spiked_table_is_refused_unless_told_otherwise(monkeypatch, capsys, tmp_path: Path):
    table = spiked_table(tmp_path)
    spike_day = str(pd.bdate_range("2020-01-02", periods=300)[250].date())
    window = ("--dataset", f"table:{table}", "--start", "2020-09-01", "--end", "2021-02-19", "--no-lots")
    code, _, err = run_cli(monkeypatch, capsys, "backtest", "-s", "equal-weight", *window)
    assert_one_line_error(code, err, "BBB", spike_day, "--on-outliers")
    code, _, err = run_cli(monkeypatch, capsys, "data", "inspect", f"table:{table}")
    assert_one_line_error(code, err, "BBB", spike_day)
    code, stdout, err = run_cli(monkeypatch, capsys, "data", "inspect", f"table:{table}", "--on-outliers", "warn")
    assert code == 0, err
    assert "spike" in stdout and "BBB" in stdout and spike_day in stdout
    code, stdout, err = run_cli(monkeypatch, capsys, "backtest", "-s", "equal-weight", *window, "--on-outliers", "clip",
                                "--out", str(tmp_path / "clipped"))  # fmt: skip
    assert code == 0, err
    from trustfolio.evaluation.result import BacktestResult

    assert abs(BacktestResult.load(tmp_path / "clipped").metrics()["CR"]) < 1.0  # not the +25 of a ×100 close
    code, _, err = run_cli(monkeypatch, capsys, "backtest", "-s", "equal-weight", *window, "--on-outliers", "ignore")
    assert_one_line_error(code, err, "fail, warn, clip")


def test_version_names_the_package_version(monkeypatch, capsys):
    from trustfolio import __version__

    code, stdout, err = run_cli(monkeypatch, capsys, "--version")
    assert code == 0, err
    assert stdout.startswith(f"trustfolio {__version__}") and len(stdout.strip().splitlines()) == 1


def test_train_help_lists_every_agent_with_one_line(monkeypatch, capsys):
    from trustfolio.agents.registry import AGENTS

    monkeypatch.setenv("COLUMNS", "250")
    code, stdout, _ = run_cli(monkeypatch, capsys, "train", "--help")
    assert code == 0
    for name, (_, description) in AGENTS.items():
        assert any(line.split()[:1] == [name] and description in line for line in stdout.splitlines()), name


def test_backtest_table_shows_sortino_and_calmar(monkeypatch, capsys):
    code, stdout, err = run_cli(monkeypatch, capsys, "backtest", "-s", "equal-weight", "--start", "2022-01-03",
                                "--end", "2022-03-31")  # fmt: skip
    assert code == 0, err
    rows = {line.split("│")[1].strip() for line in stdout.splitlines() if line.count("│") >= 2}
    assert {"Sortino", "Calmar", "SR", "MDD"} <= rows, stdout


def test_library_warnings_become_one_line_each_or_nothing(monkeypatch, capsys):
    import warnings

    def noisy() -> None:
        for _ in range(3):
            warnings.warn("min-variance on 2020-03-02: skfolio fit failed (the price of C did not move)", stacklevel=1)
        warnings.warn("The covariance matrix is not positive definite. The Clipping algorithm will be used", stacklevel=1)
        warnings.warn("Series.__getitem__ treating keys as positions is deprecated", FutureWarning, stacklevel=1)
        raise SystemExit(0)

    command = next(c for c in cli.app.registered_commands if c.name == "datasets")
    monkeypatch.setattr(command, "callback", noisy)
    code, _, err = run_cli(monkeypatch, capsys, "datasets")
    assert code == 0
    assert err.splitlines() == ["warning: min-variance on 2020-03-02: skfolio fit failed (the price of C did not move)"]


def test_yfinance_noise_is_muted_and_unknown_tickers_are_one_line(monkeypatch, capsys, tmp_path: Path):
    import logging
    import types
    import warnings

    import numpy as np

    def download(symbols, **_):
        logging.getLogger("yfinance").error("1 Failed download: ['NOPE']: YFTzMissingError('possibly delisted')")
        warnings.warn("'H' is deprecated, use 'h'", FutureWarning, stacklevel=1)
        dates = pd.bdate_range("2020-01-02", periods=5)
        columns = pd.MultiIndex.from_product([["Open", "High", "Low", "Close", "Volume"], symbols])
        frame = pd.DataFrame(1.0, index=dates, columns=columns)
        frame.loc[:, (slice(None), "NOPE")] = np.nan
        return frame

    monkeypatch.setitem(sys.modules, "yfinance", types.SimpleNamespace(download=download))
    monkeypatch.setenv("TRUSTFOLIO_CACHE", str(tmp_path))
    code, _, err = run_cli(monkeypatch, capsys, "data", "inspect", "yahoo:AAPL,NOPE")
    assert_one_line_error(code, err, "unknown tickers NOPE")
