"""Statistics that tell skill from luck across methods and seeds.

Everything here takes **aligned daily return arrays** (same days, same length, no NaN) and uses the
field's libraries rather than hand-written estimators:

- `mean_std_table`            mean ± std of every metric across seeds (pandas);
- `newey_west_test`           one-sided HAC t-test of a mean daily excess return (statsmodels OLS);
- `stationary_bootstrap_test` the same hypothesis by Politis & Romano's stationary bootstrap (arch);
- `benjamini_hochberg`        false-discovery-rate q-values (statsmodels ``multipletests``);
- `reality_check_and_spa`     White's Reality Check over all methods (arch ``SPA``, not studentized);
- `hansen_spa`                Hansen's (2005) studentized SPA test over all methods (the statistic
                              written here; the stationary-bootstrap resampling is arch's);
- `deflated_sharpe_ratio`     Bailey & López de Prado's (2014) correction of the best Sharpe ratio
                              for the number of trials;
- `significance_table`        per method versus a reference: NW and bootstrap p-values with BH q-values.

Alternative hypotheses are always "the method earns more than the reference", so p-values are
one-sided. A zero-variance excess series (a method identical to its reference) has no test: its t
and p are NaN, and `benjamini_hochberg` leaves NaN p-values out of the family.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from arch.bootstrap import SPA, StationaryBootstrap, optimal_block_length
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from trustfolio.errors import UserError

#: Fewest observations any test here accepts (a HAC variance or a block length needs a few days).
MIN_OBSERVATIONS = 3

#: Trading days per year used to annualize means and Sharpe ratios (the paper code's convention).
PERIODS_PER_YEAR = 252

EULER_MASCHERONI = 0.5772156649015329


@dataclass(frozen=True)
class TestResult:
    """Outcome of a one-sided test of H1: mean daily excess return > 0.

    ``t`` is the HAC t-statistic for Newey-West and ``mean / std(bootstrap means)`` for the
    bootstrap; ``p`` is the one-sided p-value. ``lags`` (Newey-West) or ``block_size`` and
    ``reps`` (bootstrap) record the tuning actually used.
    """

    __test__ = False  # not a pytest test class, despite its name

    mean: float
    t: float
    p: float
    n_obs: int
    lags: int | None = None
    block_size: float | None = None
    reps: int | None = None


@dataclass(frozen=True)
class SPAResult:
    """Hansen's (2005) studentized SPA test of H0: no model has a higher expected daily return than
    the benchmark. ``consistent`` is Hansen's SPA p-value; ``lower`` and ``upper`` bound it (``upper``
    treats every model as relevant, as White's Reality Check does, but on studentized means).
    ``statistic`` is ``T_SPA = max(0, max_k sqrt(n) mean_k / omega_k)``; ``best`` the model with the
    largest studentized mean.
    """

    lower: float
    consistent: float
    upper: float
    statistic: float
    best: str
    n_models: int
    block_size: float
    reps: int


@dataclass(frozen=True)
class DSRResult:
    """Deflated Sharpe ratio of one return series.

    ``sr`` and ``sr0`` are per period (daily), as in the DSR formula; ``sr_annualized`` and
    ``sr0_annualized`` multiply them by ``sqrt(periods_per_year)``. ``dsr`` is the probability that
    the true Sharpe ratio exceeds ``sr0``, the Sharpe ratio the best of ``n_trials`` skill-less
    trials would reach by luck.
    """

    sr: float
    sr0: float
    dsr: float
    sr_annualized: float
    sr0_annualized: float
    n_obs: int
    n_trials: int
    skewness: float
    kurtosis: float  # non-excess: 3 for a normal distribution


# --------------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------------


def _returns_array(values, what: str) -> np.ndarray:
    """`values` as a float64 1-D array of at least MIN_OBSERVATIONS finite numbers, else UserError."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise UserError(f"{what} must be a 1-D array of daily returns; got shape {array.shape}")
    if len(array) < MIN_OBSERVATIONS:
        raise UserError(f"{what} has {len(array)} observations; the tests need at least {MIN_OBSERVATIONS}")
    bad = np.flatnonzero(~np.isfinite(array))
    if len(bad):
        raise UserError(
            f"{what} has {len(bad)} NaN/infinite values (first at position {bad[0]}); "
            "align the series on common days and drop or fill missing days before testing"
        )
    return array


def _aligned_returns(returns: Mapping[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    """Validate a name -> returns mapping whose arrays must all cover the same days."""
    if not returns:
        raise UserError(f"{what} is empty; give at least one method's daily returns")
    arrays = {name: _returns_array(r, f"{what}[{name!r}]") for name, r in returns.items()}
    lengths = {name: len(r) for name, r in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise UserError(
            f"{what} are not aligned: lengths differ ({lengths}); give every method's returns on the same days"
        )
    return arrays


def _generator(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _stationary_block_size(data: np.ndarray) -> float:
    """Politis-White (2004) optimal mean block length of the stationary bootstrap (arch), >= 1.

    For a 2-D array the columns' lengths are averaged. A constant column has no defined length
    (arch returns NaN); it is ignored, and 1 (an i.i.d. bootstrap) is used if nothing remains.
    """
    lengths = optimal_block_length(data)["stationary"].to_numpy()
    lengths = lengths[np.isfinite(lengths)]
    return max(1.0, float(lengths.mean())) if len(lengths) else 1.0


# --------------------------------------------------------------------------------------------------
# Tables across seeds
# --------------------------------------------------------------------------------------------------


def mean_std_table(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of every metric across seeds, one row per method.

    ``per_seed`` has one row per (method, seed): a ``method`` column, optionally ``seed``, and
    numeric metric columns (other non-numeric columns such as ``window`` are ignored). The result
    is indexed by method (in order of first appearance) with columns ``<metric>_mean``,
    ``<metric>_std`` for each metric in input order, then ``n`` (rows of the method). The std is
    the sample std (``ddof=1``), so it is NaN for a method with a single seed. NaN metric values
    (e.g. a Sharpe ratio of a constant series) are skipped.
    """
    if "method" not in per_seed.columns:
        raise UserError(f"per-seed table needs a 'method' column; it has {list(per_seed.columns)}")
    if "seed" in per_seed.columns and per_seed.duplicated(["method", "seed"]).any():
        dup = per_seed.loc[per_seed.duplicated(["method", "seed"]), ["method", "seed"]].iloc[0].tolist()
        raise UserError(
            f"per-seed table has several rows for (method, seed) = {tuple(dup)}; "
            "aggregate the windows of a seed first (one row per method and seed)"
        )
    metrics = [
        c
        for c in per_seed.columns
        if c not in ("method", "seed") and pd.api.types.is_numeric_dtype(per_seed[c])
    ]
    grouped = per_seed.groupby("method", sort=False)
    means, stds = grouped[metrics].mean(), grouped[metrics].std(ddof=1)
    columns = {}
    for metric in metrics:
        columns[f"{metric}_mean"] = means[metric]
        columns[f"{metric}_std"] = stds[metric]
    table = pd.DataFrame(columns, index=means.index)
    table["n"] = grouped.size()
    return table


# --------------------------------------------------------------------------------------------------
# Single-method tests of mean excess return > 0
# --------------------------------------------------------------------------------------------------


def newey_west_lags(n_obs: int) -> int:
    """Newey & West's (1994) automatic lag rule ``floor(4 (T/100)^(2/9))`` (statsmodels' own default)."""
    return int(math.floor(4.0 * (n_obs / 100.0) ** (2.0 / 9.0)))


def newey_west_test(excess: np.ndarray, lags: int | None = None) -> TestResult:
    """One-sided Newey-West t-test of H1: mean daily excess return > 0.

    Regresses ``excess`` on a constant with statsmodels OLS and a HAC (Bartlett kernel) covariance,
    without small-sample correction, so ``t = mean / sqrt(LRV / T)`` where ``LRV`` is the
    Bartlett-weighted long-run variance with weights ``1 - j / (lags + 1)``. ``lags`` defaults to
    `newey_west_lags`. The p-value is one-sided from the normal distribution statsmodels uses.
    """
    x = _returns_array(excess, "excess returns")
    if lags is None:
        lags = newey_west_lags(len(x))
    if not 0 <= lags < len(x):
        raise UserError(f"Newey-West lags must be in [0, {len(x) - 1}] for {len(x)} observations; got {lags}")
    mean = float(x.mean())
    if np.ptp(x) == 0:
        return TestResult(mean=mean, t=math.nan, p=math.nan, n_obs=len(x), lags=lags)
    fit = sm.OLS(x, np.ones(len(x))).fit(cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": False})
    t = float(fit.tvalues[0])
    two_sided = float(fit.pvalues[0])
    one_sided = two_sided / 2 if t > 0 else 1 - two_sided / 2
    return TestResult(mean=mean, t=t, p=one_sided, n_obs=len(x), lags=lags)


def stationary_bootstrap_test(
    excess: np.ndarray,
    *,
    reps: int = 2000,
    block_size: float | None = None,
    seed: int | np.random.Generator = 0,
) -> TestResult:
    """One-sided stationary-bootstrap p-value of H1: mean daily excess return > 0.

    The series is centred (its mean removed) so the bootstrap draws from a world where H0 (mean
    0) holds with the data's own autocorrelation; ``p`` is the share of the ``reps`` bootstrap
    means at or above the observed mean. ``block_size`` (mean block length) defaults to arch's
    Politis-White optimal length for the stationary bootstrap. Same ``seed``, same p-value.
    """
    x = _returns_array(excess, "excess returns")
    if reps < 1:
        raise UserError(f"bootstrap reps must be a positive integer; got {reps}")
    mean = float(x.mean())
    if np.ptp(x) == 0:
        return TestResult(mean=mean, t=math.nan, p=math.nan, n_obs=len(x), block_size=block_size, reps=reps)
    if block_size is None:
        block_size = _stationary_block_size(x)
    elif block_size < 1:
        raise UserError(f"bootstrap block_size must be >= 1 day; got {block_size}")
    bootstrap = StationaryBootstrap(block_size, x - mean, seed=_generator(seed))
    boot_means = bootstrap.apply(np.mean, reps=reps)[:, 0]
    p = float(np.mean(boot_means >= mean))
    t = mean / float(boot_means.std(ddof=1)) if reps > 1 else math.nan
    return TestResult(mean=mean, t=t, p=p, n_obs=len(x), block_size=float(block_size), reps=reps)


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg q-values (statsmodels ``fdr_bh``), in the input order.

    NaN p-values (untestable methods) are left out of the family and get NaN q-values.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise UserError(f"p-values must be a 1-D sequence; got shape {p.shape}")
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise UserError(f"p-values must lie in [0, 1]; got {p[finite].tolist()}")
    q = np.full(len(p), math.nan)
    if finite.any():
        q[finite] = multipletests(p[finite], method="fdr_bh")[1]
    return q


def significance_table(
    daily_returns: Mapping[str, np.ndarray],
    reference: str,
    *,
    reps: int = 2000,
    seed: int = 0,
    periods_per_year: int = PERIODS_PER_YEAR,
) -> pd.DataFrame:
    """Every method versus ``reference`` (e.g. 1/N): one row per other method.

    Columns: ``mean_excess`` (mean daily excess return times ``periods_per_year``), ``nw_t`` and
    ``nw_p`` (`newey_west_test`), ``boot_p`` (`stationary_bootstrap_test` with ``reps`` and
    ``seed``), and ``q_nw`` / ``q_boot``: Benjamini-Hochberg q-values of each p-value family across
    the methods. All arrays must be aligned on the same days.
    """
    returns = _aligned_returns(daily_returns, "daily returns")
    if reference not in returns:
        raise UserError(
            f"reference {reference!r} is not among the methods {sorted(returns)}; pick one of them"
        )
    rows = {}
    for name, r in returns.items():
        if name == reference:
            continue
        excess = r - returns[reference]
        nw = newey_west_test(excess)
        boot = stationary_bootstrap_test(excess, reps=reps, seed=seed)
        rows[name] = {"mean_excess": nw.mean * periods_per_year, "nw_t": nw.t, "nw_p": nw.p, "boot_p": boot.p}
    if not rows:
        raise UserError("significance needs at least one method besides the reference")
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    table["q_nw"] = benjamini_hochberg(table["nw_p"].to_numpy())
    table["q_boot"] = benjamini_hochberg(table["boot_p"].to_numpy())
    return table


# --------------------------------------------------------------------------------------------------
# Across all methods: data snooping and the deflated Sharpe ratio
# --------------------------------------------------------------------------------------------------


def reality_check_and_spa(
    returns: Mapping[str, np.ndarray],
    benchmark: np.ndarray,
    *,
    reps: int = 2000,
    seed: int | np.random.Generator = 0,
    block_size: float | None = None,
) -> dict:
    """White's Reality Check, and arch's (unstudentized) SPA: does *any* method beat ``benchmark``?
    For Hansen's studentized SPA test use `hansen_spa`.

    H0: no method has a higher expected daily return than the benchmark. arch's `SPA` works on
    losses, so loss = -return for every method and the benchmark. arch documents ``SPA`` as "also
    known as the Reality Check" (its ``RealityCheck`` class is a bare subclass of ``SPA``); its three
    p-values differ only in how the bootstrap recentres each model's loss differential (``SPA``
    Notes; ``SPA._simulate_values``: "Upper always re-centers" by every model's sample mean). That
    "upper" recentring treats every model as relevant (the least favourable null), which is White's
    (2000) Reality Check; Hansen (2005) calls it the upper-bound p-value and shows it is the RC's.
    "consistent" is Hansen's recentring, but arch 8.0 compares raw (not studentized) mean loss
    differentials; its ``studentize`` flag only enters the consistent recentring threshold. So
    ``spa_p`` is not Hansen's SPA p-value: with methods of very different volatility the noisiest one
    dominates the raw maximum (`hansen_spa` studentizes).

    Methods whose returns equal the benchmark's exactly are left out (they cannot beat it).
    ``block_size`` defaults to the mean Politis-White optimal stationary block length of the
    loss differentials. Returns ``{"reality_check_p", "spa_p", "best", "n_models", "block_size"}``
    with ``best`` the method with the highest mean return.
    """
    bench = _returns_array(benchmark, "benchmark returns")
    arrays = _aligned_returns(returns, "method returns")
    if len(next(iter(arrays.values()))) != len(bench):
        raise UserError(
            f"method returns have {len(next(iter(arrays.values())))} days but the benchmark has {len(bench)}; "
            "align them on the same days"
        )
    models = {name: r for name, r in arrays.items() if not np.array_equal(r, bench)}
    if not models:
        raise UserError("every method's returns equal the benchmark's; nothing to test")
    if reps < 1:
        raise UserError(f"bootstrap reps must be a positive integer; got {reps}")
    names = list(models)
    model_losses = -np.column_stack([models[n] for n in names])
    benchmark_losses = -bench
    if block_size is None:
        block_size = _stationary_block_size(benchmark_losses[:, None] - model_losses)
    spa = SPA(benchmark_losses, model_losses, block_size=block_size, reps=reps, seed=_generator(seed))
    spa.compute()
    best = names[int(np.argmin(model_losses.mean(axis=0)))]
    return {
        "reality_check_p": float(spa.pvalues["upper"]),
        "spa_p": float(spa.pvalues["consistent"]),
        "best": best,
        "n_models": len(names),
        "block_size": float(block_size),
    }


def hansen_spa(
    returns: Mapping[str, np.ndarray],
    benchmark: np.ndarray,
    *,
    reps: int = 2000,
    seed: int | np.random.Generator = 0,
    block_size: float | None = None,
) -> SPAResult:
    """Hansen's (2005) studentized test for superior predictive ability: does any method beat
    ``benchmark``? (arch's `SPA` is not studentized, see `reality_check_and_spa`.)

    With ``d_kt`` model k's daily return minus the benchmark's, ``dbar_k`` its mean over ``n`` days
    and ``omega_k^2`` the stationary-bootstrap variance of ``sqrt(n) dbar_k``:

        T_SPA = max(0, max_k sqrt(n) dbar_k / omega_k).

    Each bootstrap resample b (arch's `StationaryBootstrap` of the day indices) gives
    ``T*_b = max(0, max_k sqrt(n) (dbar*_kb - dbar_k + mu_k) / omega_k)`` under a null mean ``mu_k``
    and the p-value is the share of ``T*_b > T_SPA``. Hansen's three choices of ``mu_k``: ``lower``
    ``min(dbar_k, 0)``; ``consistent`` ``dbar_k`` where ``sqrt(n) dbar_k / omega_k <= -sqrt(2 log log
    n)`` (a clearly worse model is kept out of the null's way), else 0; ``upper`` 0 (every model at
    the boundary of the null). Studentizing matters when the methods' volatilities differ: a raw
    maximum is dominated by the noisiest method, whatever the others' edge.

    Methods whose returns equal the benchmark's exactly are left out. ``block_size`` defaults to the
    mean Politis-White optimal stationary block length of the differences.
    """
    bench = _returns_array(benchmark, "benchmark returns")
    arrays = _aligned_returns(returns, "method returns")
    if len(next(iter(arrays.values()))) != len(bench):
        raise UserError(
            f"method returns have {len(next(iter(arrays.values())))} days but the benchmark has {len(bench)}; "
            "align them on the same days"
        )
    models = {name: r for name, r in arrays.items() if not np.array_equal(r, bench)}
    if not models:
        raise UserError("every method's returns equal the benchmark's; nothing to test")
    if reps < 1:
        raise UserError(f"bootstrap reps must be a positive integer; got {reps}")
    names = list(models)
    diffs = np.column_stack([models[name] - bench for name in names])  # [n, K]
    n = len(diffs)
    if block_size is None:
        block_size = _stationary_block_size(diffs)
    mean = diffs.mean(axis=0)

    bootstrap = StationaryBootstrap(block_size, np.arange(n), seed=_generator(seed))
    boot_means = np.array([diffs[days].mean(axis=0) for (days,), _ in bootstrap.bootstrap(reps)])  # [B, K]
    omega = np.sqrt(n * np.mean((boot_means - mean) ** 2, axis=0))
    # A model whose difference never varies in any resample has no studentized mean: it is constant
    # (a fixed offset from the benchmark), so its sign alone decides; give it an infinitesimal scale.
    omega = np.where(omega > 0, omega, np.finfo(float).tiny)
    t = np.sqrt(n) * mean / omega
    statistic = max(0.0, float(t.max()))

    null_means = {
        "lower": np.minimum(mean, 0.0),
        "consistent": np.where(t <= -math.sqrt(2.0 * math.log(math.log(n))), mean, 0.0),
        "upper": np.zeros_like(mean),
    }
    pvalues = {}
    for kind, mu in null_means.items():
        t_star = np.maximum(0.0, (np.sqrt(n) * (boot_means - mean + mu) / omega).max(axis=1))
        pvalues[kind] = float(np.mean(t_star > statistic))
    return SPAResult(
        **pvalues,
        statistic=statistic,
        best=names[int(np.argmax(t))],
        n_models=len(names),
        block_size=float(block_size),
        reps=reps,
    )


def expected_max_sharpe(n_trials: int, sharpe_variance: float) -> float:
    """SR0: the Sharpe ratio the best of ``n_trials`` skill-less trials reaches by luck.

    ``sqrt(V) ((1 - γ) Φ⁻¹(1 - 1/N) + γ Φ⁻¹(1 - 1/(N e)))`` with γ the Euler-Mascheroni constant
    (Bailey & López de Prado 2014, eq. 2); 0 for a single trial (nothing was selected).
    """
    if n_trials < 1:
        raise UserError(f"n_trials must be >= 1; got {n_trials}")
    if not (sharpe_variance >= 0 and math.isfinite(sharpe_variance)):
        raise UserError(f"sharpe_variance must be a finite number >= 0; got {sharpe_variance}")
    if n_trials == 1:
        return 0.0
    gamma, norm = EULER_MASCHERONI, scipy_stats.norm
    z = (1 - gamma) * norm.ppf(1 - 1 / n_trials) + gamma * norm.ppf(1 - 1 / (n_trials * math.e))
    return math.sqrt(sharpe_variance) * float(z)


def deflated_sharpe_from_moments(
    sr: float, *, n_obs: int, skewness: float, kurtosis: float, n_trials: int, sharpe_variance: float
) -> tuple[float, float]:
    """``(SR0, DSR)`` from a per-period Sharpe ratio and the return moments.

    ``DSR = Φ((SR - SR0) sqrt(T - 1) / sqrt(1 - γ3 SR + (γ4 - 1)/4 SR²))`` (Bailey & López de Prado
    2014, eq. 9) with ``kurtosis`` = γ4 non-excess. With ``n_trials = 1`` this is the probabilistic
    Sharpe ratio against 0. NaN if the variance term is not positive (extreme moments).
    """
    sr0 = expected_max_sharpe(n_trials, sharpe_variance)
    variance_term = 1 - skewness * sr + (kurtosis - 1) / 4 * sr**2
    if not variance_term > 0:
        return sr0, math.nan
    z = (sr - sr0) * math.sqrt(n_obs - 1) / math.sqrt(variance_term)
    return sr0, float(scipy_stats.norm.cdf(z))


def deflated_sharpe_ratio(
    returns: np.ndarray, *, n_trials: int, sharpe_variance: float, periods_per_year: int = PERIODS_PER_YEAR
) -> DSRResult:
    """Deflated Sharpe ratio of ``returns``, the best of ``n_trials`` tried methods/configurations.

    ``sharpe_variance`` is the variance across the trials of their **per-period** (daily, not
    annualized) Sharpe ratios, e.g. `trial_sharpe_variance`. The Sharpe ratio is
    ``mean / std(ddof=1)`` (risk-free 0); skewness and non-excess kurtosis are scipy's (biased)
    sample moments. A constant series has no Sharpe ratio: every field but SR0 is NaN.
    """
    r = _returns_array(returns, "returns")
    std = r.std(ddof=1)
    if std > 0:
        sr = float(r.mean() / std)
        skewness = float(scipy_stats.skew(r))
        kurtosis = float(scipy_stats.kurtosis(r, fisher=False))  # non-excess: 3 for a normal
        sr0, dsr = deflated_sharpe_from_moments(
            sr,
            n_obs=len(r),
            skewness=skewness,
            kurtosis=kurtosis,
            n_trials=n_trials,
            sharpe_variance=sharpe_variance,
        )
    else:
        sr = skewness = kurtosis = dsr = math.nan
        sr0 = expected_max_sharpe(n_trials, sharpe_variance)
    scale = math.sqrt(periods_per_year)
    return DSRResult(sr, sr0, dsr, sr * scale, sr0 * scale, len(r), n_trials, skewness, kurtosis)


def trial_sharpe_variance(returns: Mapping[str, np.ndarray] | Sequence[np.ndarray]) -> float:
    """Sample variance (``ddof=1``) of the per-period Sharpe ratios of the trials, for the DSR."""
    series = list(returns.values()) if isinstance(returns, Mapping) else list(returns)
    if len(series) < 2:
        raise UserError(f"the Sharpe variance across trials needs at least 2 trials; got {len(series)}")
    sharpes = []
    for i, r in enumerate(series):
        r = _returns_array(r, f"trial {i} returns")
        std = r.std(ddof=1)
        if std > 0:
            sharpes.append(r.mean() / std)
    return float(np.var(sharpes, ddof=1)) if len(sharpes) >= 2 else 0.0
