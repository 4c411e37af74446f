"""Comparison over a synthetic run directory with planted differences between methods.

`write_run_dir` builds a run directory exactly as the runner lays it out (experiment.yaml,
jobs/<job_id>/job.json + BacktestResult.save + DONE, error.txt for a failed job) from synthetic
daily returns: a common market path; ``equal-weight`` (the reference, deterministic: seed 0 only)
earns the market; ``winner`` earns the market plus a clear daily drift; ``noise`` earns the market
plus zero-mean noise (demeaned, so it has no edge at all). Higher cost multiples subtract a drag.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from trustfolio.errors import DataError, UserError
from trustfolio.evaluation import snooping
from trustfolio.evaluation.comparison import CHAINED, Comparison, chain_results
from trustfolio.evaluation.metrics import METRIC_NAMES
from trustfolio.evaluation.result import BacktestResult

TOTAL_DAYS = 600
DATES = np.busday_offset(np.datetime64("2020-01-01"), np.arange(TOTAL_DAYS), roll="forward").astype(
    "datetime64[D]"
)
MARKET = np.random.default_rng(0).normal(0.0003, 0.01, TOTAL_DAYS)
WINNER_DRIFT = 0.001  # 25% a year over the market: a Newey-West t of about 8 over 600 days
COST_DRAG = 0.0003  # daily return lost per extra cost multiple


def method_returns(method: str, seed: int) -> np.ndarray:
    """Daily returns of `method` over the whole timeline (before windows and costs)."""
    rng = np.random.default_rng(1000 + seed)
    if method == "equal-weight":
        return MARKET.copy()
    if method == "winner":
        return MARKET + rng.normal(WINNER_DRIFT, 0.003, TOTAL_DAYS)
    noise = rng.normal(0.0, 0.003, TOTAL_DAYS)
    return MARKET + noise - noise.mean()


def window_dicts(n_windows: int) -> list[dict]:
    """Consecutive test windows splitting the timeline (Window.to_dict layout)."""
    bounds = np.linspace(0, TOTAL_DAYS, n_windows + 1).astype(int)
    names = ["offline"] if n_windows == 1 else [f"online-{k + 1}" for k in range(n_windows)]
    return [
        {
            "name": name,
            "train_start": "2015-01-01",
            "train_end": "2019-12-31",
            "test_start": str(DATES[a]),
            "test_end": str(DATES[b - 1]),
            "finetune_start": None,
            "finetune_end": None,
            "validation_start": None,
            "validation_end": None,
        }
        for name, a, b in zip(names, bounds[:-1], bounds[1:], strict=True)
    ]


def window_result(method: str, seed: int, window: dict, multiple: float) -> BacktestResult:
    days = (DATES >= np.datetime64(window["test_start"])) & (DATES <= np.datetime64(window["test_end"]))
    returns = method_returns(method, seed)[days] - COST_DRAG * (multiple - 1.0)
    returns[0] = 0.0  # the first day of a backtest only invests the capital
    values = 1e6 * np.cumprod(1.0 + returns)
    T = len(returns)
    return BacktestResult(
        name=method,
        dates=DATES[days],
        values=values,
        returns=returns,
        weights=np.full((T, 2), 0.5),
        turnover=np.full(T, 0.01),
        costs=np.full(T, 10.0 * multiple),
        tickers=("AAA", "BBB"),
        trading_days_per_year=252,
    )


def write_run_dir(
    root: Path,
    *,
    seeds=(0, 1, 2),
    n_windows: int = 1,
    multiples=(1.0,),
    methods=("equal-weight", "winner", "noise"),
    failing=(),
) -> Path:
    """A run directory in the runner's layout; methods in `failing` get error.txt and no DONE."""
    run_dir = root
    experiment = {
        "name": "planted",
        "dataset": "synthetic",
        "protocol": {"kind": "online" if n_windows > 1 else "offline"},
        "methods": [{"name": m, "config": {}} for m in (*methods, *failing)],
        "seeds": list(seeds),
        "cost_bps": 10.0,
        "cost_multiples": list(multiples),
        "reference": "equal-weight",
    }
    (run_dir / "jobs").mkdir(parents=True)
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump(experiment, sort_keys=False))
    for method in (*methods, *failing):
        for seed in [0] if method == "equal-weight" else seeds:
            for window in window_dicts(n_windows):
                for multiple in multiples:
                    job_id = f"{method}--{window['name']}--seed{seed}--x{multiple:g}"
                    job_dir = run_dir / "jobs" / job_id
                    job_dir.mkdir()
                    meta = {
                        "job_id": job_id,
                        "method": method,
                        "method_config": {},
                        "seed": seed,
                        "window": window,
                        "cost_bps": 10.0 * multiple,
                        "cost_multiple": multiple,
                        "dataset": "synthetic",
                    }
                    if method in failing:  # the runner writes job.json only with a result
                        (job_dir / "error.txt").write_text("RuntimeError: planted failure\n\nTraceback …\n")
                        continue
                    (job_dir / "job.json").write_text(json.dumps(meta))
                    window_result(method, seed, window, multiple).save(job_dir)
                    (job_dir / "DONE").write_text("")
    return run_dir


@pytest.fixture
def one_window_dir(tmp_path) -> Path:
    return write_run_dir(tmp_path / "one-window")


@pytest.fixture
def three_windows_dir(tmp_path) -> Path:
    """Three consecutive test windows (online adaptation), cost multiples ×1 and ×3."""
    return write_run_dir(tmp_path / "three-windows", n_windows=3, multiples=(1.0, 3.0))


@pytest.fixture
def one_window(one_window_dir) -> Comparison:
    return Comparison.from_run_dir(one_window_dir)


@pytest.fixture
def three_windows(three_windows_dir) -> Comparison:
    return Comparison.from_run_dir(three_windows_dir)


def test_summary_is_mean_and_std_of_the_per_seed_metrics(one_window, one_window_dir):
    summary = one_window.summary()
    assert list(summary.index) == ["equal-weight", "winner", "noise"]
    for method, seeds in (("winner", (0, 1, 2)), ("noise", (0, 1, 2)), ("equal-weight", (0,))):
        # hand computation straight from the saved results, not through per_seed
        per_seed = [
            BacktestResult.load(one_window_dir / "jobs" / f"{method}--offline--seed{s}--x1").metrics()
            for s in seeds
        ]
        assert summary.loc[method, "n"] == len(seeds)
        for metric in METRIC_NAMES:
            values = np.array([m[metric] for m in per_seed])
            assert summary.loc[method, f"{metric}_mean"] == pytest.approx(values.mean(), rel=1e-12)
            if len(seeds) > 1:
                assert summary.loc[method, f"{metric}_std"] == pytest.approx(values.std(ddof=1), rel=1e-9)
            else:
                assert math.isnan(summary.loc[method, f"{metric}_std"])
    assert summary.loc["winner", "CR_mean"] > summary.loc["equal-weight", "CR_mean"] + 0.5


def test_per_seed_has_one_row_per_method_seed_window(one_window, three_windows):
    table = one_window.per_seed()
    assert len(table) == 1 + 3 + 3 and set(table["window"]) == {"offline"}
    table = three_windows.per_seed(3.0)
    # 7 (method, seed) pairs × (3 windows + the chain)
    assert len(table) == 7 * 4
    assert (
        table.groupby(["method", "seed"])["window"].apply(list)
        == [["online-1", "online-2", "online-3", CHAINED]] * 7
    ).all()


def test_chained_windows_multiply_growths(three_windows, three_windows_dir):
    jobs = three_windows_dir / "jobs"
    windows = [BacktestResult.load(jobs / f"winner--online-{k}--seed1--x1") for k in (1, 2, 3)]
    growth = np.prod([r.values[-1] / r.values[0] for r in windows])
    chained = chain_results(windows)
    assert chained.CR == pytest.approx(growth - 1.0, rel=1e-12)
    assert len(chained.dates) == sum(len(r.dates) for r in windows) == TOTAL_DAYS
    # the chain's returns are the windows' returns laid end to end
    np.testing.assert_allclose(
        chained.values[1:] / chained.values[:-1] - 1.0,
        np.concatenate([r.returns for r in windows])[1:],
        atol=1e-12,
    )
    # costs are rescaled to the chained capital: window k's costs times the growth before it
    expected_costs = sum(
        r.costs.sum() / r.values[0] * np.prod([w.values[-1] / w.values[0] for w in windows[:k]])
        for k, r in enumerate(windows)
    )
    assert chained.total_costs == pytest.approx(expected_costs, rel=1e-12)

    table = three_windows.per_seed()
    row = table[(table["method"] == "winner") & (table["seed"] == 1) & (table["window"] == CHAINED)]
    assert row["CR"].item() == pytest.approx(growth - 1.0, rel=1e-12)
    assert three_windows.summary().loc["winner", "n"] == 3

    with pytest.raises(DataError, match="overlap"):
        chain_results([windows[1], windows[0]])


def test_daily_returns_are_the_mean_across_seeds_of_the_chain(three_windows, three_windows_dir):
    returns = three_windows.daily_returns()
    assert set(returns) == {"equal-weight", "winner", "noise"}
    jobs = three_windows_dir / "jobs"
    per_seed = [
        np.concatenate(
            [BacktestResult.load(jobs / f"noise--online-{k}--seed{s}--x1").returns for k in (1, 2, 3)]
        )[1:]
        for s in (0, 1, 2)
    ]
    np.testing.assert_allclose(returns["noise"].to_numpy(), np.mean(per_seed, axis=0), atol=1e-15)
    assert (returns["noise"].index == pd.DatetimeIndex(DATES[1:])).all()


def test_significance_flags_the_planted_winner_and_not_the_noise(one_window):
    table = one_window.significance(reps=500)
    assert set(table.index) == {"winner", "noise"}
    # every seed of the winner is significant on its own, and so is the Holm-combined statement
    assert max(table.loc["winner", "nw_p_seeds"]) < 0.001 and max(table.loc["winner", "boot_p_seeds"]) < 0.01
    assert table.loc["winner", "nw_p_holm"] < 0.001 and table.loc["winner", "q_nw"] < 0.01
    assert table.loc["winner", "nw_significant"] == 3 and table.loc["winner", "n_seeds"] == 3
    assert table.loc["winner", "nw_statement"].startswith("significant at 5 % after Holm in 3 of 3 seeds")
    returns = one_window.daily_returns()
    excess = returns["winner"] - returns["equal-weight"]  # the mean excess is linear in the seeds
    assert table.loc["winner", "mean_excess"] == pytest.approx(excess.mean() * 252, rel=1e-12)
    assert table.loc["noise", "nw_p_median"] > 0.2 and table.loc["noise", "q_nw"] > 0.2
    assert table.loc["noise", "nw_significant"] == 0
    assert table.attrs["reference"] == "equal-weight"
    assert table.attrs["reality_check_p"] < 0.05 and table.attrs["spa_p"] < 0.05
    assert table.attrs["rc_best"].startswith("winner#") and table.attrs["dsr_series"].startswith("winner#")
    # the DSR is of the best per-seed series, deflated for the 7 series tried (1 + 3 + 3 seeds)
    dsr = table.attrs["dsr"]
    arrays = {
        f"{m}#{s}": r.to_numpy()
        for m, by_seed in one_window.seed_returns().items()
        for s, r in by_seed.items()
    }
    expected = snooping.deflated_sharpe_ratio(
        arrays[table.attrs["dsr_series"]], n_trials=7, sharpe_variance=snooping.trial_sharpe_variance(arrays)
    )
    assert table.attrs["n_trials"] == 7 and dsr.dsr == pytest.approx(expected.dsr, rel=1e-12)
    assert dsr.sr > dsr.sr0 > 0 and dsr.dsr > 0.5

    with pytest.raises(UserError, match="reference 'momentum'"):
        one_window.significance("momentum")


def test_cost_stress_and_per_period(three_windows, three_windows_dir):
    stress = three_windows.cost_stress()
    assert list(stress.index) == [(m, c) for m in ("equal-weight", "winner", "noise") for c in (1.0, 3.0)]
    for method in ("winner", "noise"):
        assert stress.loc[(method, 3.0), "CR_mean"] == three_windows.summary(3.0).loc[method, "CR_mean"]
        assert stress.loc[(method, 3.0), "CR_mean"] < stress.loc[(method, 1.0), "CR_mean"]

    period = three_windows.per_period()
    assert list(period.index) == [
        (m, f"online-{k}") for m in ("equal-weight", "winner", "noise") for k in (1, 2, 3)
    ]
    crs = [
        BacktestResult.load(three_windows_dir / "jobs" / f"winner--online-2--seed{s}--x1").CR
        for s in (0, 1, 2)
    ]
    assert period.loc[("winner", "online-2"), "CR_mean"] == pytest.approx(np.mean(crs), rel=1e-12)
    assert period.loc[("winner", "online-2"), "CR_std"] == pytest.approx(np.std(crs, ddof=1), rel=1e-9)
    assert period.loc[("equal-weight", "online-2"), "n"] == 1


def test_failed_methods_are_reported_not_dropped(tmp_path):
    comparison = Comparison.from_run_dir(write_run_dir(tmp_path, failing=("momentum",)))
    assert comparison.methods == ["equal-weight", "winner", "noise", "momentum"]
    assert "RuntimeError: planted failure" in comparison.missing["momentum"]
    assert len(comparison.failed) == 3 and all("planted failure" in e for e in comparison.failed.values())
    summary = comparison.summary()
    assert summary.loc["momentum", "n"] == 0 and math.isnan(summary.loc["momentum", "CR_mean"])


def test_a_seed_missing_a_window_has_no_chain(tmp_path):
    run_dir = write_run_dir(tmp_path, n_windows=3)
    (run_dir / "jobs" / "winner--online-2--seed0--x1" / "DONE").unlink()
    comparison = Comparison.from_run_dir(run_dir)
    assert comparison.summary().loc["winner", "n"] == 2
    table = comparison.per_seed()
    assert set(table[(table["method"] == "winner") & (table["seed"] == 0)]["window"]) == {
        "online-1",
        "online-3",
    }


def test_bad_run_directories_raise_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        Comparison.from_run_dir(tmp_path / "nowhere")
    run_dir = write_run_dir(tmp_path / "all-failed", methods=(), failing=("winner",))
    with pytest.raises(UserError, match="no finished job.*planted failure"):
        Comparison.from_run_dir(run_dir)


def test_run_daily_parquet_keeps_each_seed_beside_the_mean_and_no_placeholder_return(one_window, tmp_path):
    from trustfolio.quickstart import write_tables

    write_tables(one_window, tmp_path)
    daily = pd.read_parquet(tmp_path / "daily.parquet")
    assert {"return_seed0", "return_seed1", "return_seed2"} <= set(daily.columns)
    for method, by_seed in one_window.chains(1.0).items():
        rows = daily[daily["strategy"] == method].reset_index(drop=True)
        assert rows["return"].isna().tolist() == [True] + [False] * (len(rows) - 1)  # day 0 has no return
        seed_columns = [f"return_seed{seed}" for seed in by_seed]
        for seed, chained in by_seed.items():
            np.testing.assert_array_equal(rows[f"return_seed{seed}"].to_numpy()[1:], chained.returns[1:])
            assert np.isnan(rows[f"return_seed{seed}"].iloc[0])
        np.testing.assert_allclose(rows["return"], rows[seed_columns].mean(axis=1), rtol=1e-15)
        others = [c for c in daily.columns if c.startswith("return_seed") and c not in seed_columns]
        assert rows[others].isna().all().all()  # equal-weight ran seed 0 only
        mean_metrics = one_window.summary().loc[method]
        if len(by_seed) == 1:  # one seed: the file's returns are the seed's, so the metrics match
            r = rows["return"]
            assert (1.0 + r).prod() - 1.0 == pytest.approx(mean_metrics["CR_mean"], rel=1e-9)
            assert r.mean() / r.std() * np.sqrt(252) == pytest.approx(mean_metrics["SR_mean"], rel=1e-9)
