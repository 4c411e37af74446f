"""Significance statistics: hand computations, planted signals, calibration under noise, seeds."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from trustfolio.errors import UserError
from trustfolio.evaluation.snooping import (
    deflated_sharpe_from_moments,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    hansen_spa,
    reality_check_and_spa,
    trial_sharpe_variance,
)
from trustfolio.evaluation.stats import (
    benjamini_hochberg,
    mean_std_table,
    newey_west_lags,
    newey_west_test,
    significance_table,
    stationary_bootstrap_test,
)

PHI = NormalDist()  # the standard normal from the standard library, independent of scipy
EULER_GAMMA = 0.5772156649015329


def noise(seed: int, n: int = 250, mean: float = 0.0, std: float = 0.01) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, std, n)


# ------------------------------------------------------------------------------------------------
# mean ± std across seeds
# ------------------------------------------------------------------------------------------------


def test_mean_std_table_by_hand():
    per_seed = pd.DataFrame(
        {
            "method": ["a", "a", "a", "b"],
            "seed": [0, 1, 2, 0],
            "window": ["offline"] * 4,  # non-numeric: ignored
            "CR": [0.1, 0.2, 0.6, 0.5],
            "SR": [1.0, 2.0, 3.0, 4.0],
        }
    )
    table = mean_std_table(per_seed)
    assert list(table.index) == ["a", "b"]
    assert list(table.columns) == ["CR_mean", "CR_std", "SR_mean", "SR_std", "n"]
    # a: CR mean 0.3, deviations -0.2, -0.1, 0.3 -> sum of squares 0.14, ddof=1 variance 0.07
    assert table.loc["a", "CR_mean"] == pytest.approx(0.3)
    assert table.loc["a", "CR_std"] == pytest.approx(math.sqrt(0.07))
    assert table.loc["a", "SR_std"] == pytest.approx(1.0)
    assert table.loc["a", "n"] == 3
    # a single seed has no sample std
    assert table.loc["b", "CR_mean"] == pytest.approx(0.5)
    assert math.isnan(table.loc["b", "CR_std"]) and table.loc["b", "n"] == 1


def test_mean_std_table_rejects_bad_tables():
    with pytest.raises(UserError, match="'method' column"):
        mean_std_table(pd.DataFrame({"seed": [0], "CR": [0.1]}))
    with pytest.raises(UserError, match="several rows"):
        mean_std_table(pd.DataFrame({"method": ["a", "a"], "seed": [0, 0], "CR": [0.1, 0.2]}))


# ------------------------------------------------------------------------------------------------
# Newey-West and stationary bootstrap
# ------------------------------------------------------------------------------------------------


def test_newey_west_t_equals_hand_bartlett_hac():
    x = np.array([0.02, -0.01, 0.03, 0.00, 0.01, -0.02, 0.04, 0.01])
    T, lags = len(x), 2
    u = x - x.mean()  # mean = 0.08 / 8 = 0.01
    # autocovariances gamma_j = sum_t u_t u_{t-j} / T; Bartlett weights 1 - j / (lags + 1)
    gamma = [sum(u[t] * u[t - j] for t in range(j, T)) / T for j in range(lags + 1)]
    long_run_variance = gamma[0] + 2 * (1 - 1 / 3) * gamma[1] + 2 * (1 - 2 / 3) * gamma[2]
    t_hand = x.mean() / math.sqrt(long_run_variance / T)
    result = newey_west_test(x, lags=2)
    assert result.t == pytest.approx(t_hand, rel=1e-10)
    assert result.mean == pytest.approx(0.01)
    assert result.p == pytest.approx(1 - PHI.cdf(t_hand), rel=1e-9)  # one-sided, normal
    assert result.lags == 2
    # negative mean: one-sided p above 1/2
    assert newey_west_test(-x, lags=2).p == pytest.approx(PHI.cdf(t_hand), rel=1e-9)


def test_newey_west_default_lags_rule():
    # floor(4 (T/100)^(2/9)): T=100 -> 4; T=500 -> floor(4 * 1.4299) = 5; T=50 -> floor(3.43) = 3
    assert [newey_west_lags(n) for n in (100, 500, 50)] == [4, 5, 3]
    assert newey_west_test(noise(0, 500)).lags == 5


def test_planted_signal_is_detected():
    # AR(1) noise (phi = 0.3, shocks 1 %) plus a mean of 30 bp a day. The mean's HAC standard error
    # is 0.01 / (1 - 0.3) / sqrt(750) = 0.052 %, so the expected t is about 5.8 (p < 0.01 needs 2.33)
    rng = np.random.default_rng(7)
    shocks = rng.normal(0, 0.01, 750)
    ar = np.empty_like(shocks)
    ar[0] = shocks[0]
    for t in range(1, len(ar)):
        ar[t] = 0.3 * ar[t - 1] + shocks[t]
    excess = 0.003 + ar
    assert newey_west_test(excess).p < 0.01
    boot = stationary_bootstrap_test(excess, reps=500, seed=1)
    assert boot.p < 0.01
    assert boot.block_size >= 1 and boot.reps == 500


def test_noise_p_values_are_calibrated():
    nw_p, boot_p = [], []
    for seed in range(200):
        x = noise(seed)  # true mean 0: H0 holds
        nw_p.append(newey_west_test(x).p)
        boot_p.append(stationary_bootstrap_test(x, reps=200, seed=seed).p)
    for p in (np.array(nw_p), np.array(boot_p)):
        assert 0.01 <= np.mean(p < 0.05) <= 0.12
        assert 0.40 <= np.mean(p) <= 0.60  # uniform p-values average 1/2


def test_bootstrap_is_reproducible_with_a_seed():
    x = noise(3, mean=0.0005)
    first = stationary_bootstrap_test(x, reps=300, seed=11)
    assert stationary_bootstrap_test(x, reps=300, seed=11) == first
    assert stationary_bootstrap_test(x, reps=300, seed=12).p != first.p
    given = stationary_bootstrap_test(x, reps=300, block_size=5, seed=11)
    assert given.block_size == 5


def test_zero_variance_excess_has_no_test():
    assert math.isnan(newey_west_test(np.zeros(50)).p)
    assert math.isnan(stationary_bootstrap_test(np.zeros(50), reps=10).p)


def test_invalid_inputs_raise_user_errors():
    with_nan = noise(0, 50)
    with_nan[17] = np.nan
    with pytest.raises(UserError, match="position 17"):
        newey_west_test(with_nan)
    with pytest.raises(UserError, match="at least"):
        stationary_bootstrap_test(np.array([0.01, 0.02]))
    with pytest.raises(UserError, match="1-D"):
        newey_west_test(np.zeros((10, 2)))
    with pytest.raises(UserError, match="lags"):
        newey_west_test(noise(0, 10), lags=10)
    with pytest.raises(UserError, match="not aligned"):
        significance_table({"a": noise(0, 50), "ref": noise(1, 49)}, "ref")
    with pytest.raises(UserError, match="reference 'nope'"):
        significance_table({"a": noise(0, 50)}, "nope")
    with pytest.raises(UserError, match="align"):
        reality_check_and_spa({"a": noise(0, 50)}, noise(1, 60))


# ------------------------------------------------------------------------------------------------
# Benjamini-Hochberg and the significance table
# ------------------------------------------------------------------------------------------------


def test_benjamini_hochberg_by_hand():
    p = [0.01, 0.04, 0.03, 0.20, math.nan]
    # 4 finite p-values, sorted 0.01, 0.03, 0.04, 0.20 -> p * m / rank = 0.04, 0.06, 0.0533, 0.20;
    # then running minimum from the largest rank down: 0.20, 0.0533, 0.0533, 0.04.
    expected = [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.20, math.nan]
    np.testing.assert_allclose(benjamini_hochberg(p), expected)
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.5, 1.5])


def test_significance_table():
    reference = noise(0, 500)
    daily = {
        "equal-weight": reference,
        "skilled": reference + 0.002 + noise(1, 500, std=0.005),
        "lucky": reference + noise(2, 500, std=0.005),
        "clone": reference.copy(),  # identical to the reference: untestable
    }
    table = significance_table(daily, "equal-weight", reps=300, seed=5)
    assert list(table.index) == ["skilled", "lucky", "clone"]
    assert list(table.columns) == ["mean_excess", "nw_t", "nw_p", "boot_p", "q_nw", "q_boot"]
    assert table.loc["skilled", "mean_excess"] == pytest.approx(252 * np.mean(daily["skilled"] - reference))
    assert table.loc["skilled", "nw_p"] < 0.01 and table.loc["skilled", "boot_p"] < 0.01
    assert table.loc["lucky", "nw_p"] > 0.05
    assert table.loc["skilled", "nw_t"] == pytest.approx(newey_west_test(daily["skilled"] - reference).t)
    np.testing.assert_allclose(table["q_nw"], benjamini_hochberg(table["nw_p"]))
    np.testing.assert_allclose(table["q_boot"], benjamini_hochberg(table["boot_p"]))
    assert math.isnan(table.loc["clone", "q_nw"])
    pd.testing.assert_frame_equal(table, significance_table(daily, "equal-weight", reps=300, seed=5))


# ------------------------------------------------------------------------------------------------
# Reality Check and SPA
# ------------------------------------------------------------------------------------------------


def test_dominant_model_is_found_by_reality_check_and_spa():
    benchmark = noise(0, 500)
    returns = {f"noise-{i}": benchmark + noise(10 + i, 500, std=0.005) for i in range(4)}
    returns["dominant"] = benchmark + 0.002 + noise(20, 500, std=0.005)
    result = reality_check_and_spa(returns, benchmark, reps=500, seed=0)
    assert result["best"] == "dominant" and result["n_models"] == 5
    assert result["reality_check_p"] < 0.01 and result["spa_p"] < 0.01
    assert reality_check_and_spa(returns, benchmark, reps=500, seed=0) == result


def test_noise_models_do_not_beat_the_benchmark():
    # 20 independent data sets in which no model has an edge: the tests should rarely reject
    rc_p, spa_p = [], []
    for seed in range(20):
        benchmark = noise(1000 + seed, 300)
        returns = {f"m{i}": benchmark + noise(100 * seed + i, 300, std=0.005) for i in range(5)}
        returns["benchmark-copy"] = benchmark.copy()  # left out: it equals the benchmark
        result = reality_check_and_spa(returns, benchmark, reps=300, seed=seed)
        assert result["n_models"] == 5
        assert result["spa_p"] <= result["reality_check_p"]  # consistent <= upper
        rc_p.append(result["reality_check_p"])
        spa_p.append(result["spa_p"])
    assert np.mean(rc_p) > 0.3 and np.mean(spa_p) > 0.3
    assert np.mean(np.array(rc_p) < 0.05) <= 0.15


def spa_by_hand(returns: dict, benchmark: np.ndarray, *, reps: int, seed: int, block_size: float) -> dict:
    """Hansen (2005) studentized SPA written as plain loops from the paper, on the same resampled
    days as `hansen_spa` (arch's StationaryBootstrap of the day indices with the same seed)."""
    from arch.bootstrap import StationaryBootstrap

    names = list(returns)
    n, k = len(benchmark), len(names)
    diffs = [[returns[name][t] - benchmark[t] for t in range(n)] for name in names]
    means = [sum(d) / n for d in diffs]
    resampled = [
        data[0] for data, _ in StationaryBootstrap(block_size, np.arange(n), seed=np.random.default_rng(seed)).bootstrap(reps)
    ]
    boot_means = [[sum(diffs[i][t] for t in days) / n for i in range(k)] for days in resampled]
    # omega_k^2: the bootstrap variance of sqrt(n) * mean_k
    omega = [math.sqrt(sum(n * (b[i] - means[i]) ** 2 for b in boot_means) / reps) for i in range(k)]
    statistic = max(0.0, max(math.sqrt(n) * means[i] / omega[i] for i in range(k)))
    threshold = math.sqrt(2 * math.log(math.log(n)))
    null_means = {
        "lower": [min(means[i], 0.0) for i in range(k)],
        "consistent": [means[i] if math.sqrt(n) * means[i] / omega[i] <= -threshold else 0.0 for i in range(k)],
        "upper": [0.0] * k,
    }
    pvalues = {}
    for kind, mu in null_means.items():
        exceed = 0
        for b in boot_means:
            t_star = max(0.0, max(math.sqrt(n) * (b[i] - means[i] + mu[i]) / omega[i] for i in range(k)))
            exceed += t_star > statistic
        pvalues[kind] = exceed / reps
    return {"statistic": statistic, **pvalues}


def test_hansen_spa_matches_a_hand_computation_and_differs_from_arch_when_volatilities_differ():
    # "steady" beats the benchmark by a little with tiny tracking noise (t about 9); "wild" has no
    # edge (its excess is demeaned) but a huge tracking noise. Unstudentized (arch), the wild model's
    # variance drowns the steady one's edge; studentized (Hansen), the steady model's t decides.
    n = 600
    benchmark = noise(1, n)
    wild = noise(3, n, std=0.04)
    returns = {
        "steady": benchmark + 0.0004 + noise(2, n, std=0.001),
        "wild": benchmark + wild - wild.mean(),
    }
    for i in range(3):
        returns[f"quiet-{i}"] = benchmark + noise(10 + i, n, std=0.002)
    result = hansen_spa(returns, benchmark, reps=300, seed=4, block_size=5.0)
    expected = spa_by_hand(returns, benchmark, reps=300, seed=4, block_size=5.0)
    assert result.statistic == pytest.approx(expected["statistic"], rel=1e-9)
    for kind in ("lower", "consistent", "upper"):
        assert getattr(result, kind) == expected[kind], kind
    assert result.lower <= result.consistent <= result.upper
    assert result.best == "steady" and result.n_models == 5
    arch_spa = reality_check_and_spa(returns, benchmark, reps=300, seed=4, block_size=5.0)
    assert result.consistent < 0.01 and arch_spa["spa_p"] > 0.2  # they differ, as they should


def test_hansen_spa_does_not_reject_under_noise():
    pvalues = []
    for seed in range(10):
        benchmark = noise(2000 + seed, 300)
        returns = {f"m{i}": benchmark + noise(300 * seed + i, 300, std=0.005) for i in range(4)}
        returns["copy"] = benchmark.copy()  # left out: it cannot beat the benchmark
        result = hansen_spa(returns, benchmark, reps=200, seed=seed)
        assert result.n_models == 4
        pvalues.append(result.consistent)
    assert np.mean(pvalues) > 0.3


# ------------------------------------------------------------------------------------------------
# Deflated Sharpe ratio
# ------------------------------------------------------------------------------------------------


def test_deflated_sharpe_matches_bailey_lopez_de_prado_example():
    # Bailey & López de Prado (2014), numerical example: best annualized SR 2.5 among N = 100
    # trials whose annualized SRs have variance 0.5, T = 1250 daily returns (250 a year),
    # skewness -3, kurtosis 10. They report SR0 ~ 0.1132 (daily) and DSR ~ 0.9004.
    sr, variance = 2.5 / math.sqrt(250), 0.5 / 250  # per-day SR 0.158114, per-day variance 0.002
    z_first = PHI.inv_cdf(1 - 1 / 100)  # 2.326348
    z_second = PHI.inv_cdf(1 - 1 / (100 * math.e))  # 2.680 (1 - 0.0036788)
    sr0_hand = math.sqrt(variance) * ((1 - EULER_GAMMA) * z_first + EULER_GAMMA * z_second)
    # (0.158114 - 0.113172) * sqrt(1249) / sqrt(1 + 3 * 0.158114 + 9/4 * 0.025) = 1.5883 / 1.2372
    z = (sr - sr0_hand) * math.sqrt(1250 - 1) / math.sqrt(1 - (-3) * sr + (10 - 1) / 4 * sr**2)
    sr0, dsr = deflated_sharpe_from_moments(
        sr, n_obs=1250, skewness=-3.0, kurtosis=10.0, n_trials=100, sharpe_variance=variance
    )
    assert sr0 == pytest.approx(sr0_hand, rel=1e-9)
    assert dsr == pytest.approx(PHI.cdf(z), rel=1e-9)
    assert round(sr0, 4) == 0.1132 and round(dsr, 4) == 0.9004  # the paper's rounded figures


def test_deflated_sharpe_of_a_return_series_by_hand():
    r = np.tile([0.02, -0.01, 0.005, 0.0], 63)  # T = 252
    # mean 0.00375; deviations 0.01625, -0.01375, 0.00125, -0.00375 (each 63 times)
    dev = np.array([0.01625, -0.01375, 0.00125, -0.00375])
    m2, m3, m4 = (dev**2).mean(), (dev**3).mean(), (dev**4).mean()  # biased central moments
    sr_hand = 0.00375 / math.sqrt(m2 * 252 / 251)  # std with ddof=1
    skew_hand, kurt_hand = m3 / m2**1.5, m4 / m2**2  # non-excess kurtosis
    result = deflated_sharpe_ratio(r, n_trials=10, sharpe_variance=0.01, periods_per_year=252)
    assert result.sr == pytest.approx(sr_hand, rel=1e-9)
    assert result.skewness == pytest.approx(skew_hand, rel=1e-9)
    assert result.kurtosis == pytest.approx(kurt_hand, rel=1e-9)
    sr0 = 0.1 * ((1 - EULER_GAMMA) * PHI.inv_cdf(0.9) + EULER_GAMMA * PHI.inv_cdf(1 - 1 / (10 * math.e)))
    z = (
        (sr_hand - sr0)
        * math.sqrt(251)
        / math.sqrt(1 - skew_hand * sr_hand + (kurt_hand - 1) / 4 * sr_hand**2)
    )
    assert result.sr0 == pytest.approx(sr0, rel=1e-9)
    assert result.dsr == pytest.approx(PHI.cdf(z), rel=1e-9)
    assert result.sr_annualized == pytest.approx(sr_hand * math.sqrt(252))
    assert result.sr0_annualized == pytest.approx(sr0 * math.sqrt(252))


def test_single_trial_dsr_is_the_probabilistic_sharpe_ratio():
    r = noise(4, 500, mean=0.0008)
    single = deflated_sharpe_ratio(r, n_trials=1, sharpe_variance=0.01)
    assert single.sr0 == 0.0 and expected_max_sharpe(1, 0.3) == 0.0
    sr, g3, g4 = single.sr, single.skewness, single.kurtosis
    psr = PHI.cdf(sr * math.sqrt(499) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2))
    assert single.dsr == pytest.approx(psr, rel=1e-9)
    # more trials raise the luck threshold and lower the DSR
    many = deflated_sharpe_ratio(r, n_trials=50, sharpe_variance=0.01)
    assert many.sr0 > 0 and many.dsr < single.dsr
    with pytest.raises(UserError, match="n_trials"):
        deflated_sharpe_ratio(r, n_trials=0, sharpe_variance=0.01)
    with pytest.raises(UserError, match="sharpe_variance"):
        deflated_sharpe_ratio(r, n_trials=5, sharpe_variance=-1.0)


def test_trial_sharpe_variance():
    trials = [noise(s, 300, mean=0.0005 * s) for s in range(4)]
    sharpes = [t.mean() / t.std(ddof=1) for t in trials]
    assert trial_sharpe_variance(trials) == pytest.approx(np.var(sharpes, ddof=1))
    assert trial_sharpe_variance(dict(enumerate(trials))) == pytest.approx(np.var(sharpes, ddof=1))
    with pytest.raises(UserError, match="at least 2"):
        trial_sharpe_variance(trials[:1])
