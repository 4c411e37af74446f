"""A small on-disk cache of NumPy arrays, keyed by a content hash.

Market-derived arrays (indicators, covariances, embeddings) are pure functions of (data, config, code
version). They are computed once, written as one `.npz` file named by a hash of everything that went
into them, and loaded on the next call. Files are written to a temporary name and renamed, so a crash
or a concurrent writer never leaves a half-written file under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from trustfolio.files import write_atomic

CACHE_ENV = "TRUSTFOLIO_CACHE"


def cache_root() -> Path:
    """Root of trustfolio's caches: `$TRUSTFOLIO_CACHE` if set, else `~/.cache/trustfolio`."""
    override = os.environ.get(CACHE_ENV)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "trustfolio"


def content_key(*parts: Any) -> str:
    """A short stable hash of JSON-serializable `parts` (dicts are hashed with sorted keys)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` to `path` (uncompressed NPZ) atomically (`trustfolio.files.write_atomic`)."""

    def write(temporary: Path) -> None:
        with temporary.open("wb") as handle:  # a file handle: np.savez would append ".npz" to a name
            np.savez(handle, **arrays)

    write_atomic(path, write)


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """All arrays of an NPZ file, or None when it is missing or unreadable (then the caller recomputes)."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
