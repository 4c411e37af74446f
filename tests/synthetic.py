"""Small synthetic panels shared by tests (import as `from synthetic import panel_from_prices`)."""

from __future__ import annotations

import numpy as np

from trustfolio.data import Calendar, Panel


def panel_from_prices(close, open_=None, lot_size: int = 1) -> Panel:
    """A panel from close (and open) price rows on consecutive days; high/low bracket them."""
    close = np.asarray(close, dtype=np.float32)
    open_ = close if open_ is None else np.asarray(open_, dtype=np.float32)
    T, N = close.shape
    return Panel(
        dates=np.datetime64("2024-01-01") + np.arange(T),
        tickers=tuple(f"S{i}" for i in range(N)),
        open=open_,
        high=np.maximum(open_, close),
        low=np.minimum(open_, close),
        close=close,
        volume=np.ones((T, N), dtype=np.float32),
        calendar=Calendar(lot_size=lot_size),
    )
