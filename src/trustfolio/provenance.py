"""Where a result came from: the code (package version, git commit when run from a checkout) and the
machine's libraries and thread count.

Run directories record it (`run.json` of a training run, `provenance.json` of an experiment run) so
every published number says what produced it, and a rerun in a folder made by other code or other
data refuses to mix old and new results (`trustfolio.rundir`).
"""

from __future__ import annotations

import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """``{"trustfolio": version, "commit": sha or None, "dirty": bool or None}``; the commit when the
    package runs from a git checkout (``dirty``: its source files differ from that commit)."""
    from trustfolio import __version__

    commit, dirty = None, None
    try:
        run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=10, cwd=PACKAGE_DIR)
        head = run(["git", "rev-parse", "HEAD"])
        if head.returncode == 0:
            commit = head.stdout.strip()
            status = run(["git", "status", "--porcelain", "--untracked-files=no", "--", str(PACKAGE_DIR)])
            dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):  # no git on this machine
        pass
    return {"trustfolio": __version__, "commit": commit, "dirty": dirty}


def environment() -> dict[str, Any]:
    """The libraries and settings numbers depend on: Python, torch, numpy, torch's thread count."""
    import torch

    versions = {name: _version(name) for name in ("numpy", "pandas", "scikit-learn", "skfolio", "arch")}
    return {"python": platform.python_version(), "torch": torch.__version__, **versions,
            "torch_threads": torch.get_num_threads()}  # fmt: skip


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


__all__ = ["code_version", "environment"]
