"""`Comparison`: every backtest of an experiment side by side (methods × seeds × windows × costs).

In the spirit of skfolio's `Population`: one object over many results, whose tables are methods.
It reads a run directory written by `trustfolio.runner` (one directory per job; a job is finished
when its ``DONE`` file exists) and answers: per-seed metrics, mean ± std across seeds, the mean
daily returns of each seed (and, labelled as an ensemble, their mean), significance of every seed
against a reference, cost stress and per-period results.

How test windows combine. A seed's record over several test windows (online adaptation,
walk-forward) is the *chain* of its windows in date order: each window starts from the value where
the previous one ended, so the chained growth is the product of the window growths
(``CR = Π(1 + CR_k) − 1``). A window's first day is the day its capital is put to work (return 0, as
on the first day of any backtest); the chain keeps those days, so its daily returns are the
windows' daily returns laid end to end. Costs are rescaled to the chained capital. The chain's
metrics are the ordinary metrics (`evaluation.metrics`) of that chained value series. A seed that
lacks one of the windows gets no chain — its finished windows still appear one by one — so a summary
never mixes full and partial records.

Methods of the experiment without any finished job are listed in `Comparison.missing` (with the
error of their failed jobs) and appear in `summary` with ``n = 0``; they are never silently dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from trustfolio.errors import DataError, UserError
from trustfolio.evaluation import significance as seedwise
from trustfolio.evaluation import stats
from trustfolio.evaluation.metrics import METRIC_NAMES
from trustfolio.evaluation.result import BacktestResult
from trustfolio.evaluation.significance import series_name

#: `per_seed`'s window label of the chained record, when there is more than one window.
CHAINED = "all"

DEFAULT_REFERENCE = "equal-weight"


@dataclass(frozen=True, eq=False)
class Job:
    """One finished job: the method, seed, test window and cost multiple that produced `result`."""

    job_id: str
    method: str
    seed: int
    window: str  # the window's name, e.g. "offline", "online-2", "wf-007"
    test_start: np.datetime64
    cost_multiple: float
    result: BacktestResult


def chain_results(results: Sequence[BacktestResult]) -> BacktestResult:
    """Lay test windows end to end, in the given (date) order — see the module docstring."""
    if len(results) == 1:
        return results[0]
    for before, after in pairwise(results):
        if after.dates[0] <= before.dates[-1]:
            raise DataError(
                f"cannot chain test windows that overlap or are out of order ({before.dates[-1]} is "
                f"not before {after.dates[0]}); chained metrics need disjoint windows in date order"
            )
    # Chain value (per unit of the first window's capital) at the start of each window.
    growth = np.cumprod([1.0] + [r.values[-1] / r.values[0] for r in results[:-1]])
    capital = results[0].values[0]
    scale = [capital * g / r.values[0] for g, r in zip(growth, results, strict=True)]
    dates = np.concatenate([r.dates for r in results])
    return BacktestResult(
        name=results[0].name,
        label=results[0].label,
        dates=dates,
        values=np.concatenate([s * r.values for s, r in zip(scale, results, strict=True)]),
        returns=np.concatenate([r.returns for r in results]),
        weights=np.empty((len(dates), 0)),  # tickers may differ between windows
        turnover=np.concatenate([r.turnover for r in results]),
        costs=np.concatenate([s * r.costs for s, r in zip(scale, results, strict=True)]),
        cash_share=np.concatenate([r.cash_share for r in results]),
        tickers=(),
        trading_days_per_year=results[0].trading_days_per_year,
        config={"chained_windows": len(results)},
    )


class Comparison:
    """Backtests of several methods over seeds, test windows and cost multiples.

    Build it with `Comparison.from_run_dir(run_dir)` (or from `Job` objects directly). All tables
    take ``cost_multiple`` (default 1.0: the experiment's nominal costs).
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        *,
        methods: Sequence[str] = (),
        reference: str | None = DEFAULT_REFERENCE,
        failed: Mapping[str, str] | None = None,
        experiment: Mapping[str, Any] | None = None,
        experiment_text: str = "",
    ) -> None:
        """`methods`: the methods the experiment asked for, in its order (others found follow);
        `reference`: the method others are tested against (None: no significance tests);
        `failed`: job_id -> one-line error of the jobs that failed (job ids as the runner names
        them, ``method--window--seedN--xM``)."""
        self.jobs = list(jobs)
        self.failed: dict[str, str] = dict(failed or {})
        found = [j.method for j in self.jobs]
        self.methods: list[str] = list(dict.fromkeys([*methods, *found]))
        # Windows in test-date order; a window known only from failed jobs has no date and goes last.
        starts: dict[str, np.datetime64 | None] = {_job_id_part(job_id, 1): None for job_id in self.failed}
        starts |= {j.window: j.test_start for j in self.jobs}
        self.windows: list[str] = sorted(
            starts, key=lambda w: (starts[w] is None, "" if starts[w] is None else str(starts[w]), w)
        )
        self.cost_multiples: list[float] = sorted({j.cost_multiple for j in self.jobs})
        self.reference = reference
        self.experiment: dict[str, Any] = dict(experiment or {})
        self.experiment_text = experiment_text
        self.missing: dict[str, str] = {}  # method -> why it has no result
        for method in self.methods:
            if method not in found:
                errors = [e for job_id, e in self.failed.items() if _job_id_part(job_id, 0) == method]
                self.missing[method] = (
                    f"all {len(errors)} jobs failed, e.g. {errors[0]}" if errors else "no finished job"
                )
        self._chains: dict[tuple[str, int, float], BacktestResult | None] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_run_dir(cls, run_dir: str | Path) -> Comparison:
        """Read the finished (and failed) jobs of a run directory and its ``experiment.yaml``.

        Raises `UserError` when the directory does not exist or holds no finished job.
        """
        return cls(**_read_run_dir(Path(run_dir)))

    # ------------------------------------------------------------------ records
    def _jobs_at(self, cost_multiple: float) -> list[Job]:
        jobs = [j for j in self.jobs if math.isclose(j.cost_multiple, cost_multiple)]
        if not jobs:
            raise UserError(
                f"no finished job at cost multiple {cost_multiple:g}; "
                f"this run has {', '.join(f'{m:g}' for m in self.cost_multiples) or 'none'}"
            )
        return jobs

    def _seed_jobs(self, cost_multiple: float) -> dict[tuple[str, int], list[Job]]:
        """(method, seed) -> its jobs in test-date order, methods in `self.methods` order."""
        grouped: dict[tuple[str, int], list[Job]] = {}
        for job in sorted(
            self._jobs_at(cost_multiple), key=lambda j: (self.methods.index(j.method), j.seed, j.test_start)
        ):
            grouped.setdefault((job.method, job.seed), []).append(job)
        return grouped

    def _chain(self, method: str, seed: int, cost_multiple: float) -> BacktestResult | None:
        """The seed's chained record over all windows, or None when a window is missing."""
        key = (method, seed, float(cost_multiple))
        if key not in self._chains:
            jobs = self._seed_jobs(cost_multiple).get((method, seed), [])
            complete = sorted(j.window for j in jobs) == sorted(self.windows)
            self._chains[key] = chain_results([j.result for j in jobs]) if complete else None
        return self._chains[key]

    def chains(self, cost_multiple: float = 1.0) -> dict[str, dict[int, BacktestResult]]:
        """method -> seed -> the seed's chained record over all windows (complete seeds only)."""
        out: dict[str, dict[int, BacktestResult]] = {}
        for method, seed in self._seed_jobs(cost_multiple):
            chained = self._chain(method, seed, cost_multiple)
            if chained is not None:
                out.setdefault(method, {})[seed] = chained
        return out

    # ------------------------------------------------------------------ tables
    def per_seed(self, cost_multiple: float = 1.0) -> pd.DataFrame:
        """One row per method × seed × window: ``method, seed, window, CR, AR, SR, …``.

        With more than one window, each complete seed also has a row with ``window == CHAINED``
        ("all"): the metrics of its chained windows (module docstring).
        """
        rows = []
        for (method, seed), jobs in self._seed_jobs(cost_multiple).items():
            for job in jobs:
                rows.append({"method": method, "seed": seed, "window": job.window, **job.result.metrics()})
            chained = self._chain(method, seed, cost_multiple)
            if len(self.windows) > 1 and chained is not None:
                rows.append({"method": method, "seed": seed, "window": CHAINED, **chained.metrics()})
        return pd.DataFrame(rows, columns=["method", "seed", "window", *METRIC_NAMES])

    def _seed_metrics(self, cost_multiple: float) -> pd.DataFrame:
        """One row per (method, seed) over the whole test record (the chain when several windows)."""
        table = self.per_seed(cost_multiple)
        whole = CHAINED if len(self.windows) > 1 else self.windows[0]
        return table[table["window"] == whole].drop(columns="window").reset_index(drop=True)

    def summary(self, cost_multiple: float = 1.0) -> pd.DataFrame:
        """Per method: ``<metric>_mean``, ``<metric>_std`` across seeds and ``n`` (seeds).

        Metrics are over each seed's whole test record (all windows chained). Methods without any
        complete seed keep a row with ``n = 0`` and NaN metrics (see `missing`).
        """
        table = stats.mean_std_table(self._seed_metrics(cost_multiple))
        table = table.reindex(self.methods)
        table["n"] = table["n"].fillna(0).astype(int)
        return table

    def seed_returns(self, cost_multiple: float = 1.0) -> dict[str, dict[int, pd.Series]]:
        """method -> seed -> that seed's chained daily returns, indexed by date (complete seeds only).

        The chain's first day (the starting capital, which has no return) is left out, so these are
        exactly the returns the metrics use.
        """
        return {
            method: {
                seed: pd.Series(
                    r.returns[1:], index=pd.DatetimeIndex(r.dates[1:]), name=series_name(method, seed)
                )
                for seed, r in by_seed.items()
            }
            for method, by_seed in self.chains(cost_multiple).items()
        }

    def daily_returns(self, cost_multiple: float = 1.0) -> dict[str, pd.Series]:
        """method -> mean across seeds of the chained daily returns, indexed by date.

        For a method with several seeds this series is an **ensemble** of the seeds (all held at
        once, rebalanced to equal capital daily), not a deployable agent: its noise partly cancels,
        so its Sharpe ratio can exceed every seed's. Statistics never use it (`significance` tests
        each seed); show it only labelled (`significance.ensemble_label`). Methods without a
        complete seed are absent.
        """
        return {
            method: pd.concat(list(by_seed.values()), axis=1).mean(axis=1).rename(method)
            for method, by_seed in self.seed_returns(cost_multiple).items()
        }

    def growth(self, cost_multiple: float = 1.0) -> dict[str, pd.DataFrame]:
        """method -> chained value per unit of capital (date × seed), for cumulative-return plots."""
        out = {}
        for method, by_seed in self.chains(cost_multiple).items():
            curves = {
                seed: pd.Series(r.values / r.values[0], index=pd.DatetimeIndex(r.dates))
                for seed, r in by_seed.items()
            }
            out[method] = pd.DataFrame(curves)
        return out

    def _aligned_seed_returns(
        self, reference: str | None
    ) -> tuple[str, dict[str, dict[int, np.ndarray]], int]:
        """(reference, method -> seed -> returns on the days every series has, number of those days)."""
        reference = reference or self.reference
        if reference is None:
            raise UserError(
                "this experiment has no reference method; pass one, e.g. significance('equal-weight')"
            )
        returns = self.seed_returns(1.0)
        if reference not in returns:
            raise UserError(
                f"reference {reference!r} has no complete finished seed in this run "
                f"(methods with results: {', '.join(returns) or 'none'}); pass another reference"
            )
        if len(returns) < 2:
            raise UserError(
                f"significance needs at least two methods with results; only {reference!r} has any"
            )
        common = sorted(
            set.intersection(*(set(s.index) for by_seed in returns.values() for s in by_seed.values()))
        )
        arrays = {
            method: {seed: s.loc[common].to_numpy() for seed, s in by_seed.items()}
            for method, by_seed in returns.items()
        }
        return reference, arrays, len(common)

    def seed_significance(
        self, reference: str | None = None, *, reps: int = 2000, seed: int = 0
    ) -> pd.DataFrame:
        """Each seed of each method against `reference`, at nominal costs: `significance.seed_tests`
        (one row per (method, seed): Newey-West t and p, stationary-bootstrap p, and both
        Holm-adjusted across the method's seeds), on the days every series has."""
        reference, arrays, _ = self._aligned_seed_returns(reference)
        return seedwise.seed_tests(arrays, reference, reps=reps, seed=seed)

    def significance(self, reference: str | None = None, *, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
        """Each method against `reference` (default: the experiment's), seed by seed, at nominal costs.

        Every seed's own daily returns are tested (never the mean across seeds: that is an ensemble,
        see `daily_returns`), on the days every series has. The table is `significance.method_table`:
        per method ``n_seeds``, the seeds' Newey-West and stationary-bootstrap p-values
        (``nw_p_seeds``, ``boot_p_seeds``), their medians, the Holm-combined p across the method's
        seeds (``nw_p_holm``, ``boot_p_holm``: smallest Holm-adjusted p), the number of seeds
        significant at 5 % after Holm, ``nw_statement``, and Benjamini-Hochberg q-values across
        methods of the Holm-combined p (``q_nw``, ``q_boot``). `seed_significance` has the per-seed rows.

        ``table.attrs`` holds the data-snooping tests, where every seed of every method is a
        candidate or trial (`significance.snooping_over_seeds`, series named ``method#seed``):
        ``reference``, ``benchmark`` (the reference series of the Reality Check and the SPA),
        ``reality_check_p`` (White's Reality Check, arch, on raw mean differences), ``spa_p`` (arch's
        SPA p-value: also not studentized), ``rc_best`` (the series with the highest mean),
        ``hansen_spa`` (a `snooping.SPAResult`: Hansen's studentized SPA), ``n_models`` (candidate
        series), ``candidates``; the deflated Sharpe ratio of the series with the highest Sharpe ratio,
        ``dsr_series``, ``dsr`` (a `snooping.DSRResult`), ``n_trials`` (every series, the reference's
        included); ``n_methods`` (methods besides the reference) and ``n_returns`` (the daily returns
        tested: one fewer than the test days, whose first has no return).
        """
        reference, arrays, n_returns = self._aligned_seed_returns(reference)
        table = seedwise.method_table(seedwise.seed_tests(arrays, reference, reps=reps, seed=seed))
        table.attrs.update(
            reference=reference,
            **seedwise.snooping_over_seeds(arrays, reference, reps=reps, seed=seed),
            n_methods=len(table),
            n_returns=n_returns,
        )
        return table

    def cost_stress(self) -> pd.DataFrame:
        """Rows (method, cost_multiple): ``CR_mean, CR_std, SR_mean, SR_std, n`` across seeds."""
        columns = ["CR_mean", "CR_std", "SR_mean", "SR_std", "n"]
        summaries = {multiple: self.summary(multiple)[columns] for multiple in self.cost_multiples}
        index = pd.MultiIndex.from_product(
            [self.methods, self.cost_multiples], names=["method", "cost_multiple"]
        )
        table = pd.DataFrame([summaries[multiple].loc[method] for method, multiple in index], index=index)
        return table.astype({"n": int})

    def per_period(self) -> pd.DataFrame:
        """Rows (method, window), windows in date order: ``CR_mean, CR_std, n`` across seeds
        (nominal costs); a method with no finished job in a window has ``n = 0``."""
        table = self.per_seed(1.0)
        by_window = {}
        for window in self.windows:
            rows = table[table["window"] == window].drop(columns="window")
            by_window[window] = stats.mean_std_table(rows).reindex(self.methods)[["CR_mean", "CR_std", "n"]]
        index = pd.MultiIndex.from_product([self.methods, self.windows], names=["method", "window"])
        result = pd.DataFrame([by_window[window].loc[method] for method, window in index], index=index)
        result["n"] = result["n"].fillna(0).astype(int)
        return result

    def __repr__(self) -> str:
        return (
            f"Comparison({len(self.methods)} methods, {len(self.windows)} windows, "
            f"cost multiples {self.cost_multiples}, {len(self.jobs)} finished jobs, "
            f"{len(self.failed)} failed)"
        )


# ---------------------------------------------------------------------- reading a run directory
def _read_run_dir(run_dir: Path) -> dict[str, Any]:
    """`Comparison` keyword arguments from a run directory (layout in `trustfolio.rundir`)."""
    from trustfolio.rundir import DONE_FILE, EXPERIMENT_FILE, JOBS_DIR, failed_jobs, load_finished_jobs

    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist; pass the directory an experiment run wrote")
    experiment_file = run_dir / EXPERIMENT_FILE
    experiment_text = experiment_file.read_text(encoding="utf-8") if experiment_file.exists() else ""
    experiment = yaml.safe_load(experiment_text) or {}
    if not isinstance(experiment, dict):
        raise DataError(
            f"{experiment_file}: expected a mapping of experiment fields, got {type(experiment).__name__}"
        )

    jobs = [
        Job(
            job_id=spec.job_id,
            method=spec.method,
            seed=int(spec.seed),
            window=spec.window.name,
            test_start=np.datetime64(spec.window.test_start, "D"),
            cost_multiple=float(spec.cost_multiple),
            result=result,
        )
        for spec, result in load_finished_jobs(run_dir)
    ]
    failed = failed_jobs(run_dir)
    if not jobs:
        hint = f" ({len(failed)} failed, e.g. {next(iter(failed.values()))})" if failed else ""
        raise UserError(
            f"{run_dir} has no finished job (no {JOBS_DIR}/*/{DONE_FILE}){hint}; run the experiment first"
        )

    methods = [m["name"] if isinstance(m, dict) else str(m) for m in experiment.get("methods") or []]
    return {
        "jobs": jobs,
        "methods": methods,
        "reference": experiment.get("reference", DEFAULT_REFERENCE),
        "failed": failed,
        "experiment": experiment,
        "experiment_text": experiment_text,
    }


def _job_id_part(job_id: str, index: int) -> str:
    """Method (0) or window (1) of a job id ``method--window--seedN--xM``."""
    parts = job_id.split("--")
    return parts[index] if len(parts) == 4 else job_id
