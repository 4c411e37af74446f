"""Market features as `float32[T, N, ·]` arrays: what the encoders and agents see, computed once.

- `compute_indicators`: the 8 technical indicators of the MetaTrader paper (Table 4), computed by
  **stockstats** on each stock's own OHLCV frame. Values are exactly stockstats' (computed in float64,
  stored as float32). stockstats fills its warm-up with partial-window values (`min_periods=1`: on
  day 5, `close_60_sma` is the mean of 5 closes), so rows before `INDICATOR_WARMUP` are not
  full-window values. stockstats' own NaN stay NaN in the raw array: day 0 of `boll_ub/boll_lb`
  (std of one value) and `dx_30` until the stock's first price move (true range 0 makes +DI/-DI 0/0;
  day 0 of close-only bars). Days a stock is not traded are NaN too. (A frame shorter than 30 days
  gives NaN `cci_30`: stockstats' mean deviation needs one full window.)
- `trailing_covariance`: covariance of daily close returns over the trailing `window` days.
- `forward_returns`: 1- and 5-day forward returns — *labels* for predictors, never market states.
- `Normalizer`: per-stock scaling fitted on the training window only (paper eq. 6–7).
- `build_features` → `FeatureSet` (cached on disk) → `FeatureSet.market_states()` → `MarketStates`,
  whose `h` is NaN-free: anything undefined (warm-up NaN, covariance before `min_periods`) is 0 after
  normalization.

Every array row `t` depends on data up to the close of day `t` only (labels excepted, by definition);
`tests/test_lookahead_features.py` checks this bit for bit on real data.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import stockstats
from threadpoolctl import threadpool_limits

from trustfolio.data.cache import cache_root, content_key, load_npz, save_npz_atomic
from trustfolio.data.panel import FIELDS, PRICE_FIELDS, Panel
from trustfolio.errors import DataError, UserError

INDICATORS = ("macd", "boll_ub", "boll_lb", "rsi_30", "cci_30", "dx_30", "close_30_sma", "close_60_sma")
# Indicators measured in price units share the stock's price min-max factor (so boll bands and moving
# averages stay comparable with the normalized close); the others are standardized per stock.
PRICE_UNIT_INDICATORS = ("boll_ub", "boll_lb", "close_30_sma", "close_60_sma")
INDICATOR_WARMUP = 60  # days before the longest window (close_60_sma) is full
STATE_COLUMNS = (*FIELDS, *INDICATORS)  # columns of the normalized market state, in order
FORMAT_VERSION = 1  # bump when a computation here changes, so old cache files are not reused


# ---------------------------------------------------------------------------------------- raw arrays
def compute_indicators(panel: Panel) -> np.ndarray:
    """The `INDICATORS` of every stock as `float32[T, N, 8]`, computed by stockstats per stock.

    Each stock's frame starts at its first traded day (leading NaN rows are skipped, as if its history
    began there); days on which the stock has no close are NaN in the result.
    """
    out = np.full((panel.T, panel.N, len(INDICATORS)), np.nan, dtype=np.float32)
    for n in range(panel.N):
        traded = np.flatnonzero(np.isfinite(panel.close[:, n]))
        if traded.size == 0:
            continue
        first = traded[0]
        # A plain frame with lower-case OHLCV columns and no `date` column: stockstats' `wrap` copies it
        # (the panel is never mutated) and keeps the RangeIndex.
        frame = pd.DataFrame({name: panel.field(name)[first:, n].astype(np.float64) for name in FIELDS})
        out[first:, n] = stockstats.wrap(frame)[list(INDICATORS)].to_numpy(dtype=np.float64)
    out[~np.isfinite(panel.close)] = np.nan
    return out


def daily_returns(panel: Panel) -> np.ndarray:
    """Close-to-close returns `close[t]/close[t-1] - 1` as `float64[T, N]`; row 0 is NaN (no previous day)."""
    close = panel.close.astype(np.float64)
    returns = np.full_like(close, np.nan)
    returns[1:] = close[1:] / close[:-1] - 1.0
    return returns


def trailing_covariance(panel: Panel, window: int = 252, *, min_periods: int = 20) -> np.ndarray:
    """Covariance of daily close returns over the trailing window, `float32[T, N, N]`.

    `cov[t]` uses the returns of days `t-window+1 .. t` (the return of day t is close[t]/close[t-1]-1,
    so prices of days `t-window .. t`), with `ddof=1` like `np.cov`. Early days with fewer returns use
    all returns available (days 1..t) when there are at least `min_periods`, else are NaN. A stock with a
    missing close in the window gets NaN in its row and column.
    """
    if window < 2:
        raise UserError(f"covariance window must be at least 2 days, got {window}")
    if not 2 <= min_periods <= window:
        raise UserError(f"covariance min_periods must be in [2, window={window}], got {min_periods}")
    returns = daily_returns(panel)
    out = np.full((panel.T, panel.N, panel.N), np.nan, dtype=np.float32)
    # One small BLAS product per day: 0.5 s for 2,995 days x 88 stocks, faster than a batched
    # sliding-window matmul (0.7 s) or cumulative sums of outer products (1.8 s, and less accurate).
    # Single-threaded BLAS: at this size threads gain nothing, and on a busy machine OpenBLAS's
    # spinning threads made the loop 4-20x slower (measured 2-9 s instead of 0.5 s).
    with threadpool_limits(limits=1, user_api="blas"):
        for t in range(min_periods, panel.T):
            recent = returns[max(1, t - window + 1) : t + 1]
            centered = recent - recent.mean(axis=0)
            out[t] = (centered.T @ centered) / (len(recent) - 1)
    return out


def forward_returns(panel: Panel, horizons: tuple[int, ...] = (1, 5)) -> np.ndarray:
    """Labels `close[t+h]/close[t] - 1` as `float32[T, N, len(horizons)]`; NaN in the last `h` rows.

    These look into the future by definition: use them as prediction targets, never as inputs.
    """
    close = panel.close.astype(np.float64)
    out = np.full((panel.T, panel.N, len(horizons)), np.nan, dtype=np.float32)
    for k, h in enumerate(horizons):
        if int(h) != h or h < 1:
            raise UserError(f"forward-return horizons must be positive whole days, got {h!r}")
        if h < panel.T:
            out[:-h, :, k] = close[h:] / close[:-h] - 1.0
    return out


# ---------------------------------------------------------------------------------------- normalizer
def _stack_ohlcv(panel: Panel) -> np.ndarray:
    return np.stack([panel.field(name).astype(np.float64) for name in FIELDS], axis=-1)


def _safe_scale(scale: np.ndarray) -> np.ndarray:
    """A zero or undefined scale (constant series, e.g. sp500's volume = 0) becomes 1: the feature is 0."""
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def _quiet_nan_warnings() -> warnings.catch_warnings:
    """Silence numpy's "All-NaN slice" / "Mean of empty slice" warnings; callers check the results."""
    return warnings.catch_warnings(action="ignore", category=RuntimeWarning)


@dataclass(frozen=True, eq=False)
class Normalizer:
    """Per-stock scaling of OHLCV and indicators, fitted on the training window only (paper eq. 6–7).

    Prices (open, high, low, close) share one min-max factor per stock: `(x - min(low)) / (max(high) -
    min(low))` over the training days; volume is min-max scaled alone. Indicators in price units
    (`PRICE_UNIT_INDICATORS`) use the price factor; the others are standardized with the training mean
    and std (population std). Indicator statistics skip the first `INDICATOR_WARMUP` days of the panel
    (partial-window values). All parameters are float64 `[N]` or `[N, 8]` arrays.
    """

    price_min: np.ndarray  # [N] min of low over the training window
    price_scale: np.ndarray  # [N] max(high) - min(low) (1 when degenerate)
    volume_min: np.ndarray  # [N]
    volume_scale: np.ndarray  # [N]
    indicator_center: np.ndarray  # [N, 8]
    indicator_scale: np.ndarray  # [N, 8]

    @classmethod
    def fit(cls, panel: Panel, indicators: np.ndarray, *, train_start: Any, train_end: Any) -> Normalizer:
        """Fit on the days of `panel` in `[train_start, train_end]`; `indicators` is `compute_indicators(panel)`."""
        i0, i1 = panel.span(train_start, train_end)
        with _quiet_nan_warnings():
            price_min = np.nanmin(panel.low[i0:i1].astype(np.float64), axis=0)
            price_max = np.nanmax(panel.high[i0:i1].astype(np.float64), axis=0)
            volume = panel.volume[i0:i1].astype(np.float64)
            volume_min, volume_max = np.nanmin(volume, axis=0), np.nanmax(volume, axis=0)
        untraded = [panel.tickers[n] for n in np.flatnonzero(~np.isfinite(price_min + price_max))]
        if untraded:
            raise DataError(
                f"{panel.name}: no prices in the training window {panel.dates[i0]}→{panel.dates[i1 - 1]} for "
                f"{', '.join(untraded[:5])}; clean the panel (trustfolio.data.cleaning.clean) or drop them"
            )
        first_full = max(i0, INDICATOR_WARMUP)
        if first_full >= i1:
            raise UserError(
                f"{panel.name}: the training window ends on {panel.dates[i1 - 1]}, before the indicators' "
                f"{INDICATOR_WARMUP}-day warm-up is over ({panel.dates[min(INDICATOR_WARMUP, panel.T - 1)]}); "
                "end the training window later or load more history"
            )
        with _quiet_nan_warnings():
            mean = np.nanmean(indicators[first_full:i1].astype(np.float64), axis=0)
            std = np.nanstd(indicators[first_full:i1].astype(np.float64), axis=0)
        price_scale = _safe_scale(price_max - price_min)
        is_price_unit = np.array([name in PRICE_UNIT_INDICATORS for name in INDICATORS])
        center = np.where(is_price_unit, price_min[:, None], np.nan_to_num(mean))
        scale = np.where(is_price_unit, price_scale[:, None], _safe_scale(std))
        return cls(
            price_min=price_min,
            price_scale=price_scale,
            volume_min=np.nan_to_num(volume_min),
            volume_scale=_safe_scale(volume_max - volume_min),
            indicator_center=center,
            indicator_scale=scale,
        )

    def transform(self, panel: Panel, indicators: np.ndarray) -> np.ndarray:
        """Normalized `[OHLCV ‖ indicators]` as NaN-free `float32[T, N, 13]` (columns `STATE_COLUMNS`).

        Values outside the training window may leave [0, 1] (that is information, not an error);
        undefined values (NaN) become 0.
        """
        ohlcv = _stack_ohlcv(panel)
        prices = (ohlcv[..., :4] - self.price_min[:, None]) / self.price_scale[:, None]
        volume = (ohlcv[..., 4:] - self.volume_min[:, None]) / self.volume_scale[:, None]
        scaled = (indicators.astype(np.float64) - self.indicator_center) / self.indicator_scale
        state = np.concatenate([prices, volume, scaled], axis=-1)
        return np.where(np.isfinite(state), state, 0.0).astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The parameters by name (what `save` writes and `from_arrays` reads)."""
        return {name: np.asarray(value) for name, value in asdict(self).items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Normalizer:
        return cls(**{name: np.asarray(arrays[name], dtype=np.float64) for name in cls.__dataclass_fields__})

    def save(self, path: str | Path) -> None:
        """Write the parameters to an NPZ file (atomically)."""
        save_npz_atomic(Path(path), self.to_arrays())

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        arrays = load_npz(Path(path))
        if arrays is None:
            raise DataError(f"cannot read normalizer parameters from {path}")
        return cls.from_arrays(arrays)


# ---------------------------------------------------------------------------------------- feature set
@dataclass(frozen=True)
class FeatureConfig:
    """What `build_features` computes. The paper's setting is the default."""

    covariance_window: int = 252
    covariance_min_periods: int = 20
    label_horizons: tuple[int, ...] = (1, 5)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_horizons", tuple(int(h) for h in self.label_horizons))


@dataclass(frozen=True, eq=False)
class MarketStates:
    """The action-free market state `h[T, N, D]` (float32, NaN-free) with the names of its D columns."""

    h: np.ndarray
    columns: tuple[str, ...]
    dates: np.ndarray
    tickers: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Named `float32[T, N, ·]` feature arrays of one panel, plus what they were built from.

    `indicators` (raw stockstats values, may hold NaN), `covariance` ([T, N, N], NaN before
    `min_periods` returns), `labels` (forward returns, columns `label_columns`), `normalized` (the
    NaN-free `[OHLCV ‖ indicators]` from `normalizer`, columns `STATE_COLUMNS`).
    """

    dates: np.ndarray
    tickers: tuple[str, ...]
    indicators: np.ndarray
    covariance: np.ndarray
    labels: np.ndarray
    normalized: np.ndarray
    normalizer: Normalizer
    config: FeatureConfig
    train_start: np.datetime64  # first and last trading day of the training window
    train_end: np.datetime64

    @property
    def label_columns(self) -> tuple[str, ...]:
        return tuple(f"forward_return_{h}d" for h in self.config.label_horizons)

    def market_states(self, *, covariance: bool = False) -> MarketStates:
        """`h = [normalized OHLCV ‖ normalized indicators]` per stock and day; with `covariance=True`,
        each stock's row of the trailing covariance (raw, 0 where undefined) is appended."""
        h, columns = self.normalized, STATE_COLUMNS
        if covariance:
            cov_rows = np.where(np.isfinite(self.covariance), self.covariance, np.float32(0.0))
            h = np.concatenate([h, cov_rows], axis=-1)
            columns = columns + tuple(f"cov:{ticker}" for ticker in self.tickers)
        return MarketStates(h=h, columns=columns, dates=self.dates, tickers=self.tickers)

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            "dates": self.dates.astype(np.int64),
            "tickers": np.array(self.tickers, dtype=str),
            "train_window": np.array([self.train_start, self.train_end]).astype(np.int64),
            "indicators": self.indicators,
            "covariance": self.covariance,
            "labels": self.labels,
            "normalized": self.normalized,
        }
        arrays.update({f"normalizer.{k}": v for k, v in self.normalizer.to_arrays().items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], config: FeatureConfig) -> FeatureSet:
        prefix = "normalizer."
        start, end = arrays["train_window"].astype("datetime64[D]")
        return cls(
            dates=arrays["dates"].astype("datetime64[D]"),
            tickers=tuple(str(t) for t in arrays["tickers"]),
            indicators=arrays["indicators"],
            covariance=arrays["covariance"],
            labels=arrays["labels"],
            normalized=arrays["normalized"],
            normalizer=Normalizer.from_arrays(
                {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            ),
            config=config,
            train_start=start,
            train_end=end,
        )


def features_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where feature sets are cached: `cache_dir` if given, else `<cache_root()>/features`."""
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "features"


def build_features(
    panel: Panel,
    config: FeatureConfig | None = None,
    *,
    train_start: Any,
    train_end: Any,
    cache_dir: str | Path | None = None,
) -> FeatureSet:
    """Indicators, covariance, labels and the train-fitted normalized state of `panel`, cached on disk.

    The cache file is keyed by a hash of the panel's content, `config`, the training window and the
    versions of stockstats, pandas and this code; a second call with the same inputs loads it. The
    panel must have every price (a cleaned panel; see `trustfolio.data.cleaning.clean`).
    """
    config = config or FeatureConfig()
    missing = [name for name in PRICE_FIELDS if not np.isfinite(panel.field(name)).all()]
    if missing:
        raise DataError(
            f"{panel.name}: missing {'/'.join(missing)} prices; features need a NaN-free panel — "
            "clean it first with trustfolio.data.cleaning.clean"
        )
    i0, i1 = panel.span(train_start, train_end)
    start, end = panel.dates[i0], panel.dates[i1 - 1]
    key = content_key(
        "features",
        FORMAT_VERSION,
        panel.content_hash(),
        asdict(config),
        [str(start), str(end)],
        {lib: version(lib) for lib in ("stockstats", "pandas", "numpy")},
    )
    path = features_cache_dir(cache_dir) / f"features-{key}.npz"
    cached = load_npz(path)
    if cached is not None:
        return FeatureSet.from_arrays(cached, config)

    indicators = compute_indicators(panel)
    normalizer = Normalizer.fit(panel, indicators, train_start=start, train_end=end)
    features = FeatureSet(
        dates=panel.dates,
        tickers=panel.tickers,
        indicators=indicators,
        covariance=trailing_covariance(
            panel, config.covariance_window, min_periods=config.covariance_min_periods
        ),
        labels=forward_returns(panel, config.label_horizons),
        normalized=normalizer.transform(panel, indicators),
        normalizer=normalizer,
        config=config,
        train_start=start,
        train_end=end,
    )
    save_npz_atomic(path, features.to_arrays())
    return features
