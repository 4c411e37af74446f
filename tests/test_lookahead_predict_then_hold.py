"""No look-ahead in predict-then-hold, on real data (csi88, the paper's training window).

For several test days t, every value after t is replaced with garbage; the predictor is fitted and
run again on that panel. Its predictions for every day up to t, and the policy's decisions on every
test day up to t, must be bit-identical to those on the true data. The days hit the hold schedule
(decisions every 5 days from the first test day): the first day, a holding day, a later decision day.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthetic import Recording, corrupt_after
from trustfolio.data.panel import Panel
from trustfolio.evaluation import backtest
from trustfolio.strategies.predict_then_hold import PredictThenHold
from trustfolio.strategies.predictors import make_predictor

TRAIN = ("2011-01-17", "2018-12-31")
TEST_START = "2019-04-01"
OFFSETS = (0, 13, 100)  # days after TEST_START at which everything later becomes garbage
PREDICTORS = {"ridge": {}, "gbm": {"max_iter": 60}}  # fewer trees keep the test quick; same code path


def all_predictions(panel: Panel, cache_dir: Path) -> dict[str, np.ndarray]:
    """Every predictor's predictions on `panel`; the features' cache file (~120 MB) is dropped after."""
    out = {
        name: make_predictor(name, {"cache_dir": cache_dir, **options})(
            panel, train_start=TRAIN[0], train_end=TRAIN[1], seed=0
        )
        for name, options in PREDICTORS.items()
    }
    for path in cache_dir.glob("*.npz"):
        path.unlink()
    return out


def decisions(predictions: np.ndarray, panel: Panel, start: int, last_day: int) -> dict[int, np.ndarray]:
    """Every decision of predict-then-hold backtested from day `start` through `last_day`."""
    run = Recording(PredictThenHold(predictions, panel.dates))
    backtest(run, panel, panel.dates[start], panel.dates[last_day + 1], initial_cash=1e7)
    assert [day for day, _ in run.decisions] == list(range(start, last_day + 1))
    return dict(run.decisions)


@pytest.fixture(scope="module")
def csi88(csi88_dir: Path) -> Panel:
    from trustfolio.data.loaders import load_stockformer

    return load_stockformer(csi88_dir)


@pytest.fixture(scope="module")
def runs(csi88: Panel, tmp_path_factory: pytest.TempPathFactory):
    """(true predictions, {t: predictions on the panel corrupted after t}, the corrupted panels)."""
    cache_dir = tmp_path_factory.mktemp("features")
    i0 = csi88.index_of(TEST_START)
    corrupted = {i0 + k: corrupt_after(csi88, i0 + k, seed=k) for k in OFFSETS}
    return (
        all_predictions(csi88, cache_dir),
        {t: all_predictions(p, cache_dir) for t, p in corrupted.items()},
        corrupted,
    )


@pytest.mark.parametrize("name", list(PREDICTORS))
def test_predictions_and_decisions_up_to_t_ignore_the_future(csi88, runs, name):
    true, seen, corrupted = runs
    i0 = csi88.index_of(TEST_START)
    last = max(seen)
    true_decisions = decisions(true[name], csi88, i0, last)
    assert np.isfinite(true[name][i0:]).all()
    for t, predictions in seen.items():
        assert not np.array_equal(corrupted[t].close[t + 1 :], csi88.close[t + 1 :])
        assert np.array_equal(predictions[name][: t + 1], true[name][: t + 1], equal_nan=True), t
        assert not np.array_equal(predictions[name][t + 1 :], true[name][t + 1 :])  # the garbage is seen
        changed = [
            day
            for day, action in decisions(predictions[name], corrupted[t], i0, t).items()
            if not np.array_equal(action, true_decisions[day])
        ]
        assert changed == [], f"{name}: look-ahead at t={t}"


def test_the_check_catches_predictions_that_read_one_day_ahead(csi88, runs):
    """Guard the guard: predictions whose row t is computed from day t+1's data must be caught."""
    true, seen, corrupted = runs
    t = min(seen)  # the first test day, a decision day
    shifted_true = np.roll(true["ridge"], -1, axis=0)
    shifted_seen = np.roll(seen[t]["ridge"], -1, axis=0)
    assert not np.array_equal(shifted_seen[: t + 1], shifted_true[: t + 1], equal_nan=True)
    i0 = csi88.index_of(TEST_START)
    leaked = decisions(shifted_seen, corrupted[t], i0, t)[t]
    assert not np.array_equal(leaked, decisions(shifted_true, csi88, i0, t)[t])
