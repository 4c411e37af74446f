"""Each agent's `quick` metrics on the embedded sp500 data (seed 0, costs on), as recorded before the
agent-platform refactor: `tests/golden/agents_quick_sp500.json`. `test_golden_agents.py` checks them
bit for bit; `python tests/golden_agents.py --record` writes them (only in a commit of its own, with
the reason in the note: a change that moves them changes every published number).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

GOLDEN_FILE = Path(__file__).with_name("golden") / "agents_quick_sp500.json"
AGENT_NAMES = ("sac", "ddpg", "stockformer", "sarl", "cql", "iql", "metatrader")


def quick_metrics(name: str, work_dir: Path) -> dict[str, float]:
    """Train `name` at the quick budget on sp500 (seed 0), evaluate with costs; its metrics."""
    import torch

    from trustfolio.agent_runs import evaluate_run, train_agent

    torch.set_num_threads(1)
    run_dir = train_agent(name, "sp500", budget="quick", seed=0, out_dir=work_dir / name, progress=False)
    return evaluate_run(run_dir)["strategies"][name]


def record() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TRUSTFOLIO_CACHE"] = str(Path(tmp) / "cache")
        golden = {name: quick_metrics(name, Path(tmp)) for name in AGENT_NAMES}
    GOLDEN_FILE.parent.mkdir(exist_ok=True)
    GOLDEN_FILE.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN_FILE}")


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    record()
