"""Predict-then-hold and its return predictors on synthetic markets.

The planted market: each stock has a persistent hidden signal s (AR(1), phi = 0.9) that shows in its
volume (volume = 1e6 * exp(s)) and drifts its next-day return (+0.004 * s on top of 1.5% daily noise),
so today's volume predicts the next 5 days' return. The noise market has the same volume process but
returns that ignore it. Training: days 0..499; held-out test: days 500..899.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from trustfolio.data.panel import FIELDS, Panel
from trustfolio.errors import DataError, UserError
from trustfolio.evaluation import backtest
from trustfolio.evaluation.protocols import Window
from trustfolio.methods import METHODS, make_method
from trustfolio.strategies import make_strategy, predictors
from trustfolio.strategies.predict_then_hold import PredictThenHold
from trustfolio.strategies.predictors import (
    MIN_HISTORY,
    forward_labels,
    make_predictor,
    mean_rank_ic,
    split_validation,
    training_sample_days,
)

TRAIN_END, TEST_START, T = 499, 500, 900


def synthetic_market(seed: int, *, planted: bool = True, T: int = T, N: int = 12) -> Panel:
    rng = np.random.default_rng(seed)
    phi = 0.9
    signal = np.zeros((T, N))
    signal[0] = rng.normal(size=N)
    for t in range(1, T):
        signal[t] = phi * signal[t - 1] + np.sqrt(1 - phi**2) * rng.normal(size=N)
    returns = 0.015 * rng.normal(size=(T, N))
    if planted:
        returns[1:] += 0.004 * signal[:-1]
    returns[0] = 0.0
    close = 20.0 * np.exp(np.cumsum(np.log1p(returns), axis=0))
    previous = np.vstack([close[:1], close[:-1]])
    open_ = previous * np.exp(rng.normal(0, 0.003, (T, N)))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, (T, N)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, (T, N)))
    return Panel(
        dates=pd.bdate_range("2015-01-01", periods=T).to_numpy().astype("datetime64[D]"),
        tickers=tuple(f"S{n:02d}" for n in range(N)),
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=1e6 * np.exp(signal),
        name="synthetic",
    )


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


def predict(name: str, panel: Panel, cache_dir, *, seed: int = 0, **options) -> np.ndarray:
    predictor = make_predictor(name, {"cache_dir": cache_dir, **options})
    return predictor(panel, train_start=panel.dates[0], train_end=panel.dates[TRAIN_END], seed=seed)


def held_out_ic(predictions: np.ndarray, panel: Panel) -> float:
    """Mean daily rank IC on test days whose 5-day label is inside the panel."""
    return mean_rank_ic(predictions[TEST_START:-5], forward_labels(panel, 5)[TEST_START:-5])


def excess_over_equal_weight(predictions: np.ndarray, panel: Panel) -> tuple[float, float, float]:
    """(t-statistic of the daily return difference, CR of predict-then-hold, CR of 1/N) on test days.
    Daily returns of held stocks are independent across days here, so the plain t-statistic fits."""
    test = (panel.dates[TEST_START], panel.dates[-1])
    ours = backtest(PredictThenHold(predictions, panel.dates), panel, *test, cost_bps=10.0)
    equal = backtest(make_strategy("equal-weight"), panel, *test, cost_bps=10.0)
    excess = ours.returns[1:] - equal.returns[1:]
    t_stat = excess.mean() / excess.std(ddof=1) * np.sqrt(len(excess))
    return float(t_stat), ours.CR, equal.CR


# ---------------------------------------------------------------------------------------- training mask
def test_training_samples_have_labels_known_by_the_end_of_training():
    panel = synthetic_market(0, T=600)
    days = training_sample_days(panel, train_start=panel.dates[100], train_end=panel.dates[TRAIN_END])
    assert days[0] == 100 and days[-1] == TRAIN_END - 5
    assert np.array_equal(days, np.arange(100, TRAIN_END - 4))  # every s with s + 5 <= 499
    longer = training_sample_days(
        panel, train_start=panel.dates[0], train_end=panel.dates[TRAIN_END], horizon=10
    )
    assert longer[0] == MIN_HISTORY and longer[-1] == TRAIN_END - 10
    with pytest.raises(UserError, match="usable training days"):
        training_sample_days(panel, train_start=panel.dates[0], train_end=panel.dates[70])


def test_validation_slice_is_the_end_of_training_with_a_purge_gap():
    days = np.arange(60, 495)
    fit, validation = split_validation(days, 0.1, horizon=5)
    assert len(validation) == round(0.1 * len(days)) and validation[-1] == days[-1]
    assert fit[0] == days[0] and fit[-1] + 5 == validation[0] - 1  # labels of fit days end before it
    with pytest.raises(UserError, match="validation_fraction"):
        split_validation(days, 0.0, horizon=5)


def garbage_after(panel: Panel, t: int, seed: int = 1) -> Panel:
    rng = np.random.default_rng(seed)
    garbage = rng.lognormal(3.0, 1.0, size=(panel.T - t - 1, panel.N))
    fields = {}
    for name in FIELDS:
        values = np.array(panel.field(name), dtype=np.float64)
        values[t + 1 :] = garbage * (1e5 if name == "volume" else 1.0)
        fields[name] = values
    return replace(panel, **fields)


@pytest.mark.parametrize("name", ["ridge", "gbm"])
def test_the_fit_uses_no_price_after_the_training_end(name, cache_dir, monkeypatch):
    """Garbage after the last training day leaves the fitted model, hence every prediction up to
    that day, bit-identical; letting one more label in (s + 5 = train end + 1) is caught."""
    panel = synthetic_market(0, T=600)
    corrupted = garbage_after(panel, TRAIN_END)
    true = predict(name, panel, cache_dir)
    assert np.array_equal(
        predict(name, corrupted, cache_dir)[: TRAIN_END + 1], true[: TRAIN_END + 1], equal_nan=True
    )

    def one_label_too_many(panel, *, train_start, train_end, horizon=5):
        return np.append(
            training_sample_days(panel, train_start=train_start, train_end=train_end), TRAIN_END - 4
        )

    monkeypatch.setattr(predictors, "training_sample_days", one_label_too_many)
    leaky = predict(name, corrupted, cache_dir)
    assert not np.array_equal(leaky[: TRAIN_END + 1], true[: TRAIN_END + 1], equal_nan=True)


# ---------------------------------------------------------------------------------------- learning
@pytest.mark.parametrize("name", ["ridge", "gbm"])
def test_a_planted_signal_is_found_and_traded(name, cache_dir):
    panel = synthetic_market(0)
    predictions = predict(name, panel, cache_dir)
    assert np.isnan(predictions[:MIN_HISTORY]).all() and np.isfinite(predictions[MIN_HISTORY:]).all()
    # On noise markets (next test) one market's held-out IC has a spread of ~0.05 and the t-statistic
    # ~1: the planted signal must clear both by more than two of those spreads.
    assert held_out_ic(predictions, panel) > 0.1
    t_stat, ours, equal = excess_over_equal_weight(predictions, panel)
    assert t_stat > 2.5 and ours > equal


@pytest.mark.parametrize("name", ["ridge", "gbm"])
def test_pure_noise_does_not_systematically_beat_equal_weight(name, cache_dir):
    """Four noise markets: the mean held-out IC stays near 0 (one market's IC spreads by ~0.05, so
    the mean's standard error is ~0.025) and the mean excess t-statistic stays below 2 (standard
    error 0.5 under no skill). Loose on purpose: this checks for a systematic edge, not luck."""
    ics, t_stats = [], []
    for seed in range(4):
        panel = synthetic_market(100 + seed, planted=False)
        predictions = predict(name, panel, cache_dir)
        ics.append(held_out_ic(predictions, panel))
        t_stats.append(excess_over_equal_weight(predictions, panel)[0])
    assert abs(np.mean(ics)) < 0.08, ics
    assert np.mean(t_stats) < 2.0, t_stats


def test_gbm_is_reproducible_with_a_seed(cache_dir):
    panel = synthetic_market(0, T=600)
    first = make_predictor("gbm", {"cache_dir": cache_dir})
    a = first(panel, train_start=panel.dates[0], train_end=panel.dates[TRAIN_END], seed=3)
    b = predict("gbm", panel, cache_dir, seed=3)
    assert np.array_equal(a, b, equal_nan=True)
    assert first.summary.chosen["n_trees"] >= 1 and first.summary.n_validation_days > 0


def test_mean_rank_ic_is_the_mean_daily_spearman_correlation():
    rng = np.random.default_rng(0)
    predicted, realized = rng.normal(size=(30, 8)), rng.normal(size=(30, 8))
    realized[:, 0] += 2 * predicted[:, 0]
    expected = np.mean([spearmanr(p, r).statistic for p, r in zip(predicted, realized, strict=True)])
    assert mean_rank_ic(predicted, realized) == pytest.approx(expected, rel=1e-12)
    realized[3] = 1.0  # a constant day has no correlation: skipped
    expected = np.mean([spearmanr(predicted[d], realized[d]).statistic for d in range(30) if d != 3])
    assert mean_rank_ic(predicted, realized) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------------------------------- policy
def hold_backtest(predictions: np.ndarray, panel: Panel, top_k: int = 1, days: int = 41):
    policy = PredictThenHold(predictions, panel.dates, top_k=top_k)
    return backtest(policy, panel, panel.dates[TEST_START], panel.dates[TEST_START + days - 1])


def test_hold_schedule_trades_every_5_days_and_holds_one_stock():
    panel = synthetic_market(0, T=600)
    predictions = np.random.default_rng(1).normal(size=(panel.T, panel.N)).astype(np.float32)
    result = hold_backtest(predictions, panel)
    decision_days = np.arange(0, 40, 5)
    held = result.weights > 0
    assert (held.sum(axis=1) == 1).all()  # exactly one stock, every day
    for k in range(40):
        pick = np.argmax(predictions[TEST_START + k - k % 5])  # the stock chosen on the last decision day
        assert held[k, pick], k
    assert (result.turnover[np.setdiff1d(np.arange(40), decision_days)] == 0).all()
    switches = [
        k
        for k in decision_days[1:]
        if np.argmax(predictions[TEST_START + k]) != np.argmax(predictions[TEST_START + k - 5])
    ]
    assert switches and (result.turnover[switches] > 0.9).all()  # sell everything, buy the new pick
    assert result.weights[:-1].sum(axis=1).min() > 0.99  # fully invested (1-share lots here)


def test_top_k_splits_equally_and_a_missing_prediction_day_holds_cash():
    panel = synthetic_market(0, T=600)
    predictions = np.random.default_rng(2).normal(size=(panel.T, panel.N)).astype(np.float32)
    predictions[TEST_START + 5] = np.nan
    result = hold_backtest(predictions, panel, top_k=3, days=12)
    assert np.array_equal(
        np.flatnonzero(result.weights[0]), np.sort(np.argsort(-predictions[TEST_START])[:3])
    )
    assert result.weights[0][result.weights[0] > 0] == pytest.approx(1 / 3, abs=0.01)
    assert (result.weights[5:10] == 0).all()  # nothing predicted on day 5: cash until day 10


def test_policy_refuses_predictions_of_another_panel():
    panel = synthetic_market(0, T=600)
    with pytest.raises(DataError, match="another panel"):
        backtest(
            PredictThenHold(np.zeros((300, panel.N)), panel.dates[:300]),
            panel,
            panel.dates[400],
            panel.dates[420],
        )
    with pytest.raises(UserError, match="top_k"):
        PredictThenHold(np.zeros((panel.T, panel.N)), panel.dates, top_k=0)


# ---------------------------------------------------------------------------------------- methods
def test_methods_fit_on_the_window_and_report_the_fit(cache_dir, tmp_path):
    assert {"predict-hold-ridge", "predict-hold-gbm"} <= set(METHODS)
    panel = synthetic_market(0, T=600)
    window = Window(
        "offline", panel.dates[0], panel.dates[TRAIN_END], panel.dates[TEST_START], panel.dates[-1]
    )
    method = make_method("predict-hold-ridge", {"cache_dir": str(cache_dir), "top_k": 2})
    assert method.deterministic and not make_method("predict-hold-gbm").deterministic
    make_method("predict-hold-gbm", {"budget": "cpu"})  # what `trustfolio reproduce` passes: accepted
    policy = method.build_policy(panel, window, 0, tmp_path)
    assert policy.name == "predict-hold-ridge" and policy.top_k == 2 and policy.holding_days == 5
    assert np.array_equal(policy.predictions, predict("ridge", panel, cache_dir), equal_nan=True)
    summary = json.loads((tmp_path / "predictor.json").read_text())
    assert summary["predictor"] == "ridge" and summary["chosen"]["alpha"] > 0
    assert summary["train_days"][1] == str(panel.dates[TRAIN_END - 5])


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"top_k": 0}, "top_k"),
        ({"holding_days": 2.5}, "holding_days"),
        ({"alpah": 1}, "bad options"),
        ({"target": "log"}, "target"),
    ],
)
def test_bad_method_options_fail_when_the_method_is_made(config, match):
    with pytest.raises(UserError, match=match):
        make_method("predict-hold-ridge", config)


def test_stockformer_long_branch_drives_the_same_policy(cache_dir, tmp_path):
    """The encoders' long-term branch as a predictor (a small light encoder, for speed): one row per
    day, none before the first full window, and rows up to t unchanged by garbage after t."""
    panel = synthetic_market(0, T=600)
    window = Window(
        "offline", panel.dates[0], panel.dates[TRAIN_END], panel.dates[TEST_START], panel.dates[-1]
    )
    small = {
        "budget": "quick",
        "lookback": 20,
        "validation_days": 10,
        "cache_dir": str(tmp_path / "encoders"),
    }
    method = make_method("predict-hold-stockformer", small)
    assert not method.deterministic
    policy = method.build_policy(panel, window, 0, tmp_path)
    predictions = policy.predictions
    assert predictions.shape == (panel.T, panel.N) and policy.name == "predict-hold-stockformer"
    assert np.isnan(predictions[:19]).all() and np.isfinite(predictions[19:]).all()
    t = TEST_START + 7
    corrupted = method.build_policy(garbage_after(panel, t), window, 0, tmp_path).predictions
    assert np.array_equal(corrupted[: t + 1], predictions[: t + 1], equal_nan=True)
    assert not np.array_equal(corrupted[t + 1 :], predictions[t + 1 :])
    with pytest.raises(UserError, match="unknown encoder config keys"):
        make_method("predict-hold-stockformer", {"lookbak": 20})
    with pytest.raises(UserError, match="budget"):
        make_method("predict-hold-stockformer", {"budget": "huge"})
