"""Data snooping: is the best of many methods better than the reference by more than luck allows?

Over all methods at once, on **aligned daily return arrays** (as `trustfolio.evaluation.stats`):

- `reality_check_and_spa`     White's Reality Check over all methods (arch ``SPA``, not studentized);
- `hansen_spa`                Hansen's (2005) studentized SPA test over all methods (the statistic
                              written here; the stationary-bootstrap resampling is arch's);
- `deflated_sharpe_ratio`     Bailey & López de Prado's (2014) correction of the best Sharpe ratio
                              for the number of trials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from arch.bootstrap import SPA, StationaryBootstrap
from scipy import stats as scipy_stats

from trustfolio.errors import UserError
from trustfolio.evaluation.stats import (
    EULER_MASCHERONI,
    PERIODS_PER_YEAR,
    _aligned_returns,
    _generator,
    _returns_array,
    _stationary_block_size,
)


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


def _candidates(returns: Mapping[str, np.ndarray], benchmark: np.ndarray, reps: int):
    """The benchmark's returns and the methods' that differ from them (aligned, checked): the
    candidate set both snooping tests take."""
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
    return bench, models


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
    bench, models = _candidates(returns, benchmark, reps)
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
    bench, models = _candidates(returns, benchmark, reps)
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
