"""The experiment runner: runs the jobs of an experiment (`trustfolio.experiment`) locally or on Ray.

An experiment (YAML, see `experiments/quickstart.yaml`) names a dataset, a protocol (its windows),
methods with their configs, seeds and cost multiples. Each job is one method × window × seed × cost
multiple: clean the data with only the window's training days deciding (the data end on the test's
last day), build the method's policy, backtest it over the test days. The run directory's layout is
in `trustfolio.rundir`.

Reruns are idempotent: jobs with DONE are skipped, leftovers of unfinished or failed jobs are
removed and rerun, so a killed run loses only the jobs in flight. Jobs that differ only in their cost
multiple share one policy: they run together, building (training) it once. Deterministic methods
(the classic strategies; predict-then-hold whose predictor ignores the seed on the window's data)
run on seed 0 only.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Literal

from trustfolio.data.cleaning import clean
from trustfolio.data.loaders import load_dataset
from trustfolio.errors import UserError
from trustfolio.evaluation.backtest import backtest
from trustfolio.evaluation.protocols import Window
from trustfolio.experiment import Experiment, JobSpec, import_modules
from trustfolio.methods import make_method
from trustfolio.progress import ProgressReporter
from trustfolio.provenance import code_version, environment
from trustfolio.rundir import (
    WORK_DIR,
    claim_experiment_dir,
    is_finished,
    job_dir,
    load_finished_jobs,
    record_failure,
)
from trustfolio.rundir import finish_job as write_finished_job


def quickstart_experiment_path() -> Path:
    """Path of the packaged `experiments/quickstart.yaml` (what `trustfolio run` runs)."""
    return Path(str(files("trustfolio").joinpath("experiments", "quickstart.yaml")))


# ---------------------------------------------------------------------------------------- running
@dataclass
class ExperimentSummary:
    """What `run_experiment` did: job ids finished now, skipped (already done), failed (one line each)."""

    run_dir: Path
    total: int
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    single_seed: list[str] = field(default_factory=list)  # deterministic methods, run on seed 0 only

    @property
    def ok(self) -> bool:
        return not self.failed

    def describe(self) -> str:
        """A few readable lines (what the CLI prints)."""
        lines = [
            f"{self.run_dir}: {self.total} jobs — {len(self.finished)} run now, {len(self.skipped)} "
            f"already done, {len(self.failed)} failed"
        ]
        if self.single_seed:
            lines.append(f"deterministic, run on seed 0 only: {', '.join(self.single_seed)}")
        lines += [f"FAILED {job_id}: {error}" for job_id, error in self.failed.items()]
        return "\n".join(lines)


def run_experiment(
    experiment: Experiment | str | Path,
    run_dir: str | Path,
    *,
    workers: int | None = None,
    backend: Literal["local", "ray"] = "local",
    address: str | None = None,
    progress: bool = True,
) -> ExperimentSummary:
    """Run every unfinished job of `experiment` (an `Experiment` or a YAML path) into `run_dir`.

    ``backend="local"``: a process pool of `workers` processes (default: all cores; 1 runs in this
    process, handy for debugging). ``backend="ray"``: one Ray task per policy (its cost multiples),
    on a local Ray instance (``address=None``) or the cluster at `address`; workers must see
    `run_dir` (a shared filesystem). A failed job is reported in the summary and stops nothing.
    """
    if not isinstance(experiment, Experiment):
        experiment = Experiment.from_yaml(experiment)
    if backend not in ("local", "ray"):
        raise UserError(f"backend must be 'local' or 'ray', not {backend!r}")
    if backend == "ray":
        _import_ray()  # a missing extra fails before anything is written
    workers = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"workers must be a whole number >= 1, not {workers!r}")
    panel = _load_panel(experiment.dataset)
    jobs = experiment.jobs(
        panel.dates, trading_days_per_year=panel.calendar.trading_days_per_year, n_stocks=panel.N
    )
    for window in dict.fromkeys(job.window for job in jobs):  # bad data: one line, before anything is written
        _cleaned_panel(experiment.dataset, _file_stamp(experiment.dataset), window, experiment.on_outliers)
    run_dir = Path(run_dir)
    # What produced the results (a rerun by other code or on other data is refused); jobs run on one
    # torch thread per worker process (`_init_worker`), or in this process with one thread too.
    provenance = {"code": code_version(), "data": panel.content_hash(), "environment": environment(),
                  "job_torch_threads": 1}  # fmt: skip
    claim_experiment_dir(run_dir, experiment.to_dict(), provenance)

    summary = ExperimentSummary(run_dir, len(jobs))
    summary.single_seed = single_seed_methods(jobs)
    groups: dict[str, list[JobSpec]] = {}
    for job in jobs:
        if is_finished(run_dir, job.job_id):
            summary.skipped.append(job.job_id)
            continue
        shutil.rmtree(job_dir(run_dir, job.job_id), ignore_errors=True)  # leftovers of a killed or failed attempt
        groups.setdefault(job.group_id, []).append(job)

    with ProgressReporter(experiment.name, len(jobs), completed=len(summary.skipped), unit="jobs", enabled=progress,
                          transient=False, info="0 failed") as bar:  # fmt: skip

        def record(outcomes: list[tuple[str, str | None]]) -> None:
            for job_id, error in outcomes:
                if error is None:
                    summary.finished.append(job_id)
                else:
                    summary.failed[job_id] = error
            bar.update(advance=len(outcomes), info=f"{len(summary.failed)} failed")

        batches = list(groups.values())
        if batches and backend == "ray":
            _run_on_ray(run_dir, batches, experiment.imports, address, record)
        elif batches:
            _run_locally(run_dir, batches, experiment.imports, workers, record)
    return summary


def single_seed_methods(jobs: list[JobSpec]) -> list[str]:
    """The methods run on seed 0 only: their names, or ``name (k of n windows)`` for a method
    deterministic on some windows only (e.g. boosted trees, seeded above 200,000 training rows)."""
    windows: dict[str, dict[str, bool]] = {}
    for job in jobs:
        windows.setdefault(job.method, {})[job.window.name] = job.deterministic
    out = []
    for method, by_window in windows.items():
        k = sum(by_window.values())
        if k:
            out.append(method if k == len(by_window) else f"{method} ({k} of {len(by_window)} windows)")
    return out


def run_job_group(
    run_dir: str | Path, jobs: list[JobSpec], imports: list[str] = ()
) -> list[tuple[str, str | None]]:
    """Run jobs that share one policy (same method, window, seed): build it once, then backtest at
    each job's cost. Returns ``(job_id, None)`` per finished job, ``(job_id, error line)`` per failure."""
    run_dir, first = Path(run_dir), jobs[0]
    try:
        import_modules(imports)
        panel, cleaning = _cleaned_panel(first.dataset, _file_stamp(first.dataset), first.window, first.on_outliers)
        method = make_method(first.method, first.method_config)
        started = time.perf_counter()
        work_dir = run_dir / WORK_DIR / first.group_id
        # Kept across reruns: a method that checkpoints there (the agents) resumes a killed job where
        # it stopped, and a resumed agent ends exactly as an uninterrupted one with the same seed.
        work_dir.mkdir(parents=True, exist_ok=True)
        policy = method.build_policy(panel, first.window, first.seed, work_dir)
        build_seconds = round(time.perf_counter() - started, 3)
        if not any(work_dir.iterdir()):
            work_dir.rmdir()
    except Exception as exc:
        return [(job.job_id, record_failure(run_dir, job.job_id, exc)) for job in jobs]
    outcomes = []
    for job in jobs:
        try:
            started = time.perf_counter()
            window = job.window
            result = backtest(
                policy,
                panel,
                window.test_start,
                window.test_end,
                cost_bps=job.effective_cost_bps,
                **job.backtest,
            )
            result.save(job_dir(run_dir, job.job_id))
            facts = {
                "build_seconds": build_seconds,  # building (training) the policy, shared by the group
                "backtest_seconds": round(time.perf_counter() - started, 3),
                "cleaning": {"kept": list(cleaning.kept), "dropped": cleaning.dropped},
            }
            write_finished_job(run_dir, job.job_id, {**job.to_dict(), **facts})
            outcomes.append((job.job_id, None))
        except Exception as exc:
            outcomes.append((job.job_id, record_failure(run_dir, job.job_id, exc)))
    return outcomes


# ---------------------------------------------------------------------------------------- backends
Record = Callable[[list[tuple[str, str | None]]], None]


def _run_locally(
    run_dir: Path, batches: list[list[JobSpec]], imports: list[str], workers: int, record: Record
) -> None:
    if workers == 1:  # in this process: breakpoints and tracebacks work
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for batch in batches:
                record(run_job_group(run_dir, batch, imports))
        finally:
            torch.set_num_threads(threads)
        return
    # Linux: fork, so workers start at once and inherit the loaded data and registered methods;
    # each sets torch to one thread before any tensor op (as PyTorch's DataLoader workers do), which
    # keeps OpenMP safe after a fork. Elsewhere: spawn, where `imports` re-registers extra methods.
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    pool = ProcessPoolExecutor(min(workers, len(batches)), mp_context=context, initializer=_init_worker)
    try:
        futures = {pool.submit(run_job_group, str(run_dir), batch, imports): batch for batch in batches}
        for future in as_completed(futures):
            try:
                outcomes = future.result()
            except Exception as exc:  # the worker process died (killed, out of memory)
                outcomes = [(job.job_id, record_failure(run_dir, job.job_id, exc)) for job in futures[future]]
            record(outcomes)
    finally:  # on Ctrl-C: drop the queued jobs instead of running them all first
        pool.shutdown(wait=True, cancel_futures=True)


def _run_on_ray(
    run_dir: Path, batches: list[list[JobSpec]], imports: list[str], address, record: Record
) -> None:
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    pending: dict = {}
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_job_group)
        pending = {remote.remote(str(run_dir), batch, list(imports)): batch for batch in batches}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                batch = pending.pop(ref)
                try:
                    outcomes = ray.get(ref)
                except Exception as exc:  # the task's worker died
                    outcomes = [(job.job_id, record_failure(run_dir, job.job_id, exc)) for job in batch]
                record(outcomes)
    finally:
        for ref in pending:  # left only when interrupted
            ray.cancel(ref)
        if started_here:
            ray.shutdown()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError("the ray backend needs Ray: pip install 'trustfolio[ray]'") from None
    return ray


def _ray_job_group(run_dir: str, jobs: list[JobSpec], imports: list[str]) -> list[tuple[str, str | None]]:
    _init_worker()
    return run_job_group(run_dir, jobs, imports)


def _init_worker() -> None:
    """Workers share the machine's cores: one torch thread each."""
    import torch

    torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------- helpers
def _load_panel(dataset: str):
    return _load_panel_cached(dataset, _file_stamp(dataset))


@functools.lru_cache(maxsize=4)
def _load_panel_cached(dataset: str, stamp):  # stamp: a changed file is loaded again
    return load_dataset(dataset)


@functools.lru_cache(maxsize=16)
def _cleaned_panel(dataset: str, stamp, window: Window, on_outliers: str):
    """The panel a job trades (cut after the test's last day, stocks kept by training days only)
    and the cleaning report."""
    raw = _load_panel_cached(dataset, stamp)
    return clean(raw.slice(None, window.test_end), train_start=window.train_start, train_end=window.train_end,
                 on_outliers=on_outliers)  # fmt: skip


def _file_stamp(dataset: str):
    """(mtime, size) of a file-based dataset, so the per-process cache notices a rewritten file."""
    _, _, arg = dataset.partition(":")
    path = Path(arg.strip()).expanduser() if arg else None
    if path is None or not path.exists():
        return None
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


__all__ = [
    "Experiment",
    "ExperimentSummary",
    "JobSpec",
    "load_finished_jobs",
    "quickstart_experiment_path",
    "run_experiment",
    "run_job_group",
]
