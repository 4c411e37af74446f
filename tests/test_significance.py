"""Significance seed by seed: a seed average is an ensemble, never the agent that is tested.

The constructed case: a deterministic reference (1/N) and an `agent` with 3 seeds whose noise is
negatively correlated across seeds (it sums to zero on every day). Each seed's Sharpe ratio is below
the reference's, but the mean of the seeds (the noise cancels) has a higher one — the shape of the
MetaTrader run where seeds had SR 1.57–1.61, their average 1.75 and 1/N 1.74.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from test_comparison import write_run_dir
from trustfolio.evaluation import significance, snooping
from trustfolio.evaluation.comparison import Comparison, Job
from trustfolio.evaluation.experiment_report import write_comparison_report
from trustfolio.evaluation.metrics import sharpe_ratio
from trustfolio.evaluation.result import BacktestResult
from trustfolio.evaluation.stats import newey_west_test, stationary_bootstrap_test

DAYS = 750
DATES = np.busday_offset(np.datetime64("2021-01-01"), np.arange(DAYS), roll="forward").astype("datetime64[D]")


def _job(method: str, seed: int, returns: np.ndarray) -> Job:
    returns = returns.copy()
    returns[0] = 0.0  # the first day only invests the capital
    result = BacktestResult(
        name=method,
        dates=DATES,
        values=1e6 * np.cumprod(1.0 + returns),
        returns=returns,
        weights=np.full((DAYS, 2), 0.5),
        turnover=np.full(DAYS, 0.01),
        costs=np.zeros(DAYS),
        tickers=("AAA", "BBB"),
        trading_days_per_year=252,
    )
    return Job(f"{method}--offline--seed{seed}--x1", method, seed, "offline", DATES[0], 1.0, result)


@pytest.fixture(scope="module")
def ensemble_case() -> Comparison:
    rng = np.random.default_rng(7)
    z = rng.normal(size=DAYS)
    market = 0.0007 + 0.01 * (z - z.mean()) / z.std(ddof=1)  # daily SR 0.07 exactly (1.11 a year)
    noise = rng.normal(0.0, 0.01, (3, DAYS))
    noise -= noise.mean(axis=1, keepdims=True)  # no seed gains or loses from its noise on average
    noise -= noise.mean(axis=0)  # the seeds' noise sums to zero every day: negatively correlated
    seeds = market + 0.0001 + noise  # each seed: mean 0.0008, std ~0.013; their mean: SR 0.08
    jobs = [_job("equal-weight", 0, market), *(_job("agent", k, seeds[k]) for k in range(3))]
    return Comparison(jobs, methods=["equal-weight", "agent"], reference="equal-weight")


def test_the_constructed_case_is_what_it_claims(ensemble_case):
    returns = ensemble_case.seed_returns()
    reference = sharpe_ratio(returns["equal-weight"][0].to_numpy())
    seeds = [sharpe_ratio(r.to_numpy()) for r in returns["agent"].values()]
    ensemble = sharpe_ratio(ensemble_case.daily_returns()["agent"].to_numpy())
    assert max(seeds) < reference < ensemble


def test_each_seed_is_tested_and_the_ensemble_is_not_called_better(ensemble_case, tmp_path):
    table = ensemble_case.significance(reps=300)
    returns = ensemble_case.seed_returns()
    reference = returns["equal-weight"][0].to_numpy()
    direct_nw = [newey_west_test(returns["agent"][k].to_numpy() - reference).p for k in range(3)]
    direct_boot = [
        stationary_bootstrap_test(returns["agent"][k].to_numpy() - reference, reps=300, seed=0).p
        for k in range(3)
    ]
    row = table.loc["agent"]
    assert row["n_seeds"] == 3 and row["seeds"] == (0, 1, 2)
    assert row["nw_p_seeds"] == pytest.approx(direct_nw, rel=1e-12)
    assert row["boot_p_seeds"] == pytest.approx(direct_boot, rel=1e-12)
    assert row["nw_p_median"] == pytest.approx(np.median(direct_nw), rel=1e-12)
    assert row["nw_p_holm"] == pytest.approx(min(multipletests(direct_nw, method="holm")[1]), rel=1e-12)

    per_seed = ensemble_case.seed_significance(reps=300)
    assert list(per_seed.index) == [("agent", 0), ("agent", 1), ("agent", 2)]
    assert per_seed["nw_p"].tolist() == pytest.approx(direct_nw, rel=1e-12)
    assert set(per_seed["reference_series"]) == {"equal-weight#0"}

    # the best Sharpe ratio among the series the DSR deflates is the reference's, not the ensemble's
    assert table.attrs["dsr_series"] == "equal-weight#0"
    write_comparison_report(ensemble_case, tmp_path, title="ensemble")
    markdown = (tmp_path / "report.md").read_text()
    assert "Deflated Sharpe ratio of equal-weight#0" in markdown
    assert "Deflated Sharpe ratio of agent" not in markdown
    for line in markdown.splitlines():  # any superlative names a per-seed series
        if "highest Sharpe" in line:
            assert "equal-weight#0" in line and "agent " not in line
    assert "ensemble of 3 seeds (not a deployable agent)" in markdown
    sr_header = markdown.split("## Metrics")[1].splitlines()[2]
    sr_column = sr_header.split(" | ").index("SR")
    agent_row = next(line for line in markdown.splitlines() if line.startswith("| agent |"))
    assert not agent_row.split(" | ")[sr_column].startswith("**")


def test_dsr_counts_every_seed_as_a_trial(tmp_path):
    comparison = Comparison.from_run_dir(write_run_dir(tmp_path / "run"))  # 1 + 3 + 3 series
    table = comparison.significance(reps=200)
    series = {
        significance.series_name(m, s): r.to_numpy()
        for m, by_seed in comparison.seed_returns().items()
        for s, r in by_seed.items()
    }
    assert len(series) == 7 and table.attrs["n_trials"] == 7
    best = max(series, key=lambda name: sharpe_ratio(series[name]))
    assert table.attrs["dsr_series"] == best and best.startswith("winner#")
    expected = snooping.deflated_sharpe_ratio(
        series[best], n_trials=7, sharpe_variance=snooping.trial_sharpe_variance(series)
    )
    assert table.attrs["dsr"] == expected


def test_holm_statement_matches_statsmodels():
    pvalues = [0.01, 0.04, 0.03]
    reject, adjusted, _, _ = multipletests(pvalues, alpha=0.05, method="holm")
    result = significance.holm(pvalues)
    assert result.adjusted == pytest.approx(adjusted.tolist(), rel=1e-15)
    assert result.adjusted == pytest.approx([0.03, 0.06, 0.06], rel=1e-12)
    assert result.n_significant == int(reject.sum()) == 1 and result.p == pytest.approx(0.03)
    assert (
        result.statement() == "significant at 5 % after Holm in 1 of 3 seeds (smallest Holm-adjusted p 0.030)"
    )

    with_untestable = significance.holm([0.2, math.nan, 0.5])
    assert with_untestable.n_tested == 2 and math.isnan(with_untestable.adjusted[1])
    assert with_untestable.adjusted[0] == pytest.approx(multipletests([0.2, 0.5], method="holm")[1][0])
    assert with_untestable.statement() == (
        "not significant at 5 % after Holm in any of the 2 seeds (smallest Holm-adjusted p 0.400)"
    )
    assert significance.holm([0.01]).statement() == "significant at 5 % (one series, p 0.010)"


def test_q_values_are_benjamini_hochberg_of_the_holm_combined_p(tmp_path):
    table = Comparison.from_run_dir(write_run_dir(tmp_path / "run")).significance(reps=200)
    from trustfolio.evaluation.stats import benjamini_hochberg

    np.testing.assert_allclose(table["q_nw"], benjamini_hochberg(table["nw_p_holm"].to_numpy()))
    np.testing.assert_allclose(table["q_boot"], benjamini_hochberg(table["boot_p_holm"].to_numpy()))


def test_reality_check_has_one_candidate_column_per_seed(tmp_path, monkeypatch):
    comparison = Comparison.from_run_dir(write_run_dir(tmp_path / "run"))
    shapes = []

    class Spy(snooping.SPA):
        def __init__(self, benchmark, models, **kwargs):
            shapes.append(np.shape(models))
            super().__init__(benchmark, models, **kwargs)

    monkeypatch.setattr(snooping, "SPA", Spy)
    table = comparison.significance(reps=200)
    assert shapes == [(table.attrs["n_returns"], 6)]
    assert table.attrs["n_models"] == 6 and table.attrs["hansen_spa"].n_models == 6
    assert table.attrs["candidates"] == tuple(f"{m}#{s}" for m in ("winner", "noise") for s in (0, 1, 2))
    assert table.attrs["rc_best"].startswith("winner#") and table.attrs["benchmark"] == "equal-weight#0"


def test_a_seeded_reference_is_paired_seed_by_seed(ensemble_case):
    jobs = [j for j in ensemble_case.jobs if j.method == "agent"]
    other = [_job("copy", k, j.result.returns) for k, j in enumerate(jobs)][:2]  # seeds 0 and 1
    shifted = [_job("copy", 5, jobs[2].result.returns + 0.001)]  # no reference seed 5
    comparison = Comparison([*jobs, *other, *shifted], reference="agent")
    per_seed = comparison.seed_significance(reps=50)
    assert per_seed.loc[("copy", 0), "reference_series"] == "agent#0"
    assert math.isnan(per_seed.loc[("copy", 1), "nw_p"])  # identical to its paired reference seed
    assert (
        per_seed.loc[("copy", 5), "reference_series"]
        == "agent (ensemble of 3 seeds (not a deployable agent))"
    )
    attrs = comparison.significance(reps=50).attrs
    assert attrs["benchmark"].startswith("agent (ensemble of 3 seeds")


def test_run_tables_label_seed_means_as_ensembles(tmp_path):
    import json

    import pandas as pd

    from trustfolio.quickstart import write_tables

    comparison = Comparison.from_run_dir(write_run_dir(tmp_path / "run"))
    write_tables(comparison, tmp_path)
    document = json.loads((tmp_path / "metrics.json").read_text())
    label = "ensemble of 3 seeds (not a deployable agent)"
    assert document["ensembles"] == {"winner": label, "noise": label}  # equal-weight is one run
    assert "not the metrics of a mean across seeds" in document["notes"]["strategies"]
    daily = pd.read_parquet(tmp_path / "daily.parquet")
    assert daily.groupby("strategy")["n_seeds"].unique().map(list).to_dict() == {
        "equal-weight": [1],
        "winner": [3],
        "noise": [3],
    }
