"""MetaTrader's out-of-distribution data transformations (paper §3 and S1) and subset slicing.

Three transforms of a stretch of market data, each aimed at one component of price dynamics:

- **F1** (short-term randomness): every day, the top ``alpha`` % of stocks by daily close growth
  get that growth inverted, ``c'_t = c'_{t-1} (1 - g_t)``; later growth rates are kept, so the whole
  later path shifts. On days when fewer than ``alpha`` % of the stocks rose, only the risers are
  inverted. Open/high/low move with the close (same ratio); volume is unchanged.
- **F2** (long-term trends): the sequence runs backwards in time; every field moves together.
- **F3** (multi-scale dynamics): every ``delta``-th day of a ``delta``-times longer span.

Transforms act on **paths**: an array of OHLCV rows ``[L, N, 5]`` taken from the training data
(`source_rows` says which real day each row comes from), the first ``context`` rows of which are the
look-back the market-state encoder needs before the tradeable slice of ``length`` days. For F2 and
F3 the context is transformed like the slice (the reversed path continues backwards; the downsampled
path starts ``delta * context`` days earlier), so the encoder sees one coherent transformed history.

Every row of every path lies inside the training span: the transforms never see later data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from trustfolio.errors import UserError

TRANSFORMS = ("F1", "F2", "F3")
CLOSE, OHLC = 3, slice(0, 4)  # column of the close and the price columns in OHLCV rows


@dataclass(frozen=True)
class TransformParams:
    """The paper's N = 3 transforms with alpha = 10 %, T = 64 and Delta = 4 (S1)."""

    alpha: float = 10.0  # percent of stocks inverted by F1 each day
    delta: int = 4  # F3's downsampling step

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 100.0:
            raise UserError(f"transforms: alpha must be a percentage in (0, 100], got {self.alpha}")
        if int(self.delta) < 2:
            raise UserError(f"transforms: delta must be at least 2, got {self.delta}")


def top_riser_mask(growth: np.ndarray, alpha: float) -> np.ndarray:
    """Bool ``[..., N]``: the top ``ceil(alpha % of N)`` stocks by `growth` on each row, risers only."""
    n = growth.shape[-1]
    count = max(1, math.ceil(alpha / 100.0 * n - 1e-9))
    order = np.argsort(-growth, axis=-1, kind="stable")[..., :count]
    mask = np.zeros(growth.shape, dtype=bool)
    np.put_along_axis(mask, order, True, axis=-1)
    return mask & (growth > 0)


def invert_top_risers(ohlcv: np.ndarray, alpha: float, first: int = 1) -> np.ndarray:
    """F1 on a path ``[L, N, 5]``: rows ``first..L-1`` get their top risers' close growth inverted
    (growth measured on the original path, applied cumulatively to the new one); O/H/L scale with the
    close, volume is kept. Rows before `first` are unchanged."""
    out = np.array(ohlcv, dtype=np.float64, copy=True)
    close = ohlcv[..., CLOSE].astype(np.float64)
    growth = np.zeros_like(close)
    growth[1:] = close[1:] / close[:-1] - 1.0
    flipped = top_riser_mask(growth, alpha)
    flipped[:first] = False
    new_growth = np.where(flipped, -growth, growth)
    new_close = close.copy()
    for t in range(max(first, 1), len(close)):
        new_close[t] = new_close[t - 1] * (1.0 + new_growth[t])
    out[..., OHLC] *= (new_close / close)[..., None]
    return out


def invert_next_day(previous_close: np.ndarray, next_row: np.ndarray, alpha: float) -> np.ndarray:
    """F1 for one step (the worst-case target's simulated next day): ``next_row`` ``[..., N, 5]`` after
    a close ``previous_close`` ``[..., N]``, with the top ``alpha`` % risers' growth inverted."""
    growth = next_row[..., CLOSE] / previous_close - 1.0
    flipped = top_riser_mask(growth, alpha)
    factor = np.where(flipped, (1.0 - growth) / (1.0 + growth), 1.0)
    out = np.array(next_row, dtype=np.float64, copy=True)
    out[..., OHLC] *= factor[..., None]
    return out


def path_rows(transform: str, start: int, length: int, context: int, delta: int) -> np.ndarray:
    """Real day indices of a path's rows: ``context`` look-back rows, then the ``length``-day slice
    whose original version starts on day `start` (``F0`` is the original path)."""
    if transform in ("F0", "F1"):
        return np.arange(start - context, start + length)
    if transform == "F2":  # the slice [start, start+length) reversed, preceded by the reversed days after it
        return np.arange(start + length + context - 1, start - 1, -1)
    if transform == "F3":  # every delta-th day from delta*context days before start
        return start + delta * np.arange(-context, length)
    raise UserError(
        f"unknown transform {transform!r}; choose F0 (original) or one of {', '.join(TRANSFORMS)}"
    )


def path_span(transform: str, start: int, length: int, context: int, delta: int) -> tuple[int, int]:
    """The first and last real day a path reads (both inclusive)."""
    rows = path_rows(transform, start, length, context, delta)
    return int(rows.min()), int(rows.max())


def transform_path(
    transform: str, ohlcv: np.ndarray, start: int, length: int, context: int, params: TransformParams
) -> tuple[np.ndarray, np.ndarray]:
    """``(source_rows [context+length], path [context+length, N, 5])`` of one transformed subset.

    `ohlcv` ``[T, N, 5]`` is the training data (rows past the training end must not be passed);
    F1 inverts growth inside the slice only (its first day is the anchor, S1's ``Δo_0 = 0``).
    """
    rows = path_rows(transform, start, length, context, params.delta)
    if rows.min() < 0 or rows.max() >= len(ohlcv):
        raise UserError(
            f"transform {transform}: the subset starting on day {start} needs days {rows.min()}..{rows.max()}, "
            f"outside the {len(ohlcv)} days available"
        )
    path = np.asarray(ohlcv[rows], dtype=np.float64)
    if transform == "F1":
        path = invert_top_risers(path, params.alpha, first=context + 1)
    return rows, path


def subset_starts(first: int, last: int, count: int, length: int, transforms: tuple[str, ...],
                  context: int, delta: int) -> np.ndarray:  # fmt: skip
    """`count` evenly strided (overlapping) slice starts such that every requested transform's path
    stays inside days ``[first_context_day, last]``, where slices start on or after `first`.

    The look-back context may reach before `first` (history before the training window feeds
    windows, as in the paper), but never before day 0; nothing reaches past `last`.
    """
    lows, highs = [first], [last - length + 1]
    for transform in ("F0", *transforms):
        low, high = path_span(transform, 0, length, context, delta)
        lows.append(-low)  # the start must be >= -low so the path's first row is >= 0
        highs.append(last - high)
    lo, hi = max(lows), min(highs)
    if hi < lo:
        raise UserError(
            f"the training span (days {first}..{last}) is too short for subsets of {length} days with "
            f"{context} days of context and transforms {', '.join(transforms) or 'none'}; "
            "lower subset_length or delta, or widen the window"
        )
    return np.unique(np.round(np.linspace(lo, hi, count)).astype(np.int64))


__all__ = [
    "TRANSFORMS",
    "TransformParams",
    "invert_next_day",
    "invert_top_risers",
    "path_rows",
    "path_span",
    "subset_starts",
    "top_riser_mask",
    "transform_path",
]
