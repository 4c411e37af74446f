"""A method whose results do not depend on the seed on the data it will see runs once (seed 0) and is
reported as deterministic: predict-hold-gbm below scikit-learn's binning subsample (200,000 rows).

The claim is checked, not assumed: two seeds give identical predictions at the threshold and on the
embedded S&P 500 (20 stocks x ~2,500 training days), and different ones just above it.
"""

from __future__ import annotations

import numpy as np
import pytest

from trustfolio.data.cleaning import clean
from trustfolio.data.loaders import load_dataset
from trustfolio.evaluation.protocols import Window
from trustfolio.experiment import Experiment
from trustfolio.methods import is_deterministic, make_method
from trustfolio.runner import ExperimentSummary, single_seed_methods
from trustfolio.strategies.predictors import (
    BINNING_SUBSAMPLE,
    GradientBoostingPredictor,
    _rows,
    make_predictor,
    n_training_samples,
    training_sample_days,
)

TRAIN, TEST = ("2010-01-01", "2019-12-31"), ("2020-01-01", "2022-12-28")


def _gbm_predictions(n_days: int, n_stocks: int, seed: int) -> np.ndarray:
    """The gbm predictor's own fit (early-stopped on a validation slice, then refitted on every
    training day) on `n_days * n_stocks` rows of a fixed synthetic market, with `seed`."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_days, n_stocks, 4)).astype(np.float32)
    y = (0.1 * x[..., 0] + rng.normal(size=(n_days, n_stocks))).astype(np.float32)
    days = np.arange(n_days)
    predictor = GradientBoostingPredictor(max_iter=6, n_iter_no_change=3)
    model, _, _ = predictor._fit(x, y, days[:-200], days[-190:], days, seed)
    return model.predict(_rows(x, days[:100]))


def test_gbm_uses_its_seed_only_above_the_binning_subsample():
    n_stocks = 100
    n_days = BINNING_SUBSAMPLE // n_stocks
    gbm = GradientBoostingPredictor()
    assert not gbm.uses_seed(n_days * n_stocks) and gbm.uses_seed((n_days + 1) * n_stocks)
    at = [_gbm_predictions(n_days, n_stocks, seed) for seed in (0, 1)]
    assert np.array_equal(at[0], at[1])  # at the threshold: the seed changes nothing
    above = [_gbm_predictions(n_days + 1, n_stocks, seed) for seed in (0, 1)]
    assert not np.array_equal(above[0], above[1])  # one day more: the binning subsample is random


def test_the_row_count_known_from_dates_is_the_one_the_predictor_fits():
    raw = load_dataset("sp500")
    panel, _ = clean(raw.slice(None, TEST[1]), train_start=TRAIN[0], train_end=TRAIN[1])
    rows = len(training_sample_days(panel, train_start=TRAIN[0], train_end=TRAIN[1])) * panel.N
    assert n_training_samples(raw.dates, raw.N, train_start=TRAIN[0], train_end=TRAIN[1]) == rows
    assert 40_000 < rows <= BINNING_SUBSAMPLE  # 20 stocks x ~2,500 days


def test_sp500_gbm_runs_on_seed_0_only_and_two_seeds_really_agree(tmp_path):
    experiment = Experiment(
        name="gbm",
        dataset="sp500",
        protocol={"kind": "offline", "train": list(TRAIN), "test": list(TEST)},
        methods=["equal-weight", "predict-hold-gbm", "predict-hold-stockformer"],
        seeds=3,
        cost_multiples=[1, 3],
    )
    raw = load_dataset("sp500")
    jobs = experiment.jobs(raw.dates, n_stocks=raw.N)
    gbm = [j for j in jobs if j.method == "predict-hold-gbm"]
    assert len(gbm) == 2 and all(j.seed == 0 and j.deterministic for j in gbm)  # 1 window x 2 costs
    assert len([j for j in jobs if j.method == "predict-hold-stockformer"]) == 6  # seeded encoder
    summary = ExperimentSummary(tmp_path, len(jobs), single_seed=single_seed_methods(jobs))
    assert "deterministic, run on seed 0 only: equal-weight, predict-hold-gbm\n" in summary.describe() + "\n"

    # The claim itself: seeds 0 and 1 fit the same model on the data the job sees.
    panel, _ = clean(raw.slice(None, TEST[1]), train_start=TRAIN[0], train_end=TRAIN[1])
    runs = [
        make_predictor("gbm", {"cache_dir": str(tmp_path)})(panel, train_start=TRAIN[0], train_end=TRAIN[1], seed=s)
        for s in (0, 1)
    ]
    assert np.array_equal(runs[0], runs[1], equal_nan=True) and np.isfinite(runs[0][-300:]).all()


def test_above_the_threshold_gbm_stays_seed_dependent():
    raw = load_dataset("sp500")
    experiment = Experiment(
        name="gbm",
        dataset="sp500",
        protocol={"kind": "offline", "train": list(TRAIN), "test": list(TEST)},
        methods=["equal-weight", "predict-hold-gbm"],
        seeds=3,
    )
    many = BINNING_SUBSAMPLE // 2_000  # 100 stocks x ~2,500 training days: ~250,000 rows
    gbm = [j for j in experiment.jobs(raw.dates, n_stocks=many) if j.method == "predict-hold-gbm"]
    assert [j.seed for j in gbm] == [0, 1, 2] and not any(j.deterministic for j in gbm)
    # Without the panel's size the runner cannot tell: every seed runs.
    assert len([j for j in experiment.jobs(raw.dates) if j.method == "predict-hold-gbm"]) == 3
    # A walk-forward whose training windows grow past the threshold: seed 0 only on the small ones.
    method = make_method("predict-hold-gbm")
    small = Window("a", TRAIN[0], "2012-12-31", "2013-01-02", "2013-12-31")
    large = Window("b", "2000-01-01", TRAIN[1], TEST[0], TEST[1])
    assert is_deterministic(method, small, raw.dates, many)
    assert not is_deterministic(method, large, raw.dates, many)


@pytest.mark.parametrize("name", ["predict-hold-ridge", "equal-weight"])
def test_always_deterministic_methods_need_no_data(name):
    assert is_deterministic(make_method(name), Window("a", *TRAIN, *TEST))
