"""The one way trustfolio writes a file: atomically, and with the permissions any other tool would give it.

`write_atomic` writes to a uniquely named temporary file beside the target and renames it onto the
target, so a reader (or a rerun after a kill) sees either the old file or the whole new one, never
half of one; concurrent writers never share a temporary file. The file gets the mode the user's
umask gives a new file (``0o666 & ~umask``), as ``open(path, "w")`` would — not the 0600 of
`tempfile.mkstemp`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it; put it straight back
    os.umask(mask)
    return mask


def write_atomic(target: str | Path, content: str | bytes | Callable[[Path], None]) -> Path:
    """Write `content` to `target` atomically: text (UTF-8), bytes, or a function that writes the
    file at the path it is given (``lambda path: frame.to_parquet(path)``). Creates the parent folder."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            if isinstance(content, str):
                handle.write(content.encode())
            elif isinstance(content, bytes | bytearray):
                handle.write(content)
        if callable(content):
            content(temporary)
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


__all__ = ["write_atomic"]
