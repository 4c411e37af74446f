"""Every agent's `quick` metrics on sp500 (seed 0, costs on) equal, bit for bit, the golden values
recorded before the agent-platform refactor (`tests/golden_agents.py`)."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from golden_agents import AGENT_NAMES, GOLDEN_FILE, quick_metrics


def test_quick_metrics_of_every_agent_match_the_golden_file(tmp_path: Path, monkeypatch):
    golden = json.loads(GOLDEN_FILE.read_text())
    assert sorted(golden) == sorted(AGENT_NAMES)
    monkeypatch.setenv("TRUSTFOLIO_CACHE", str(tmp_path / "cache"))
    # Two processes (the machine's two cores); each agent trains on one torch thread, as recorded.
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        futures = {name: pool.submit(quick_metrics, name, tmp_path) for name in AGENT_NAMES}
        measured = {name: future.result() for name, future in futures.items()}
    differing = {
        name: {k: (golden[name][k], measured[name].get(k)) for k in golden[name] if golden[name][k] != measured[name].get(k)}
        for name in AGENT_NAMES
    }
    assert not any(differing.values()), {name: diff for name, diff in differing.items() if diff}
