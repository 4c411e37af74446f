"""The run directories trustfolio writes, in one place: their layout, and reading and writing their parts.

An **experiment run** (`trustfolio run`, `trustfolio.runner.run_experiment`)::

    <run_dir>/experiment.yaml          the resolved experiment (defaults filled in)
    <run_dir>/jobs/<job_id>/job.json   what the job was (JobSpec.to_dict) plus its cleaning and timing
    <run_dir>/jobs/<job_id>/daily.parquet, metrics.json   BacktestResult.save
    <run_dir>/jobs/<job_id>/DONE       written last, atomically: a job is finished iff DONE exists
    <run_dir>/jobs/<job_id>/error.txt  a failed job: one-line error, then the traceback; no DONE
    <run_dir>/work/<method>--<window>--seed<seed>/   the method's scratch space (checkpoints, logs)
    <run_dir>/metrics.json, daily.parquet, report.*  `trustfolio run` / `report` (trustfolio.quickstart)

A **training run** (`trustfolio train`, `trustfolio.agent_runs.train_agent`)::

    run.json          what was trained: agent, dataset, windows, config, seed, execution settings
    fit/              checkpoint.pt (resumable), progress.csv, eval.csv   (finetune/ likewise)
    agent.pt          the trained agent (`Agent.load`)
    metrics.json      written by `evaluate_run`: {"start", "end", "cost_bps", "strategies": {name: {CR, …}},
                      "strategies_no_costs", …}
    backtest/         the agent's test backtest (BacktestResult.save: daily.parquet, metrics.json)
    overestimation.json, overestimation.png
                      for agents with a critic: its estimate against the realized discounted return

Every ``metrics.json`` — a job's, a run's, a training run's, ``trustfolio backtest --out``'s — has one
schema (`trustfolio.evaluation.result.write_metrics`, read by `read_metrics`). Every file is written
with `trustfolio.files.write_atomic`, and only inside the run directory: names
that become folders are safe slugs (`safe_name`), paths are checked to stay inside (`inside`). A rerun
in an experiment run directory made by other code or from other data is refused (`provenance.json`),
so a run directory never mixes old and new results.
"""

from __future__ import annotations

import json
import re
import shutil
import traceback
from pathlib import Path
from typing import Any

import yaml

from trustfolio.errors import UserError
from trustfolio.evaluation.result import METRICS_FILE
from trustfolio.files import write_atomic

# experiment runs
EXPERIMENT_FILE, PROVENANCE_FILE, JOBS_DIR, WORK_DIR = "experiment.yaml", "provenance.json", "jobs", "work"
JOB_FILE, DONE_FILE, ERROR_FILE = "job.json", "DONE", "error.txt"
# training runs
RUN_FILE, AGENT_FILE, BACKTEST_DIR = "run.json", "agent.pt", "backtest"  # and METRICS_FILE (metrics.json)
OVERESTIMATION_JSON, OVERESTIMATION_PNG = "overestimation.json", "overestimation.png"


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


# ---------------------------------------------------------------------------------------- names and paths
def safe_name(name: Any, what: str) -> str:
    """`name` if it is a safe folder name (letters, digits, '.', '_', '-'; not starting with '.' or
    '-'; no '/' and no '..'), else a one-line `UserError` saying what `what` may be."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise UserError(
            f"{what}: {name!r} is not a safe folder name; use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit; no '/' or '..')"
        )
    return name


def inside(root: Path | str, *parts: str) -> Path:
    """``root / parts``, refused (`UserError`) when it resolves to a place outside `root`."""
    base, path = Path(root).resolve(), Path(root).joinpath(*parts)
    if path.resolve() != base and base not in path.resolve().parents:
        raise UserError(f"{path} is outside {root}; refusing to write there")
    return path


# ---------------------------------------------------------------------------------------- experiment runs
def claim_experiment_dir(run_dir: Path, resolved: dict[str, Any], provenance: dict[str, Any]) -> None:
    """Write experiment.yaml and provenance.json, or check that the run directory holds this same
    experiment, made by the same code from the same data (else one line: results must not mix)."""
    path = run_dir / EXPERIMENT_FILE
    if path.exists():
        _check_provenance(run_dir, provenance)
        previous = yaml.safe_load(path.read_text()) or {}
        if previous != resolved:
            differing = [k for k in resolved if previous.get(k) != resolved[k]] or ["fields"]
            raise UserError(
                f"{run_dir} holds a different experiment (it differs in {', '.join(differing)}); use a new "
                f"run directory, or delete {run_dir} to start over"
            )
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir} exists and is not an experiment run directory; choose a new run directory")
    write_atomic(run_dir / PROVENANCE_FILE, json.dumps(provenance, indent=2))
    write_atomic(path, yaml.safe_dump(resolved, sort_keys=False))


def _check_provenance(run_dir: Path, provenance: dict[str, Any]) -> None:
    saved_path = run_dir / PROVENANCE_FILE
    saved = json.loads(saved_path.read_text()) if saved_path.exists() else {}
    for key, what in (("code", "other code"), ("data", "other data")):
        if saved.get(key) != provenance[key]:
            raise UserError(
                f"{run_dir} holds results of {what} ({key}: {saved.get(key)} then, {provenance[key]} now); "
                f"its finished jobs would mix with new ones: use a new run directory, or delete {run_dir}"
            )


def job_dir(run_dir: Path, job_id: str) -> Path:
    return inside(run_dir, JOBS_DIR, job_id)


def is_finished(run_dir: Path, job_id: str) -> bool:
    return (job_dir(run_dir, job_id) / DONE_FILE).exists()


def finish_job(run_dir: Path, job_id: str, facts: dict[str, Any]) -> None:
    """Write the job's job.json, then DONE: from then on the job counts as finished."""
    folder = job_dir(run_dir, job_id)
    write_atomic(folder / JOB_FILE, json.dumps(facts, indent=2, default=str))
    write_atomic(folder / DONE_FILE, "done\n")


def record_failure(run_dir: Path, job_id: str, exc: BaseException) -> str:
    """Write the job's error.txt (one line, then the traceback); returns the line."""
    line = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    trace = "".join(traceback.format_exception(exc))
    write_atomic(job_dir(run_dir, job_id) / ERROR_FILE, f"{line}\n\n{trace}")
    return line


def load_finished_jobs(run_dir: str | Path) -> list[tuple[Any, Any]]:
    """Every finished job of a run directory as ``(JobSpec, BacktestResult)``, ordered by job id."""
    from trustfolio.evaluation.result import BacktestResult
    from trustfolio.experiment import JobSpec

    jobs_dir = Path(run_dir) / JOBS_DIR
    if not jobs_dir.is_dir():
        raise UserError(f"{run_dir}: not an experiment run directory (no {JOBS_DIR}/ folder)")
    finished = []
    for folder in sorted(jobs_dir.iterdir()):
        if (folder / DONE_FILE).exists():
            spec = JobSpec.from_dict(json.loads((folder / JOB_FILE).read_text()))
            finished.append((spec, BacktestResult.load(folder)))
    return finished


def failed_jobs(run_dir: Path) -> dict[str, str]:
    """Job id -> the first line of its error, for the jobs that failed and were not finished since."""
    failed = {}
    for error_file in sorted((Path(run_dir) / JOBS_DIR).glob(f"*/{ERROR_FILE}")):
        if not (error_file.parent / DONE_FILE).exists():
            lines = error_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            failed[error_file.parent.name] = lines[0] if lines else "(empty error file)"
    return failed


# ---------------------------------------------------------------------------------------- training runs
#: What a training run writes (`clear_training_run` removes these and nothing else).
TRAINING_RUN_PARTS = ("fit", "finetune", RUN_FILE, AGENT_FILE, METRICS_FILE, BACKTEST_DIR, OVERESTIMATION_JSON,
                      OVERESTIMATION_PNG)  # fmt: skip


def clear_training_run(run_dir: Path) -> None:
    """Remove what a training run wrote in `run_dir` (``--fresh``); anything else in it stays."""
    for part in TRAINING_RUN_PARTS:
        path = Path(run_dir) / part
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def read_training_run(run_dir: Path) -> dict[str, Any]:
    """The run.json of a finished training run; a `UserError` when it is not one."""
    if not (run_dir / RUN_FILE).is_file() or not (run_dir / AGENT_FILE).is_file():
        raise UserError(f"{run_dir}: not a finished training run (needs {RUN_FILE} and {AGENT_FILE}); train it first")
    return json.loads((run_dir / RUN_FILE).read_text())


__all__ = [
    "AGENT_FILE",
    "BACKTEST_DIR",
    "DONE_FILE",
    "ERROR_FILE",
    "EXPERIMENT_FILE",
    "JOBS_DIR",
    "JOB_FILE",
    "METRICS_FILE",
    "OVERESTIMATION_JSON",
    "OVERESTIMATION_PNG",
    "RUN_FILE",
    "WORK_DIR",
    "claim_experiment_dir",
    "clear_training_run",
    "inside",
    "safe_name",
    "failed_jobs",
    "finish_job",
    "is_finished",
    "job_dir",
    "load_finished_jobs",
    "read_training_run",
    "record_failure",
]
