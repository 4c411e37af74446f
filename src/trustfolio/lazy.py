"""Package attributes imported on first use: a package can list its public names without importing the
heavy modules behind them (torch), so importing it (or one light module in it) stays fast."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for `package`: ``exports`` maps a public name to the submodule
    (relative to `package`) that defines it; the submodule is imported when the name is first read."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__


__all__ = ["lazy_attributes"]
