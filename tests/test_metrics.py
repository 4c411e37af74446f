"""Metrics against hand computations on tiny value series."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trustfolio.errors import UserError
from trustfolio.evaluation.metrics import (
    METRIC_NAMES,
    compute_metrics,
    daily_returns,
    drawdown_series,
    max_drawdown,
    sharpe_ratio,
)

# V: 100 -> 110 -> 99 -> 108.9, i.e. returns +10 %, -10 %, +10 %.
# mean = 1/30; deviations 1/15, -2/15, 1/15 -> sum of squares 6/225, ddof=1 variance 1/75.
VALUES = np.array([100.0, 110.0, 99.0, 108.9])


def test_returns_and_cumulative_return():
    np.testing.assert_allclose(daily_returns(VALUES), [0.1, -0.1, 0.1])
    m = compute_metrics(VALUES, 252)
    assert m["CR"] == pytest.approx(0.089)
    # AR = (1 + CR)^(d/t) - 1 with t = 3 returns.
    assert m["AR"] == pytest.approx(1.089 ** (252 / 3) - 1)
    assert compute_metrics(VALUES, 242)["AR"] == pytest.approx(1.089 ** (242 / 3) - 1)


def test_sharpe_volatility_sortino_by_hand():
    m = compute_metrics(VALUES, 242)  # SR family annualized by sqrt(252) by default (paper's code)
    assert m["SR"] == pytest.approx(math.sqrt(252) * (1 / 30) / math.sqrt(1 / 75))
    assert m["volatility"] == pytest.approx(math.sqrt(252) * math.sqrt(1 / 75))
    # downside deviation: sqrt(mean([0, 0.01, 0])) = sqrt(1/300)
    assert m["sortino"] == pytest.approx(math.sqrt(252) * (1 / 30) / math.sqrt(1 / 300))
    calendar = compute_metrics(VALUES, 242, sharpe_days_per_year=None)
    assert calendar["SR"] == pytest.approx(math.sqrt(242) * (1 / 30) / math.sqrt(1 / 75))
    assert calendar["volatility"] == pytest.approx(math.sqrt(242 / 75))


def test_max_drawdown_and_calmar():
    m = compute_metrics(VALUES, 252)
    assert m["MDD"] == pytest.approx(0.1)  # peak 110, trough 99
    assert m["calmar"] == pytest.approx(m["AR"] / 0.1)
    # The initial value counts as a peak; the deepest of two drawdowns wins.
    assert max_drawdown(np.array([10.0, 8.0, 12.0, 9.0, 13.0])) == pytest.approx(0.25)
    assert max_drawdown(np.array([1.0, 2.0, 3.0])) == 0.0
    np.testing.assert_allclose(drawdown_series(np.array([10.0, 8.0, 12.0, 9.0])), [0, 0.2, 0, 0.25])


def test_turnover_and_costs():
    turnover = np.array([0.5, 0.1, 0.0, 0.0])  # one row per day; the last day never trades
    costs = np.array([50.0, 10.0, 0.0, 0.0])
    m = compute_metrics(VALUES * 10, 252, turnover=turnover, costs=costs)
    assert m["turnover"] == pytest.approx(0.6 / 3)  # summed over the period, per daily return
    assert m["total_costs"] == pytest.approx(60.0 / 1000.0)  # fraction of V_0
    plain = compute_metrics(VALUES, 252)
    assert math.isnan(plain["turnover"]) and math.isnan(plain["total_costs"])
    assert tuple(m) == METRIC_NAMES


def test_idle_cash_is_the_mean_cash_share():
    m = compute_metrics(VALUES, 252, cash_share=np.array([0.5, 0.1, 0.0, 0.2]))
    assert m["idle_cash"] == pytest.approx(0.2)
    assert math.isnan(compute_metrics(VALUES, 252)["idle_cash"])


def test_degenerate_series():
    flat = compute_metrics(np.array([5.0, 5.0, 5.0]), 252)
    assert flat["CR"] == 0.0 and flat["MDD"] == 0.0
    assert math.isnan(flat["SR"]) and math.isnan(flat["sortino"]) and math.isnan(flat["calmar"])
    rising = compute_metrics(np.array([1.0, 1.1, 1.21]), 252)
    assert math.isnan(rising["sortino"])  # no losing day
    assert math.isnan(sharpe_ratio(np.array([0.01])))
    with pytest.raises(UserError):
        compute_metrics(np.array([1.0]), 252)
    with pytest.raises(UserError):
        compute_metrics(np.array([1.0, -1.0]), 252)
