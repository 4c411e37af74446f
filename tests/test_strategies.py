"""Classic strategies on small synthetic panels: what each one decides, when, and how it fails."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from trustfolio.data.panel import Calendar, Panel
from trustfolio.errors import UserError
from trustfolio.evaluation import Observation
from trustfolio.strategies import STRATEGIES, MeanVariance, Momentum, make_strategy


def panel_from_close(close: np.ndarray) -> Panel:
    close = np.asarray(close, dtype=np.float32)
    T, N = close.shape
    return Panel(
        dates=np.datetime64("2020-01-01") + np.arange(T),
        tickers=tuple(f"S{i}" for i in range(N)),
        open=close,
        high=close,
        low=close,
        close=close,
        volume=np.ones_like(close),
        calendar=Calendar.us(),
    )


def observe(panel: Panel, t: int, weights: np.ndarray | None = None) -> Observation:
    """An observation at the close of day t holding `weights` (default: all cash)."""
    weights = np.zeros(panel.N) if weights is None else np.asarray(weights, dtype=np.float64)
    value = 1e6
    holdings = weights * value / panel.close[t]
    return Observation(
        t=t,
        date=panel.dates[t],
        history=panel.take_days(slice(0, t + 1)),
        cash=value * (1 - weights.sum()),
        holdings=holdings,
        weights=weights,
        value=value,
    )


def random_walk(sigmas, means=None, T=300, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sigmas = np.asarray(sigmas)
    means = np.zeros_like(sigmas) if means is None else np.asarray(means)
    returns = means + sigmas * rng.standard_normal((T, len(sigmas)))
    return 100.0 * np.cumprod(1.0 + returns, axis=0)


def test_make_strategy_names_and_errors():
    for name in STRATEGIES:
        policy = make_strategy(name)
        assert policy.name == name and policy.order_mode == "weights"
    with pytest.raises(UserError, match="unknown strategy 'sharpe'.*equal-weight.*momentum"):
        make_strategy("sharpe")
    with pytest.raises(UserError, match="bad options"):
        make_strategy("equal-weight", window=3)
    with pytest.raises(UserError):
        make_strategy("min-variance", window=1)
    with pytest.raises(UserError):
        make_strategy("momentum", top_k=0)
    assert make_strategy("max-sharpe", window=126).window == 126


def test_a_typo_in_a_strategy_option_names_the_valid_parameters():
    with pytest.raises(UserError, match="lookbak.*valid parameters: lookback, top_k, rebalance_every") as info:
        make_strategy("momentum", lookbak=63)
    assert "__init__" not in str(info.value)
    with pytest.raises(UserError, match="valid parameters: window, refit_every, min_history"):
        make_strategy("min-variance", objective="max-sharpe")  # the strategy's name fixes the objective
    with pytest.raises(UserError, match="takes no parameters"):
        make_strategy("buy-and-hold", lookback=3)
    with pytest.raises(UserError, match="lookback") as info:
        make_strategy("momentum", lookback="long")
    assert "__init__" not in str(info.value)


def test_equal_weight_and_buy_and_hold():
    panel = panel_from_close(random_walk([0.01] * 4, T=5))
    np.testing.assert_array_equal(make_strategy("equal-weight").act(observe(panel, 2)), np.full(4, 0.25))
    hold = make_strategy("buy-and-hold")
    np.testing.assert_array_equal(hold.act(observe(panel, 0)), np.full(4, 0.25))
    drifted = np.array([0.3, 0.2, 0.25, 0.24])
    np.testing.assert_array_equal(hold.act(observe(panel, 1, drifted)), drifted)  # holds: no trade
    hold.reset()
    np.testing.assert_array_equal(hold.act(observe(panel, 2, drifted)), np.full(4, 0.25))


def test_momentum_picks_top_k_by_trailing_return():
    # S0 rose strongly long ago but fell over the last 3 days; S3 rose most over the last 3 days.
    close = np.array(
        [
            [100, 100, 100, 100, 100],
            [200, 100, 100, 100, 100],
            [200, 101, 102, 100, 99],
            [190, 102, 104, 110, 98],
            [180, 103, 106, 120, 97],
        ],
        dtype=np.float32,
    )
    panel = panel_from_close(close)
    short = Momentum(lookback=3, top_k=2)
    np.testing.assert_array_equal(short.act(observe(panel, 4)), [0, 0, 0.5, 0.5, 0])  # S3, S2
    long = Momentum(lookback=10, top_k=1)  # longer than the history: measured from day 0
    np.testing.assert_array_equal(long.act(observe(panel, 4)), [1, 0, 0, 0, 0])
    assert Momentum().act(observe(panel, 4)).sum() == pytest.approx(1.0)  # k = max(1, 5 // 5) = 1
    assert np.count_nonzero(Momentum().act(observe(panel_from_close(random_walk([0.01] * 10)), 50))) == 2


def test_momentum_rebalances_every_n_days_and_holds_in_between():
    panel = panel_from_close(random_walk([0.02] * 10, T=40))
    policy = Momentum(lookback=5, rebalance_every=3)
    held = np.full(10, 0.07)
    decisions = [policy.act(observe(panel, t, held)) for t in range(10, 17)]
    for k, action in enumerate(decisions):
        if k % 3 == 0:
            assert np.count_nonzero(action) == 2 and action.sum() == pytest.approx(1.0)
        else:
            np.testing.assert_array_equal(action, held)


def test_min_variance_prefers_the_quiet_stock():
    panel = panel_from_close(random_walk([0.005, 0.01, 0.03], T=300))
    weights = make_strategy("min-variance").act(observe(panel, 299))
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    assert weights[0] > weights[1] > weights[2]
    assert weights[0] > 0.6


def test_max_sharpe_prefers_the_best_ratio():
    # Same volatility; S1's drift is four times S0's, S2 drifts down.
    panel = panel_from_close(random_walk([0.01, 0.01, 0.01], means=[0.001, 0.004, -0.002], T=300))
    weights = make_strategy("max-sharpe").act(observe(panel, 299))
    assert (weights >= 0).all() and weights.sum() == pytest.approx(1.0)
    assert weights.argmax() == 1 and weights[2] < 0.05


def test_mean_variance_uses_only_the_trailing_window():
    close = random_walk([0.01, 0.02, 0.015, 0.03], T=200, seed=3)
    altered = close.copy()
    altered[: 200 - 61] *= np.linspace(0.5, 2.0, 200 - 61)[:, None]  # change days before the window
    for objective in ("min-variance", "max-sharpe"):
        a = MeanVariance(objective, window=60).act(observe(panel_from_close(close), 199))
        b = MeanVariance(objective, window=60).act(observe(panel_from_close(altered), 199))
        np.testing.assert_array_equal(a, b)


def test_mean_variance_refit_schedule_and_short_history():
    panel = panel_from_close(random_walk([0.005, 0.02, 0.04], T=120))
    policy = MeanVariance("min-variance", window=60, refit_every=5, min_history=30)
    assert np.array_equal(policy.act(observe(panel, 10)), np.full(3, 1 / 3))  # 10 returns < 30: 1/N
    held = np.array([0.2, 0.3, 0.4])
    for _ in range(4):
        np.testing.assert_array_equal(policy.act(observe(panel, 11, held)), held)
    refit = policy.act(observe(panel, 100, held))
    assert refit[0] > 0.5  # refitted on the 5th day after the first decision


def test_max_sharpe_failure_falls_back_with_a_warning():
    falling = panel_from_close(random_walk([0.01] * 3, means=[-0.01] * 3, T=80))
    rising = panel_from_close(random_walk([0.01, 0.01, 0.01], means=[0.002, 0.004, 0.001], T=80, seed=1))
    policy = MeanVariance("max-sharpe", window=60, refit_every=1)
    with pytest.warns(UserWarning, match="skfolio fit failed"):
        first = policy.act(observe(falling, 79))
    np.testing.assert_array_equal(first, np.full(3, 1 / 3))  # no previous weights yet: 1/N
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted = policy.act(observe(rising, 79))
    with pytest.warns(UserWarning, match="keeping the previous weights"):
        again = policy.act(observe(falling, 79))
    np.testing.assert_array_equal(again, fitted)
