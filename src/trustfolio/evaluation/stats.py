"""Statistics that tell skill from luck across methods and seeds.

Everything here takes **aligned daily return arrays** (same days, same length, no NaN) and uses the
field's libraries rather than hand-written estimators:

- `mean_std_table`            mean ± std of every metric across seeds (pandas);
- `newey_west_test`           one-sided HAC t-test of a mean daily excess return (statsmodels OLS);
- `stationary_bootstrap_test` the same hypothesis by Politis & Romano's stationary bootstrap (arch);
- `benjamini_hochberg`        false-discovery-rate q-values (statsmodels ``multipletests``);
- `significance_table`        per method versus a reference: NW and bootstrap p-values with BH q-values.

Across all methods at once (data snooping: White's Reality Check, Hansen's SPA, the deflated Sharpe
ratio) is `trustfolio.evaluation.snooping`.

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
from arch.bootstrap import StationaryBootstrap, optimal_block_length
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
