"""EvoNash-MARL features and regimes (§III-C, §VI-A/B, eq. 1, 3-4), computed once over the whole panel.

Everything here is **trailing only**: the value on day t reads the panel up to the close of t and
nothing after (tests/test_evonash_features.py replaces every value after t with garbage and checks
that all features and regimes up to t are bit-identical). Rolling statistics use pandas' rolling
windows, which walk forward through the rows, so a row never depends on later rows.

Per asset (``asset[T, N, Fa]``): trailing returns over 5/21/63 days, volatility over 21/63 days,
log-volume z-score and trend, return relative to the benchmark, trailing beta.
Market level (``market[T, Fm]``): benchmark momentum and volatility, skew, kurtosis, CVaR and worst
day (tail and higher moments), breadth, cross-sectional dispersion, mean volume z-score, and the
trailing returns of three long-short factor streams (momentum, short-term reversal, low volatility).

Raw features hold NaN where the history is too short; `Standardizer` (fitted on training days only,
paper-notes) turns them into z-scores with NaN → 0, and `agent_inputs` joins asset and market
features into the ``x[T, N, D]`` that eq. 5 reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trustfolio.agents.evonash.config import EvoNashConfig
from trustfolio.data.panel import Panel
from trustfolio.errors import DataError

REGIMES = ("BULL", "BEAR", "SIDEWAYS", "SHOCK")
BULL, BEAR, SIDEWAYS, SHOCK = range(4)
FACTORS = ("momentum", "reversal", "low_volatility")


# ---------------------------------------------------------------------------------------- returns
def clipped_returns(panel: Panel, clip: float = 0.20) -> np.ndarray:
    """Eq. 1, ``r[t, i] = P[t, i] / P[t-1, i] - 1``, clipped at ±`clip` (§VI-A: bad ticks, split
    artifacts); ``float64[T, N]``, row 0 is 0 (no previous day)."""
    if not panel.is_clean:
        raise DataError(f"{panel.name}: EvoNash features need a clean panel; run trustfolio.data.cleaning.clean")
    close = panel.close.astype(np.float64)
    returns = np.zeros_like(close)
    returns[1:] = close[1:] / close[:-1] - 1.0
    return np.clip(returns, -clip, clip)


def benchmark_returns(panel: Panel, returns: np.ndarray, choice: str = "auto", clip: float = 0.20) -> np.ndarray:
    """b_t (§III-A): the panel's index returns (``index``; ``auto`` when it has one) or the 1/N basket of
    the clipped asset returns (``equal_weight``; ``auto`` otherwise), clipped like the assets; ``[T]``."""
    if choice == "index" or (choice == "auto" and panel.benchmark is not None):
        if panel.benchmark is None:
            raise DataError(f"{panel.name}: benchmark 'index' asked for, but the panel has no index series")
        level = panel.benchmark.astype(np.float64)
        bench = np.zeros_like(level)
        bench[1:] = level[1:] / level[:-1] - 1.0
        return np.clip(bench, -clip, clip)
    return returns.mean(axis=1)


# ---------------------------------------------------------------------------------------- rolling helpers
def _rolling(values: np.ndarray, window: int, stat: str, min_periods: int | None = None) -> np.ndarray:
    """A pandas rolling statistic along axis 0 of a ``[T]`` or ``[T, N]`` array (trailing, causal)."""
    frame = pd.DataFrame(values.reshape(len(values), -1))
    roll = frame.rolling(window, min_periods=window if min_periods is None else min_periods)
    return getattr(roll, stat)().to_numpy(copy=True).reshape(values.shape)  # writable (pandas 3 views are not)


def trailing_return(returns: np.ndarray, window: int) -> np.ndarray:
    """Compounded return of the last `window` days, ``Π(1 + r) - 1`` over ``t-window+1 .. t``."""
    return np.expm1(_rolling(np.log1p(returns), window, "sum"))


def trailing_volatility(returns: np.ndarray, window: int) -> np.ndarray:
    """Standard deviation of the last `window` daily returns (daily units, ddof 1)."""
    return _rolling(returns, window, "std")


def trailing_beta(returns: np.ndarray, bench: np.ndarray, window: int) -> np.ndarray:
    """``Cov(r_i, b) / Var(b)`` over the last `window` days, ``[T, N]``; NaN where Var(b) is 0."""
    mean_rb = _rolling(returns * bench[:, None], window, "mean")
    mean_r, mean_b = _rolling(returns, window, "mean"), _rolling(bench, window, "mean")
    var_b = _rolling(bench * bench, window, "mean") - mean_b**2
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = (mean_rb - mean_r * mean_b[:, None]) / var_b[:, None]
    return np.where(var_b[:, None] > 1e-14, beta, np.nan)


def volume_zscore(volume: np.ndarray, window: int) -> np.ndarray:
    """Today's log volume against its trailing `window`-day mean and std (including today)."""
    log_volume = np.log1p(volume.astype(np.float64))
    mean, std = _rolling(log_volume, window, "mean"), _rolling(log_volume, window, "std")
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (log_volume - mean) / std
    return np.where(std == 0, 0.0, z)  # constant volume: 0; too little history: NaN


def trailing_cvar(values: np.ndarray, window: int, quantile: float) -> np.ndarray:
    """Mean of the worst ``ceil(quantile·window)`` of the last `window` values of a ``[T]`` series."""
    out = np.full(len(values), np.nan)
    if len(values) >= window:
        worst = max(1, int(np.ceil(quantile * window)))
        windows = np.sort(np.lib.stride_tricks.sliding_window_view(values, window), axis=1)
        out[window - 1 :] = windows[:, :worst].mean(axis=1)
    return out


def breadth(close: np.ndarray, window: int) -> np.ndarray:
    """Share of assets whose close is above their trailing `window`-day mean close, ``[T]``."""
    mean = _rolling(close.astype(np.float64), window, "mean")
    share = (close > mean).mean(axis=1)
    return np.where(np.isfinite(mean).all(axis=1), share, np.nan)


def long_short_factor(returns: np.ndarray, score: np.ndarray, fraction: float) -> np.ndarray:
    """A long-short factor stream: the day-t return of the top `fraction` of assets by ``score[t-1]``
    minus that of the bottom `fraction` (ranked at the previous close, so the stream is trailing).
    0 on days whose score is not yet defined for every asset. ``[T]``."""
    T, N = returns.shape
    k = max(1, int(np.floor(N * fraction)))
    stream = np.zeros(T)
    formed = np.isfinite(score[:-1]).all(axis=1)  # score known at the close of t-1
    order = np.argsort(np.nan_to_num(score[:-1], nan=0.0), axis=1, kind="stable")
    ranked = np.take_along_axis(returns[1:], order, axis=1)
    stream[1:] = np.where(formed, ranked[:, -k:].mean(axis=1) - ranked[:, :k].mean(axis=1), 0.0)
    return stream


# ---------------------------------------------------------------------------------------- regimes
@dataclass(frozen=True, eq=False)
class RegimeSeries:
    """Eq. 3-4's inputs and output: r̄_t, σ_t, σ̄_t (``[T]``) and the label z_t (``int8[T]``)."""

    market_return: np.ndarray
    volatility: np.ndarray
    baseline_volatility: np.ndarray
    labels: np.ndarray


def regime_labels(bench: np.ndarray, config: EvoNashConfig) -> RegimeSeries:
    """Eq. 3-4: BULL if r̄_t ≥ θ_bull, BEAR if r̄_t ≤ θ_bear, SHOCK if σ_t > κ_shock·σ̄_t, SIDEWAYS otherwise.

    r̄_t is the benchmark's trailing `regime_window`-day return (compounded, or the mean daily return
    with ``regime_return: mean``), σ_t its trailing standard deviation over the same days, σ̄_t the
    trailing mean of σ over `regime_baseline_window` days (expanding until a full window exists).
    ``shock_first`` decides a crash that is both BEAR and SHOCK (see `EvoNashConfig`). Days without
    a full `regime_window` of history are SIDEWAYS.
    """
    w = config.regime_window
    if config.regime_return == "cumulative":
        market_return = trailing_return(bench, w)
    else:
        market_return = _rolling(bench, w, "mean")
    volatility = trailing_volatility(bench, w)
    baseline = _rolling(volatility, config.regime_baseline_window, "mean", min_periods=1)
    bull = market_return >= config.regime_bull  # NaN compares False: too little history is SIDEWAYS
    bear = market_return <= config.regime_bear
    shock = volatility > config.regime_shock * baseline
    labels = np.full(len(bench), SIDEWAYS, dtype=np.int8)
    order = ((SHOCK, shock), (BULL, bull), (BEAR, bear)) if config.shock_first else \
            ((BULL, bull), (BEAR, bear), (SHOCK, shock))  # fmt: skip
    for label, condition in reversed(order):  # the first condition listed is written last: it wins
        labels[condition] = label
    return RegimeSeries(market_return, volatility, baseline, labels)


# ---------------------------------------------------------------------------------------- the feature set
@dataclass(frozen=True, eq=False)
class EvoNashFeatures:
    """The raw (unstandardized) feature arrays of one panel, and the series the other layers read."""

    dates: np.ndarray  # datetime64[D][T]
    asset: np.ndarray  # float64[T, N, Fa], NaN where the history is too short
    market: np.ndarray  # float64[T, Fm]
    asset_names: tuple[str, ...]
    market_names: tuple[str, ...]
    returns: np.ndarray  # [T, N] clipped daily returns (eq. 1)
    benchmark_returns: np.ndarray  # [T] b_t
    factor_returns: np.ndarray  # [T, len(FACTORS)] long-short streams
    asset_volatility: np.ndarray  # [T, N] trailing vol over regime_window (eq. 10, per_asset)
    regimes: RegimeSeries  # eq. 3-4; regimes.volatility is eq. 10's σ_t in "portfolio" mode

    @property
    def T(self) -> int:
        return len(self.dates)


def build_features(panel: Panel, config: EvoNashConfig) -> EvoNashFeatures:
    """All EvoNash features of `panel` (§III-C, §VI-B), each a trailing statistic (see module doc)."""
    c = config
    returns = clipped_returns(panel, c.return_clip)
    bench = benchmark_returns(panel, returns, c.benchmark, c.return_clip)
    asset, asset_names = {}, []

    def add_asset(name: str, values: np.ndarray) -> None:
        asset_names.append(name)
        asset[name] = values

    bench_momentum = {w: trailing_return(bench, w) for w in c.momentum_windows}
    for w in c.momentum_windows:
        add_asset(f"ret_{w}", trailing_return(returns, w))
    for w in c.volatility_windows:
        add_asset(f"vol_{w}", trailing_volatility(returns, w))
    volume_z = volume_zscore(panel.volume, c.volume_window)
    add_asset(f"volume_z_{c.volume_window}", volume_z)
    log_volume = np.log1p(panel.volume.astype(np.float64))
    add_asset("volume_trend", _rolling(log_volume, 5, "mean") - _rolling(log_volume, c.volume_window, "mean"))
    for w in c.momentum_windows[1:]:  # benchmark-relative: the asset's return minus the benchmark's
        add_asset(f"rel_ret_{w}", asset[f"ret_{w}"] - bench_momentum[w][:, None])
    add_asset(f"beta_{c.beta_window}", trailing_beta(returns, bench, c.beta_window))

    factor_scores = {  # what each long-short stream ranks on (high score = long leg)
        "momentum": trailing_return(returns, c.factor_lookback),
        "reversal": -trailing_return(returns, 5),
        "low_volatility": -trailing_volatility(returns, max(c.volatility_windows)),
    }
    factors = np.stack([long_short_factor(returns, factor_scores[f], c.factor_fraction) for f in FACTORS], 1)

    with np.errstate(invalid="ignore"):
        dispersion = returns.std(axis=1)
    market = {f"bench_ret_{w}": bench_momentum[w] for w in c.momentum_windows}
    market.update({f"bench_vol_{w}": trailing_volatility(bench, w) for w in c.volatility_windows})
    market.update({
        f"bench_skew_{c.moment_window}": _rolling(bench, c.moment_window, "skew"),
        f"bench_kurt_{c.moment_window}": _rolling(bench, c.moment_window, "kurt"),
        f"bench_cvar_{c.moment_window}": trailing_cvar(bench, c.moment_window, c.tail_quantile),
        f"bench_worst_{c.regime_window}": _rolling(bench, c.regime_window, "min"),
        f"breadth_{c.breadth_window}": breadth(panel.close, c.breadth_window),
        "dispersion": dispersion,
        f"dispersion_{c.regime_window}": _rolling(dispersion, c.regime_window, "mean"),
        "volume_z_mean": volume_z.mean(axis=1),
    })  # fmt: skip
    for i, name in enumerate(FACTORS):
        market[f"factor_{name}_ret_21"] = trailing_return(factors[:, i], 21)

    return EvoNashFeatures(
        dates=panel.dates,
        asset=np.stack([asset[name] for name in asset_names], axis=-1),
        market=np.stack(list(market.values()), axis=-1),
        asset_names=tuple(asset_names),
        market_names=tuple(market),
        returns=returns,
        benchmark_returns=bench,
        factor_returns=factors,
        asset_volatility=trailing_volatility(returns, c.regime_window),
        regimes=regime_labels(bench, c),
    )


# ---------------------------------------------------------------------------------------- standardizing
@dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-feature mean and std fitted on the training days only (paper-notes: no test statistics)."""

    asset_mean: np.ndarray
    asset_std: np.ndarray
    market_mean: np.ndarray
    market_std: np.ndarray
    clip: float = 5.0

    @classmethod
    def fit(cls, features: EvoNashFeatures, start: int, end: int, clip: float = 5.0) -> Standardizer:
        """Statistics of days ``start .. end`` (day indices, inclusive), NaN ignored; std 0 → 1."""
        asset = features.asset[start : end + 1].reshape(-1, features.asset.shape[-1])
        market = features.market[start : end + 1]

        def moments(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            finite = np.isfinite(values)
            count = np.maximum(finite.sum(axis=0), 1)
            mean = np.where(finite, values, 0.0).sum(axis=0) / count
            var = (np.where(finite, values - mean, 0.0) ** 2).sum(axis=0) / count
            std = np.sqrt(var)
            return mean, np.where(std > 1e-12, std, 1.0)

        return cls(*moments(asset), *moments(market), clip=clip)

    def transform(self, features: EvoNashFeatures) -> tuple[np.ndarray, np.ndarray]:
        """``(asset_z float32[T, N, Fa], market_z float32[T, Fm])``: z-scores clipped at ±clip, NaN → 0."""

        def z(values: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
            scaled = np.clip((values - mean) / std, -self.clip, self.clip)
            return np.nan_to_num(scaled, nan=0.0).astype(np.float32)

        return z(features.asset, self.asset_mean, self.asset_std), z(features.market, self.market_mean, self.market_std)


def agent_inputs(asset_z: np.ndarray, market_z: np.ndarray) -> np.ndarray:
    """x[t, i] = [asset features of i on t ‖ market features on t] (paper-notes: one shared weight
    vector per agent scores every asset), ``float32[T, N, Fa + Fm]``."""
    T, N, _ = asset_z.shape
    return np.concatenate([asset_z, np.broadcast_to(market_z[:, None, :], (T, N, market_z.shape[1]))], axis=-1)
