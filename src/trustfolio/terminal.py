"""What the command line does around every command: the version line, Ctrl-C, library warnings.

**Ctrl-C** ends a command with one line on stderr, `INTERRUPTED`, and exit status 130 (checkpoints,
results and run directories are written atomically, so the same command resumes). typer turns the
`KeyboardInterrupt` into a silent exit 130; `caused_by_ctrl_c` recognizes that exit.

**Warnings**: one readable line each, or nothing when they tell the user nothing.

Python prints a warning as two lines — a library's file path and line number, then its source line —
which means nothing to someone running ``trustfolio backtest``. Inside `library_warnings` (what the
``trustfolio`` command runs in):

- a warning prints as one line, ``warning: <message>``, once per distinct message (a warning raised
  on every refit of a backtest is not repeated a hundred times);
- `FutureWarning` / `DeprecationWarning` / `PendingDeprecationWarning` (pandas, yfinance, numpy
  telling developers about their next release) and the messages in `SILENCED` (a library reporting a
  routine numerical repair) are not printed at all.

The code that knows the context words its own warnings with it (e.g. the mean-variance strategies
name the day and the stocks a fit failed on); the Python API keeps Python's usual warnings.
"""

from __future__ import annotations

import contextlib
import re
import sys
import warnings
from collections.abc import Iterator

#: Warnings that carry nothing for the user: (message regex, why).
SILENCED: tuple[tuple[str, str], ...] = (
    (r"The covariance matrix is not positive definite",
     "skfolio clips a sample covariance to the nearest positive definite one: routine for short windows"),
)  # fmt: skip

DEVELOPER_CATEGORIES = (FutureWarning, DeprecationWarning, PendingDeprecationWarning)
INTERRUPTED = "interrupted — rerun the same command to resume"


def version_line() -> str:
    """``trustfolio 0.1.0`` and, run from a git checkout, the commit (``+ changes`` when edited)."""
    from trustfolio.provenance import code_version

    code = code_version()
    line = f"trustfolio {code['trustfolio']}"
    if code["commit"]:
        line += f" (commit {code['commit'][:12]}{' + changes' if code['dirty'] else ''})"
    return line


def caused_by_ctrl_c(exc: BaseException | None) -> bool:
    """Whether `exc` is, or was raised while handling, a `KeyboardInterrupt`."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def library_warnings() -> Iterator[None]:
    """Show warnings as single lines on stderr, once each, without developer and routine noise."""
    seen: set[str] = set()

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ARG001
        text = " ".join(str(message).split())
        if text in seen:
            return
        seen.add(text)
        stream = sys.stderr if file is None else file
        try:
            print(f"warning: {text}", file=stream, flush=True)
        except (OSError, ValueError):  # a closed stream: nothing to do
            pass

    with warnings.catch_warnings():
        warnings.simplefilter("default")  # every distinct message once; our printer deduplicates
        for category in DEVELOPER_CATEGORIES:
            warnings.simplefilter("ignore", category)
        for pattern, _ in SILENCED:
            warnings.filterwarnings("ignore", message=pattern)
        warnings.showwarning = one_line
        yield


def silenced(message: str) -> bool:
    """Whether `message` is one of the routine warnings `library_warnings` does not print."""
    return any(re.search(pattern, message) for pattern, _ in SILENCED)


__all__ = ["INTERRUPTED", "SILENCED", "caused_by_ctrl_c", "library_warnings", "silenced", "version_line"]
