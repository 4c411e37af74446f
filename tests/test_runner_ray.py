"""The Ray backend against a local Ray instance: same layout and same results as the local pool."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))

import runner_helpers  # noqa: E402

from trustfolio.runner import Experiment, load_finished_jobs, run_experiment  # noqa: E402

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'trustfolio[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def tree(run_dir: Path) -> list[str]:
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))


def test_ray_backend_matches_the_local_backend(tmp_path, local_ray):
    table = "table:" + str(runner_helpers.write_synthetic_table(tmp_path / "prices.csv"))
    experiment = Experiment.from_dict(
        {
            "dataset": table,
            "protocol": {"kind": "walk-forward", "train": 60, "test": 20, "step": 40},  # 3 windows
            "methods": [
                "equal-weight",
                {"name": "momentum", "config": {"lookback": 20, "rebalance_every": 5}},
            ],
            "cost_multiples": [1, 3],
        }
    )
    on_ray = run_experiment(experiment, tmp_path / "ray", backend="ray", progress=False)
    local = run_experiment(experiment, tmp_path / "local", workers=1, progress=False)
    assert on_ray.ok and len(on_ray.finished) == 2 * 3 * 2 == local.total
    assert sorted(on_ray.finished) == sorted(local.finished)
    assert tree(tmp_path / "ray") == tree(tmp_path / "local")
    for (spec_ray, result_ray), (spec_local, result_local) in zip(
        load_finished_jobs(tmp_path / "ray"), load_finished_jobs(tmp_path / "local"), strict=True
    ):
        assert spec_ray == spec_local
        np.testing.assert_array_equal(result_ray.values, result_local.values)
        np.testing.assert_array_equal(result_ray.weights, result_local.weights)
        job_ray, job_local = (
            json.loads((tmp_path / d / "jobs" / spec_ray.job_id / "job.json").read_text())
            for d in ("ray", "local")
        )
        for job in (job_ray, job_local):
            del job["build_seconds"], job["backtest_seconds"]
        assert job_ray == job_local

    again = run_experiment(
        experiment, tmp_path / "ray", backend="ray", progress=False
    )  # resumes: nothing to do
    assert again.finished == [] and len(again.skipped) == 12
