"""No look-ahead in strategy decisions, on real data (csi88).

For several days t, every value after t is replaced with garbage; each strategy's decisions (target
weights) on every day up to and including t must be bit-identical to those on the true data.
The days are chosen to hit the refit/rebalance schedule (every 21 days from the first test day):
the first day, a refit day, a later refit day and a holding day.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from synthetic import Recording, corrupt_after
from trustfolio.data.panel import Panel
from trustfolio.evaluation import backtest
from trustfolio.strategies import STRATEGIES, make_strategy

TEST_START = "2019-04-01"
OFFSETS = (0, 21, 63, 100)  # days after TEST_START at which everything later is garbage


@pytest.fixture(scope="module")
def csi88(csi88_dir):
    from trustfolio.data.loaders import load_stockformer

    return load_stockformer(csi88_dir)


def decisions(name: str, panel: Panel, start: int, last_decision_day: int) -> dict[int, np.ndarray]:
    """Every decision of strategy `name` backtested from day `start` through `last_decision_day`."""
    run = Recording(make_strategy(name))
    backtest(run, panel, panel.dates[start], panel.dates[last_decision_day + 1])
    assert [day for day, _ in run.decisions] == list(range(start, last_decision_day + 1))
    return dict(run.decisions)


def days_that_saw_the_future(name: str, panel: Panel, t: int, true_decisions: dict) -> list[int]:
    i0 = panel.index_of(TEST_START)
    corrupted = corrupt_after(panel, t, seed=t)
    assert not np.array_equal(corrupted.close[t + 1 :], panel.close[t + 1 :])
    seen = decisions(name, corrupted, i0, t)
    return [day for day, action in seen.items() if not np.array_equal(action, true_decisions[day])]


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_decisions_up_to_t_ignore_the_future(csi88, name):
    i0 = csi88.index_of(TEST_START)
    days = [i0 + k for k in OFFSETS]
    true_decisions = decisions(name, csi88, i0, days[-1])
    for t in days:
        assert days_that_saw_the_future(name, csi88, t, true_decisions) == [], f"{name}: look-ahead at t={t}"


def test_the_check_catches_a_one_day_leak(csi88, monkeypatch):
    """Guard the guard: a history that leaks one day past t must be caught."""
    # importlib: the package attribute `trustfolio.evaluation.backtest` is the function.
    backtest_module = importlib.import_module("trustfolio.evaluation.backtest")
    i0 = csi88.index_of(TEST_START)
    t = i0 + 21  # a rebalance day of momentum
    true_decisions = decisions("momentum", csi88, i0, t)
    monkeypatch.setattr(
        backtest_module, "_history_until", lambda panel, day: panel.take_days(slice(0, day + 2))
    )
    assert t in days_that_saw_the_future("momentum", csi88, t, true_decisions)
