"""The market path a simulator steps on: the price tables of one fixed timeline, and its calendar.

A `MarketPath` is the action-free half of the simulation (design.md: market state vs balance
state). It is built once, from a `Panel` (`MarketPath.from_panel`) or from price arrays that are not
a panel, such as MetaTrader's transformed subsets (`MarketPath.from_arrays`). Several short paths
may be concatenated along time into one table; portfolios then stay inside their own piece through
per-portfolio start and end days (`Simulator.reset(start=..., end=...)`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from trustfolio.data.panel import Panel
from trustfolio.errors import DataError

PriceTable = np.ndarray | torch.Tensor


@dataclass(frozen=True, eq=False)
class MarketPath:
    """Close and open prices `[T, N]` (float64 numpy arrays or floating torch tensors), the lot
    size share quantities round to (with `SimulatorConfig.round_lots`), the trading days per year,
    a name for messages, and optionally the `dates[T]` of the rows.

    The simulator only reads the tables; nothing writes into them after construction.
    """

    close: PriceTable
    open: PriceTable
    lot_size: int = 1
    trading_days_per_year: int = 252
    name: str = "market path"
    dates: np.ndarray | None = None

    def __post_init__(self) -> None:
        for field_name in ("close", "open"):
            table = getattr(self, field_name)
            if table.ndim != 2:
                raise DataError(
                    f"{self.name}: {field_name} must be a [T, N] table, got shape {tuple(table.shape)}"
                )
        if tuple(self.close.shape) != tuple(self.open.shape):
            raise DataError(
                f"{self.name}: open {tuple(self.open.shape)} and close {tuple(self.close.shape)} differ in shape"
            )
        if self.dates is not None and len(self.dates) != self.T:
            raise DataError(f"{self.name}: {len(self.dates)} dates for {self.T} rows of prices")
        if self.lot_size < 1:
            raise DataError(f"{self.name}: lot_size must be at least 1, got {self.lot_size}")

    @property
    def T(self) -> int:
        """Number of days (rows)."""
        return int(self.close.shape[0])

    @property
    def N(self) -> int:
        """Number of stocks (columns)."""
        return int(self.close.shape[1])

    @classmethod
    def from_panel(cls, panel: Panel) -> MarketPath:
        """The panel's open and close prices (widened to float64) and calendar."""
        if not panel.is_clean:
            raise DataError(
                f"{panel.name}: the simulator needs a price for every stock on every day, but the panel "
                "has missing open/close prices; run trustfolio.data.cleaning.clean(panel) first"
            )
        return cls(
            close=np.asarray(panel.close, dtype=np.float64),
            open=np.asarray(panel.open, dtype=np.float64),
            lot_size=panel.calendar.lot_size,
            trading_days_per_year=panel.calendar.trading_days_per_year,
            name=panel.name,
            dates=panel.dates,
        )

    @classmethod
    def from_arrays(
        cls,
        close: PriceTable,
        open: PriceTable | None = None,  # noqa: A002 - the price field's name
        *,
        lot_size: int = 1,
        trading_days_per_year: int = 252,
        name: str = "market path",
        dates: np.ndarray | None = None,
    ) -> MarketPath:
        """A path from price tables `[T, N]` that are not a panel (e.g. transformed subsets laid end
        to end). Without `open`, the open is the close (only `fill="next_open"` reads it).

        Numpy tables are widened to float64; torch tensors are kept as they are (device included).
        Every price must be finite and positive.
        """
        close = _price_table(close, name, "close")
        open = close if open is None else _price_table(open, name, "open")
        return cls(close, open, lot_size, trading_days_per_year, name, dates)


def _price_table(table: PriceTable, name: str, what: str) -> PriceTable:
    """`table` as float64 numpy (or the floating tensor itself), after checking every price."""
    if isinstance(table, torch.Tensor):
        if not table.dtype.is_floating_point:
            raise DataError(f"{name}: {what} prices must be floating point, got {table.dtype}")
        valid = bool((torch.isfinite(table) & (table > 0)).all())
    else:
        table = np.asarray(table, dtype=np.float64)
        valid = bool((np.isfinite(table) & (table > 0)).all())
    if not valid:
        raise DataError(f"{name}: every {what} price must be finite and positive")
    return table


__all__ = ["MarketPath"]
