"""Significance seed by seed, and data snooping with every seed as a trial.

A learning method run with several seeds is several agents: each seed is what a user would deploy.
The mean of the seeds' daily returns is an *ensemble* of them (all seeds held at once, rebalanced
to equal capital every day), which nobody trained or deploys and whose noise partly cancels: its
Sharpe ratio can exceed every seed's. So nothing here tests a seed average:

- `seed_tests`           each seed's daily excess returns over the reference: Newey-West t-test
                         and stationary bootstrap (`stats`), one row per (method, seed), with the
                         Holm-adjusted p-values across the method's seeds;
- `holm`                 Holm's step-down adjustment (statsmodels ``multipletests(method="holm")``)
                         of one method's seed p-values and its combined statement ("significant at
                         5 % after Holm in k of n seeds"). The combined p is the smallest adjusted
                         p: below alpha it rejects "no seed beats the reference" with a family-wise
                         error rate of at most alpha;
- `method_table`         one row per method: the seeds' p-values, their median, the Holm-combined p,
                         how many seeds are significant after Holm, and Benjamini-Hochberg q-values
                         across methods computed on the Holm-combined p;
- `snooping_over_seeds`  White's Reality Check, Hansen's studentized SPA and the deflated Sharpe ratio
                         with every per-seed series (named ``method#seed``) as a candidate and trial.

The reference. A reference with one series (1/N is deterministic) is what every seed is tested
against. A reference with several seeds is paired seed by seed (seed k against its seed k); a seed
the reference lacks is tested against the reference's ensemble (the mean of its seeds); the
``reference_series`` column says which. The Reality Check and the SPA need one benchmark: the
reference's single series, or the ensemble of its seeds (``benchmark`` says which).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.stats.multitest import multipletests

from trustfolio.errors import UserError
from trustfolio.evaluation import snooping, stats
from trustfolio.evaluation.metrics import sharpe_ratio

#: Family-wise error rate of the Holm statements (and the report's bold cut-off).
SIGNIFICANCE_LEVEL = 0.05

#: method -> seed -> daily returns, all on the same days.
SeedReturns = Mapping[str, Mapping[int, np.ndarray]]


def series_name(method: str, seed: int) -> str:
    """The name of one seed's series among the candidates and trials: ``method#seed``."""
    return f"{method}#{seed}"


def ensemble_label(n_seeds: int) -> str:
    """How anything computed on a mean across seeds is labelled wherever it is shown."""
    return f"ensemble of {n_seeds} seeds (not a deployable agent)"


def p_text(p: float) -> str:
    return "–" if math.isnan(p) else "<0.001" if p < 0.001 else f"{p:.3f}"


@dataclass(frozen=True)
class HolmResult:
    """Holm's adjustment of one method's per-seed p-values (input order; NaN: untestable seed)."""

    pvalues: tuple[float, ...]
    adjusted: tuple[float, ...]
    p: float  # the smallest adjusted p: the p-value of "at least one seed beats the reference"
    n_significant: int  # seeds rejected at `alpha` after Holm (statsmodels' decision)
    n_tested: int  # seeds with a p-value
    alpha: float

    def statement(self) -> str:
        """One line: how many seeds are significant after Holm, and the smallest adjusted p."""
        level = f"{self.alpha:.0%}".replace("%", " %")
        if self.n_tested == 0:
            return "no test (returns equal the reference's)"
        if len(self.pvalues) == 1:
            verdict = "significant" if self.n_significant else "not significant"
            return f"{verdict} at {level} (one series, p {p_text(self.p)})"
        smallest = f"(smallest Holm-adjusted p {p_text(self.p)})"
        if self.n_significant == 0:
            return f"not significant at {level} after Holm in any of the {self.n_tested} seeds {smallest}"
        return (
            f"significant at {level} after Holm in {self.n_significant} of {self.n_tested} seeds {smallest}"
        )


def holm(pvalues: Sequence[float], alpha: float = SIGNIFICANCE_LEVEL) -> HolmResult:
    """Holm-adjust one method's seed p-values (statsmodels); NaN p-values stay out of the family."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or len(p) == 0:
        raise UserError(f"Holm needs a non-empty 1-D sequence of p-values; got shape {p.shape}")
    finite = ~np.isnan(p)
    if np.any((p[finite] < 0) | (p[finite] > 1)):
        raise UserError(f"p-values must lie in [0, 1]; got {p[finite].tolist()}")
    adjusted = np.full(len(p), math.nan)
    n_significant = 0
    if finite.any():
        reject, corrected, _, _ = multipletests(p[finite], alpha=alpha, method="holm")
        adjusted[finite] = corrected
        n_significant = int(reject.sum())
    combined = float(np.nanmin(adjusted)) if finite.any() else math.nan
    return HolmResult(
        tuple(float(x) for x in p),
        tuple(float(x) for x in adjusted),
        combined,
        n_significant,
        int(finite.sum()),
        alpha,
    )


def _checked(seed_returns: SeedReturns, reference: str) -> None:
    """Every series a valid return array on the same days, the reference present, one other method."""
    flat = {series_name(m, s): r for m, by_seed in seed_returns.items() for s, r in by_seed.items()}
    stats._aligned_returns(flat, "per-seed daily returns")
    if reference not in seed_returns or not seed_returns[reference]:
        raise UserError(
            f"reference {reference!r} is not among the methods {sorted(seed_returns)}; pick one of them"
        )
    if not any(m != reference and by_seed for m, by_seed in seed_returns.items()):
        raise UserError("significance needs at least one method besides the reference")


def _reference_for(seed_returns: SeedReturns, reference: str, seed: int | None) -> tuple[str, np.ndarray]:
    """(name, returns) the reference's series paired with `seed` (None: the benchmark of them all)."""
    ref = seed_returns[reference]
    if len(ref) == 1:
        ((ref_seed, returns),) = ref.items()
        return series_name(reference, ref_seed), np.asarray(returns, dtype=np.float64)
    if seed is not None and seed in ref:
        return series_name(reference, seed), np.asarray(ref[seed], dtype=np.float64)
    ensemble = np.mean([np.asarray(r, dtype=np.float64) for r in ref.values()], axis=0)
    return f"{reference} ({ensemble_label(len(ref))})", ensemble


def seed_tests(
    seed_returns: SeedReturns,
    reference: str,
    *,
    reps: int = 2000,
    seed: int = 0,
    alpha: float = SIGNIFICANCE_LEVEL,
    periods_per_year: int = stats.PERIODS_PER_YEAR,
) -> pd.DataFrame:
    """One row per (method, seed) of every method but the reference, indexed by ``(method, seed)``.

    Columns: ``reference_series`` (what the seed was tested against, see the module docstring),
    ``mean_excess`` (mean daily excess return times ``periods_per_year``), ``nw_t`` and ``nw_p``
    (`stats.newey_west_test`), ``boot_p`` (`stats.stationary_bootstrap_test` with ``reps`` and
    ``seed``), and ``nw_p_holm`` / ``boot_p_holm``: the p-values Holm-adjusted across the method's
    seeds (`holm`).
    """
    _checked(seed_returns, reference)
    rows = []
    for method, by_seed in seed_returns.items():
        if method == reference:
            continue
        for k, returns in by_seed.items():
            label, ref = _reference_for(seed_returns, reference, k)
            excess = np.asarray(returns, dtype=np.float64) - ref
            nw = stats.newey_west_test(excess)
            boot = stats.stationary_bootstrap_test(excess, reps=reps, seed=seed)
            rows.append(
                {
                    "method": method,
                    "seed": int(k),
                    "reference_series": label,
                    "mean_excess": nw.mean * periods_per_year,
                    "nw_t": nw.t,
                    "nw_p": nw.p,
                    "boot_p": boot.p,
                }
            )
    table = pd.DataFrame(rows).set_index(["method", "seed"])
    for column in ("nw_p", "boot_p"):
        adjusted = pd.Series(math.nan, index=table.index)
        for method in table.index.unique("method"):
            rows_of_method = table.index.get_level_values("method") == method
            adjusted[rows_of_method] = holm(table.loc[rows_of_method, column].to_numpy(), alpha).adjusted
        table[f"{column}_holm"] = adjusted
    return table


def method_table(per_seed: pd.DataFrame, *, alpha: float = SIGNIFICANCE_LEVEL) -> pd.DataFrame:
    """`seed_tests` summarized per method (index ``method``, in the table's order).

    Columns: ``n_seeds`` (1: a deterministic method's one series), ``seeds``, ``mean_excess`` (mean
    over the seeds), ``nw_t_median``; per test ``nw``/``boot``: ``<test>_p_seeds`` (the seeds'
    p-values, seed order), ``<test>_p_median``, ``<test>_p_holm`` (the Holm-combined p: the smallest
    Holm-adjusted p across the seeds), ``<test>_significant`` (seeds significant at ``alpha`` after
    Holm); ``nw_statement`` (`HolmResult.statement`); and ``q_nw`` / ``q_boot``: Benjamini-Hochberg
    q-values across methods of the Holm-combined p-values.
    """
    rows = {}
    for method in per_seed.index.unique("method"):
        group = per_seed.xs(method, level="method")
        row: dict[str, object] = {
            "n_seeds": len(group),
            "seeds": tuple(int(s) for s in group.index),
            "mean_excess": float(group["mean_excess"].mean()),
            "nw_t_median": float(group["nw_t"].median()),
        }
        for test in ("nw", "boot"):
            result = holm(group[f"{test}_p"].to_numpy(), alpha)
            row |= {
                f"{test}_p_seeds": result.pvalues,
                f"{test}_p_median": float(group[f"{test}_p"].median()),
                f"{test}_p_holm": result.p,
                f"{test}_significant": result.n_significant,
            }
            if test == "nw":
                row["nw_statement"] = result.statement()
        rows[method] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    table["q_nw"] = stats.benjamini_hochberg(table["nw_p_holm"].to_numpy())
    table["q_boot"] = stats.benjamini_hochberg(table["boot_p_holm"].to_numpy())
    return table


def snooping_over_seeds(
    seed_returns: SeedReturns, reference: str, *, reps: int = 2000, seed: int = 0
) -> dict[str, object]:
    """Reality Check, Hansen's SPA and the deflated Sharpe ratio over every per-seed series.

    Candidates of the Reality Check and the SPA: every seed of every method but the reference, one
    column each (``method#seed``), against ``benchmark``. Trials of the deflated Sharpe ratio: every
    series, the reference's included (``n_trials`` = their number); the DSR is of the series with
    the highest Sharpe ratio (``dsr_series``), deflated by the variance of all trials' Sharpe ratios.
    """
    _checked(seed_returns, reference)
    series = {
        series_name(m, s): np.asarray(r, dtype=np.float64)
        for m, by_seed in seed_returns.items()
        for s, r in by_seed.items()
    }
    candidates = {
        series_name(m, s): series[series_name(m, s)]
        for m, by_seed in seed_returns.items()
        if m != reference
        for s in by_seed
    }
    benchmark_name, benchmark = _reference_for(seed_returns, reference, None)
    across = snooping.reality_check_and_spa(candidates, benchmark, reps=reps, seed=seed)
    hansen = snooping.hansen_spa(candidates, benchmark, reps=reps, seed=seed)
    sharpe = {name: sharpe_ratio(r) for name, r in series.items()}
    best = max(sharpe, key=lambda name: -math.inf if math.isnan(sharpe[name]) else sharpe[name])
    variance = snooping.trial_sharpe_variance(series) if len(series) > 1 else 0.0
    dsr = snooping.deflated_sharpe_ratio(series[best], n_trials=len(series), sharpe_variance=variance)
    return {
        "benchmark": benchmark_name,
        "candidates": tuple(candidates),
        "reality_check_p": across["reality_check_p"],
        "spa_p": across["spa_p"],
        "rc_best": across["best"],
        "hansen_spa": hansen,
        "n_models": across["n_models"],
        "dsr_series": best,
        "dsr": dsr,
        "n_trials": len(series),
    }
