"""`backtest` and `BacktestResult`: hand-computed tiny panels, storage, and the 1/N check on CSI data."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from trustfolio.data.panel import Calendar, Panel  # noqa: E402
from trustfolio.errors import DataError, UserError  # noqa: E402
from trustfolio.evaluation import BacktestResult, Observation, backtest  # noqa: E402
from trustfolio.strategies import make_strategy  # noqa: E402

CLOSE = [[10.0, 20.0], [11.0, 20.0], [11.0, 22.0], [12.375, 22.0]]
NO_FRICTION = dict(cost_bps=0.0, round_lots=False)


def tiny_panel(close=CLOSE, open_=None, benchmark=None, calendar=None) -> Panel:
    close = np.asarray(close, dtype=np.float32)
    open_ = close if open_ is None else np.asarray(open_, dtype=np.float32)
    T, N = close.shape
    return Panel(
        dates=np.datetime64("2021-03-01") + np.arange(T),
        tickers=tuple(f"S{i}" for i in range(N)),
        open=open_,
        high=np.maximum(open_, close),
        low=np.minimum(open_, close),
        close=close,
        volume=np.ones_like(close),
        benchmark=benchmark,
        benchmark_name="S&P 500" if benchmark is not None else None,
        calendar=calendar or Calendar.us(),
        name="tiny",
    )


class Recorder:
    """A weights policy that remembers what it was shown."""

    name = "recorder"
    order_mode = "weights"

    def __init__(self, weights=(0.5, 0.5)):
        self.weights = np.asarray(weights)
        self.seen: list[Observation] = []

    def reset(self):
        self.seen = []

    def act(self, obs):
        self.seen.append(obs)
        return self.weights


class BuyFirstShares:
    """A shares-mode policy: order +1 (hmax shares) of stock 0 and -1 of stock 1 on the first day."""

    name = "shares"
    order_mode = "shares"

    def reset(self):
        self.first = True

    def act(self, obs):
        order = np.array([1.0, -1.0]) if self.first else np.zeros(2)
        self.first = False
        return order


def test_equal_weight_by_hand():
    # Rebalanced 50/50 each close: +5 %, +5 %, +6.25 % (S0: +10 %, 0, +12.5 %; S1: 0, +10 %, 0).
    # Prices are exact in float32, so the arithmetic is exact up to float64 rounding.
    result = backtest(make_strategy("equal-weight"), tiny_panel(), **NO_FRICTION)
    np.testing.assert_allclose(result.values, [1e6, 1.05e6, 1.1025e6, 1.1025e6 * 1.0625], rtol=1e-12)
    np.testing.assert_allclose(result.returns, [0.0, 0.05, 0.05, 0.0625], atol=1e-12)
    np.testing.assert_allclose(result.weights[:3], 0.5, rtol=1e-12)
    assert result.dates[0] == np.datetime64("2021-03-01") and len(result.dates) == 4
    assert result.metrics()["CR"] == pytest.approx(1.1025 * 1.0625 - 1)


def test_buy_and_hold_by_hand():
    # 50,000 shares of S0 and 25,000 of S1 bought at the first close, then held.
    result = backtest(make_strategy("buy-and-hold"), tiny_panel(), **NO_FRICTION)
    np.testing.assert_allclose(result.values, [1e6, 1.05e6, 1.1e6, 1_168_750], rtol=1e-12)
    np.testing.assert_allclose(result.weights[-1], [618_750 / 1_168_750, 550_000 / 1_168_750], rtol=1e-12)
    assert result.turnover[1:].sum() == pytest.approx(0.0, abs=1e-12)


def test_costs_are_charged_on_traded_value():
    # Buying 1/N from cash at 10 bps: weights are of the value net of costs, V' = V / 1.001.
    result = backtest(make_strategy("buy-and-hold"), tiny_panel(), cost_bps=10.0, round_lots=False)
    net = 1e6 / 1.001
    assert result.costs[0] == pytest.approx(0.001 * net, rel=1e-9)
    assert result.turnover[0] == pytest.approx(net / 2e6, rel=1e-9)
    assert result.values[1] == pytest.approx(net * 1.05, rel=1e-9)
    assert result.metrics()["total_costs"] == pytest.approx(0.001 * net / 1e6, rel=1e-9)
    assert result.metrics()["turnover"] == pytest.approx(net / 2e6 / 3, rel=1e-6)


def test_lots_are_applied_at_evaluation():
    # A 3,000 lot-price stock: half of 1e6 buys one lot of 100 shares (300,000), not 166.5 shares.
    close = [[3000.0, 10.0], [3000.0, 10.0], [3000.0, 10.0]]
    china = Calendar.china()
    lots = backtest(make_strategy("equal-weight"), tiny_panel(close, calendar=china), cost_bps=0.0)
    assert lots.weights[0, 0] == pytest.approx(0.3)
    free = backtest(make_strategy("equal-weight"), tiny_panel(close, calendar=china), **NO_FRICTION)
    assert free.weights[0, 0] == pytest.approx(0.5)
    assert lots.config["round_lots"] and lots.config["lot_size"] == 100


def test_shares_mode_orders():
    result = backtest(BuyFirstShares(), tiny_panel(), hmax=100.0, **NO_FRICTION)
    # +100 shares of S0 at 10; the sell of S1 is capped at the (zero) holdings.
    np.testing.assert_allclose(result.weights[0], [1000 / 1e6, 0.0])
    np.testing.assert_allclose(result.values, [1e6, 1e6 + 100, 1e6 + 100, 1e6 + 237.5])


def test_next_open_fill():
    open_ = [[10.0, 20.0], [10.0, 25.0], [11.0, 22.0], [12.375, 22.0]]
    result = backtest(make_strategy("buy-and-hold"), tiny_panel(open_=open_), fill="next_open", **NO_FRICTION)
    # Decided at the close of day 0, filled at the open of day 1: 50,000 S0 + 20,000 S1.
    assert result.values[1] == pytest.approx(50_000 * 11 + 20_000 * 20)
    np.testing.assert_allclose(result.weights[0], 0.0)  # nothing is held at the first close yet


def test_policy_sees_history_up_to_t_only():
    panel = tiny_panel()
    policy = Recorder()
    backtest(policy, panel, "2021-03-02", "2021-03-04", **NO_FRICTION)
    assert [obs.t for obs in policy.seen] == [1, 2]  # no decision on the last day
    for obs in policy.seen:
        assert obs.history.T == obs.t + 1 and obs.history.dates[-1] == obs.date
        assert obs.history.dates[0] == panel.dates[0]  # days before `start` are visible history
        assert obs.history.content_hash() == panel.take_days(slice(0, obs.t + 1)).content_hash()
        assert not obs.history.close.flags.writeable
    first = policy.seen[0]
    assert first.cash == 1e6 and first.value == 1e6 and (first.holdings == 0).all()
    second = policy.seen[1]
    np.testing.assert_allclose(second.weights, [0.5 / 1.05, 0.55 / 1.05])  # drifted since day 1


def test_market_is_the_benchmark_index_when_there_is_one():
    bench = np.array([100.0, 101.0, 99.0, 103.0], dtype=np.float32)
    result = backtest(make_strategy("market"), tiny_panel(benchmark=bench))
    np.testing.assert_allclose(result.values, 1e6 * bench / 100.0, rtol=1e-7)
    assert result.label == "market (S&P 500 index)" and result.name == "market"
    assert result.costs.sum() == 0 and result.turnover.sum() == 0 and np.isnan(result.weights).all()


def test_market_proxy_without_benchmark():
    market = backtest(make_strategy("market"), tiny_panel(), **NO_FRICTION)
    hold = backtest(make_strategy("buy-and-hold"), tiny_panel(), **NO_FRICTION)
    np.testing.assert_array_equal(market.values, hold.values)
    assert market.label == "market proxy (equal-weight buy-and-hold)"


def test_policy_is_reset_between_backtests():
    policy = make_strategy("buy-and-hold")
    first = backtest(policy, tiny_panel(), **NO_FRICTION)
    again = backtest(policy, tiny_panel(), **NO_FRICTION)
    np.testing.assert_array_equal(first.values, again.values)


def test_bad_input():
    close = np.array(CLOSE, dtype=np.float32)
    close[2, 1] = np.nan
    with pytest.raises(DataError, match="clean"):
        backtest(make_strategy("equal-weight"), tiny_panel(close))
    with pytest.raises(UserError):
        backtest(make_strategy("equal-weight"), tiny_panel(), "2021-03-03", "2021-03-02")
    with pytest.raises(UserError, match="at least 2"):
        backtest(make_strategy("equal-weight"), tiny_panel(), "2021-03-02", "2021-03-02")
    with pytest.raises(ValueError, match="shape"):
        backtest(Recorder(weights=[1.0]), tiny_panel())


def test_save_load_round_trip(tmp_path):
    result = backtest(make_strategy("equal-weight"), tiny_panel(), cost_bps=10.0, round_lots=False)
    result.save(tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["daily.parquet", "metrics.json"]
    loaded = BacktestResult.load(tmp_path / "run")
    for name in ("dates", "values", "returns", "weights", "turnover", "costs"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(result, name))
    assert (loaded.name, loaded.label, loaded.tickers) == (result.name, result.label, result.tickers)
    assert loaded.config == result.config and loaded.metrics() == result.metrics()
    meta = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert meta["strategies"]["equal-weight"]["CR"] == pytest.approx(result.CR)
    frame = result.to_frame()
    assert list(frame.columns) == ["date", "value", "return", "costs", "turnover", "w_S0", "w_S1"]


def test_idle_cash_is_the_mean_cash_share_left_by_lot_rounding(tmp_path):
    # 100-share lots and 3000 of capital: 1/N wants 1500 in each stock, which buys one lot of S0
    # (100 × 10) and none of S1 (a lot costs 2000-2200). The 2000 of cash stays idle every day.
    lots = Calendar(trading_days_per_year=252, lot_size=100, currency="USD")
    result = backtest(make_strategy("equal-weight"), tiny_panel(calendar=lots), cost_bps=0.0, initial_cash=3000.0)
    np.testing.assert_allclose(result.values, [3000.0, 3100.0, 3100.0, 3237.5], rtol=1e-12)
    expected = np.mean([2000 / 3000, 2000 / 3100, 2000 / 3100, 2000 / 3237.5])
    assert result.metrics()["idle_cash"] == pytest.approx(expected, rel=1e-12)
    assert BacktestResult.load(result.save(tmp_path)).metrics()["idle_cash"] == pytest.approx(expected, rel=1e-12)
    fractional = backtest(make_strategy("equal-weight"), tiny_panel(), **NO_FRICTION)
    assert fractional.metrics()["idle_cash"] == pytest.approx(0.0, abs=1e-12)
    index = backtest(make_strategy("market"), tiny_panel(benchmark=np.array([100.0, 101.0, 99.0, 103.0], dtype=np.float32)))
    assert index.metrics()["idle_cash"] == 0.0  # an index is fully invested


def test_saved_daily_returns_give_other_tools_our_numbers(tmp_path):
    """quantstats and empyrical read daily.parquet's `return` column and skip NaN: the first day,
    which has no return, must be NaN there, not a 0 that would count as a flat day."""
    import pandas as pd

    result = backtest(make_strategy("equal-weight"), tiny_panel(), cost_bps=10.0, round_lots=False)
    returns = pd.read_parquet(result.save(tmp_path) / "daily.parquet").set_index("date")["return"]
    assert np.isnan(returns.iloc[0]) and returns.iloc[1:].notna().all()
    m = result.metrics()
    assert (1.0 + returns).prod() - 1.0 == pytest.approx(m["CR"], rel=1e-12)
    assert returns.mean() / returns.std() * np.sqrt(252) == pytest.approx(m["SR"], rel=1e-12)
    assert returns.std() * np.sqrt(252) == pytest.approx(m["volatility"], rel=1e-12)
    assert BacktestResult.load(tmp_path).returns[0] == 0.0  # in memory, day 0 keeps the 0 convention


def test_index_result_round_trip_keeps_nan_weights(tmp_path):
    bench = np.array([100.0, 101.0, 99.0, 103.0], dtype=np.float32)
    result = backtest(make_strategy("market"), tiny_panel(benchmark=bench))
    loaded = BacktestResult.load(result.save(tmp_path))
    assert np.isnan(loaded.weights).all() and loaded.label == "market (S&P 500 index)"
    with pytest.raises(DataError):
        BacktestResult.load(tmp_path / "missing")


def test_summary_and_plots():
    result = backtest(make_strategy("equal-weight"), tiny_panel(), **NO_FRICTION)
    summary = result.summary()
    assert summary.name == "equal-weight" and summary["CR"] == pytest.approx(1.1025 * 1.0625 - 1)
    assert len(result.plot_cumulative().lines) == 1
    assert len(result.plot_drawdown().collections) == 1


# ---------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def csi88(csi88_dir):
    from trustfolio.data.loaders import load_stockformer

    panel = load_stockformer(csi88_dir)
    assert panel.is_clean and panel.N == 88
    return panel


def test_equal_weight_on_csi88_matches_hand_computation(csi88):
    """The data README's figures: 1/N, no costs, no lots, 2019-04-01 -> 2022-04-01 (729 days)."""
    result = backtest(make_strategy("equal-weight"), csi88, "2019-04-01", "2022-04-01", **NO_FRICTION)
    assert len(result.dates) == 729
    m = result.metrics()
    assert m["CR"] == pytest.approx(0.73, abs=0.01)
    assert m["SR"] == pytest.approx(1.03, abs=0.01)  # sqrt(252) annualization, as the paper's code
    # With the calendar's 242 days: 1.03 * sqrt(242 / 252) = 1.005.
    assert result.metrics(sharpe_days_per_year=None)["SR"] == pytest.approx(m["SR"] * (242 / 252) ** 0.5)
    assert m["MDD"] == pytest.approx(0.20, abs=0.01)
    hold = backtest(make_strategy("buy-and-hold"), csi88, "2019-04-01", "2022-04-01", **NO_FRICTION)
    assert hold.metrics()["CR"] == pytest.approx(0.72, abs=0.01)


def test_lot_rounding_on_csi88_at_1e5_leaves_half_the_capital_idle(csi88):
    """The README's note: 1/N at 1e5 CNY with 100-share lots can buy few lots, so CR falls from 0.73."""
    small = backtest(make_strategy("equal-weight"), csi88, "2019-04-01", "2022-04-01", cost_bps=0.0, initial_cash=1e5)
    assert small.metrics()["idle_cash"] == pytest.approx(0.52, abs=0.01)
    assert small.metrics()["CR"] == pytest.approx(0.29, abs=0.01)


def test_pandas_views_are_date_indexed_and_match_the_arrays():
    import pandas as pd

    result = backtest(make_strategy("equal-weight"), tiny_panel(), cost_bps=0.0, initial_cash=1e6, round_lots=False)
    dates = pd.DatetimeIndex(result.dates, name="date")
    values, returns, weights = result.values_series, result.returns_series, result.weights_frame
    assert isinstance(values, pd.Series) and values.index.equals(dates) and values.name == result.label
    np.testing.assert_array_equal(values.to_numpy(), result.values)
    assert returns.index.equals(dates[1:])  # the first day has no return
    np.testing.assert_array_equal(returns.to_numpy(), result.returns[1:])
    assert weights.index.equals(dates) and list(weights.columns) == list(result.tickers)
    np.testing.assert_array_equal(weights.to_numpy(), result.weights)
    np.testing.assert_array_equal(result.cash_series.to_numpy(), result.cash_share)
    assert values.loc["2021-03-02"] == result.values[1]  # pandas users select by date
    assert isinstance(result.values, np.ndarray) and isinstance(result.weights, np.ndarray)  # arrays stay


def test_everyday_entry_points_come_from_the_top_package_without_torch():
    import subprocess
    import sys

    code = (
        "import sys, trustfolio\n"
        "light = 'torch' not in sys.modules and 'pandas' not in sys.modules\n"
        "from trustfolio import load_dataset, clean, backtest, make_strategy, Comparison, BacktestResult\n"
        "imported = 'torch' in sys.modules\n"
        "panel, _ = clean(load_dataset('sp500').slice(None, '2021-03-31'), train_end='2020-12-31')\n"
        "result = backtest(make_strategy('equal-weight'), panel, '2021-01-04', '2021-03-31')\n"
        "print(light, imported, type(result).__name__, 'Comparison' in dir(trustfolio))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "BacktestResult", "True"]
