"""Predictors of each stock's forward return, for predict-then-hold (MetaTrader's baseline category D).

A *return predictor* is any callable ``predictor(panel, *, train_start, train_end, seed=0)`` that
returns ``float32[T, N]``: row ``t`` is its prediction, made at the close of day ``t``, of each
stock's return over the next `horizon` days (NaN where it makes none). It may fit on the panel's days
in ``[train_start, train_end]`` only, and row ``t`` may depend on data up to day ``t`` only: the
predictions for a whole timeline are computed once, then a policy reads row ``obs.t``.

Two predictors are built in, both **pooled across stocks** (one model for every stock: 88 stocks x
~1,900 training days give ~165k samples where a per-stock model would have 1,900 noisy ones):

- ``ridge``: scikit-learn `Ridge` on standardized features; the penalty is chosen on a validation
  slice at the end of the training window, then the model is refitted on all training samples.
- ``gbm``: scikit-learn `HistGradientBoostingRegressor`, seeded, early-stopped on the same slice, then
  refitted on all training samples for the number of trees that scored best. Its seed matters only
  above `BINNING_SUBSAMPLE` training rows (`uses_seed_on`); below, every seed gives the same model.

Features (`FEATURE_COLUMNS`) at day t: the normalized OHLCV and 8 indicators of `build_features`
(normalizer fitted on the training window only) and trailing 1/5/20/60-day returns and 20-day
volatility. Labels: the `horizon`-day forward return (`forward_returns`), by default in excess of
that day's cross-sectional mean (``target="excess"``): the policy only ranks stocks within a day,
so the market-wide move is noise to the ranking (``target="raw"`` predicts the plain return).

A training sample at day ``s`` is used only when its label is known by the end of training,
``s + horizon <= train_end`` (`training_sample_days`); the validation slice is the last
`validation_fraction` of those days, and the `horizon` days before it are left out of the fitting
part so that no fitting label overlaps a validation day.

A third, ``stockformer-long``, is the long-term branch of `trustfolio.encoders` (pretrained on the
training window, frozen). Other predictors plug in with `register_predictor` and a line in
`trustfolio.strategies.predict_then_hold.PREDICT_HOLD_METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from trustfolio.data.features import INDICATOR_WARMUP, STATE_COLUMNS, build_features, forward_returns
from trustfolio.data.panel import Panel, to_day
from trustfolio.errors import UserError

HORIZON = 5  # the paper's holding period: predict the next 5 days' return
TRAILING_RETURN_DAYS = (1, 5, 20, 60)
VOLATILITY_DAYS = 20
FEATURE_COLUMNS = (
    *STATE_COLUMNS,
    *(f"return_{k}d" for k in TRAILING_RETURN_DAYS),
    f"volatility_{VOLATILITY_DAYS}d",
)
#: First day with every feature at full window (indicators' warm-up, 60-day trailing return).
MIN_HISTORY = max(INDICATOR_WARMUP, *TRAILING_RETURN_DAYS)
#: scikit-learn's HistGradientBoosting bins a random subsample of its training rows when it gets more
#: than this many (`_BinMapper(subsample=int(2e5))`); that is the only use of its seed here (validation
#: data given: no random split; early stopping on the loss: no scoring subsample; every feature per
#: split). `tests/test_predict_then_hold.py` checks both sides of the threshold.
BINNING_SUBSAMPLE = 200_000


class ReturnPredictor(Protocol):
    """What predict-then-hold needs: forward-return predictions ``float32[T, N]`` for the whole panel,
    fitted on ``[train_start, train_end]`` only, row t using data up to day t only."""

    name: str

    def __call__(self, panel: Panel, *, train_start: Any, train_end: Any, seed: int = 0) -> np.ndarray: ...


# ---------------------------------------------------------------------------------------- data
def trailing_features(panel: Panel) -> np.ndarray:
    """Trailing returns over `TRAILING_RETURN_DAYS` and the std of the last `VOLATILITY_DAYS` daily
    returns, ``float32[T, N, 5]``; NaN until a feature's window is full. Row t uses closes up to t."""
    close = panel.close.astype(np.float64)
    out = np.full((panel.T, panel.N, len(TRAILING_RETURN_DAYS) + 1), np.nan)
    for j, k in enumerate(TRAILING_RETURN_DAYS):
        out[k:, :, j] = close[k:] / close[:-k] - 1.0
    daily = close[1:] / close[:-1] - 1.0  # daily[i] is the return of day i + 1
    if len(daily) >= VOLATILITY_DAYS:
        windows = np.lib.stride_tricks.sliding_window_view(daily, VOLATILITY_DAYS, axis=0)
        out[VOLATILITY_DAYS:, :, -1] = windows.std(axis=-1, ddof=1)
    return out.astype(np.float32)


def predictor_features(
    panel: Panel, *, train_start: Any, train_end: Any, cache_dir: str | Path | None = None
) -> np.ndarray:
    """The predictors' inputs, ``float32[T, N, len(FEATURE_COLUMNS)]`` (NaN-free from `MIN_HISTORY`)."""
    features = build_features(panel, train_start=train_start, train_end=train_end, cache_dir=cache_dir)
    return np.concatenate([features.normalized, trailing_features(panel)], axis=-1)


def forward_labels(panel: Panel, horizon: int = HORIZON, target: str = "excess") -> np.ndarray:
    """The `horizon`-day forward return, ``float32[T, N]`` (NaN in the last `horizon` rows); with
    ``target="excess"``, minus each day's mean over the stocks."""
    if target not in ("excess", "raw"):
        raise UserError(f"predictor target must be 'excess' or 'raw', not {target!r}")
    labels = forward_returns(panel, (horizon,))[..., 0].astype(np.float64)
    if target == "excess":
        labels = labels - labels.mean(axis=1, keepdims=True)
    return labels.astype(np.float32)


def training_sample_days(
    panel: Panel, *, train_start: Any, train_end: Any, horizon: int = HORIZON
) -> np.ndarray:
    """Day indices ``s`` usable as training samples: inside the training window, with full feature
    history (``s >= MIN_HISTORY``), and with a label known by the end of training
    (``s + horizon <= index of train_end``)."""
    i0, i1 = panel.span(train_start, train_end)
    days = np.arange(max(i0, MIN_HISTORY), i1 - horizon)
    if len(days) < 20:
        raise UserError(
            f"{panel.name}: only {len(days)} usable training days in {panel.dates[i0]}→{panel.dates[i1 - 1]} "
            f"(features need {MIN_HISTORY} days of history, labels {horizon} days after); lengthen the window"
        )
    return days


def n_training_samples(
    dates: np.ndarray, n_stocks: int, *, train_start: Any, train_end: Any, horizon: int = HORIZON
) -> int:
    """How many rows a pooled predictor fits on (``len(training_sample_days) * n_stocks``), from the
    panel's dates alone: the runner knows this before any data is cleaned or any model is fitted."""
    dates = np.asarray(dates).astype("datetime64[D]")
    i0 = int(np.searchsorted(dates, to_day(train_start), side="left"))
    i1 = int(np.searchsorted(dates, to_day(train_end), side="right"))
    return max(0, i1 - horizon - max(i0, MIN_HISTORY)) * int(n_stocks)


def split_validation(days: np.ndarray, fraction: float, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """``(fit_days, validation_days)``: the last `fraction` of `days` validate; fitting days end
    `horizon` days before validation starts, so their labels never reach into it (a purge gap)."""
    if not 0.0 < fraction < 0.5:
        raise UserError(f"validation_fraction must be in (0, 0.5), not {fraction}")
    n_validation = max(1, int(round(fraction * len(days))))
    validation = days[-n_validation:]
    fit = days[days < validation[0] - horizon]
    return fit, validation


def mean_rank_ic(predicted: np.ndarray, realized: np.ndarray) -> float:
    """Mean over days (rows) of the Spearman correlation across stocks between predicted and realized
    returns; days where either is constant (or NaN) are skipped. NaN when no day counts."""
    from scipy.stats import rankdata  # imported here: `import trustfolio.methods` stays quick

    ranks_p = rankdata(predicted, axis=1)
    ranks_r = rankdata(realized, axis=1)
    ranks_p -= ranks_p.mean(axis=1, keepdims=True)
    ranks_r -= ranks_r.mean(axis=1, keepdims=True)
    norm = np.sqrt((ranks_p**2).sum(axis=1) * (ranks_r**2).sum(axis=1))
    valid = np.isfinite(norm) & (norm > 0)
    if not valid.any():
        return float("nan")
    return float(np.mean((ranks_p * ranks_r).sum(axis=1)[valid] / norm[valid]))


def _rows(values: np.ndarray, days: np.ndarray) -> np.ndarray:
    """The [T, N, ...] array's rows at `days`, pooled: ``[len(days) * N, ...]`` in float64."""
    picked = values[days].astype(np.float64)
    return picked.reshape(len(days) * values.shape[1], *values.shape[2:])


# ---------------------------------------------------------------------------------------- predictors
@dataclass
class FitSummary:
    """What a fit chose and how it scored, for logs and reports."""

    predictor: str
    train_days: tuple[str, str]  # first and last sample day (dates)
    n_fit_days: int
    n_validation_days: int
    chosen: dict[str, float]  # e.g. {"alpha": 100.0} or {"n_trees": 57}
    validation_rank_ic: float  # mean daily rank IC of the selected model on the validation slice


@dataclass
class PooledPredictor:
    """Shared pipeline of the sklearn predictors: features, labels, masks, validation, prediction.
    Subclasses implement `_fit` (select on validation, refit on all training samples)."""

    horizon: int = HORIZON
    target: str = "excess"
    validation_fraction: float = 0.1
    cache_dir: str | Path | None = None  # where build_features caches (None: trustfolio's cache)
    # BLAS/OpenMP threads while fitting and predicting (None: the libraries' default, every core).
    # One by default: on this busy 2-core machine, boosting 5k rows took 1.3 s on one OpenMP thread
    # and 29-49 s on two (spinning threads fight other processes for the cores).
    threads: int | None = 1
    name: str = field(default="pooled", init=False)
    summary: FitSummary | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if int(self.horizon) != self.horizon or self.horizon < 1:
            raise UserError(f"{self.name}: horizon must be a whole number of days >= 1, not {self.horizon!r}")
        if self.target not in ("excess", "raw"):
            raise UserError(f"{self.name}: target must be 'excess' or 'raw', not {self.target!r}")
        split_validation(np.arange(100), self.validation_fraction, 1)  # checks the fraction now
        if self.threads is not None and (int(self.threads) != self.threads or self.threads < 1):
            raise UserError(f"{self.name}: threads must be a whole number >= 1 or None, not {self.threads!r}")

    def __call__(self, panel: Panel, *, train_start: Any, train_end: Any, seed: int = 0) -> np.ndarray:
        x = predictor_features(panel, train_start=train_start, train_end=train_end, cache_dir=self.cache_dir)
        y = forward_labels(panel, self.horizon, self.target)
        days = training_sample_days(panel, train_start=train_start, train_end=train_end, horizon=self.horizon)
        fit_days, validation_days = split_validation(days, self.validation_fraction, self.horizon)
        predictions = np.full((panel.T, panel.N), np.nan, dtype=np.float32)
        usable = np.arange(MIN_HISTORY, panel.T)
        with threadpool_limits(limits=self.threads):
            model, chosen, validation_ic = self._fit(x, y, fit_days, validation_days, days, seed)
            if len(usable):
                predictions[usable] = model.predict(_rows(x, usable)).reshape(len(usable), panel.N)
        self.summary = FitSummary(
            predictor=self.name,
            train_days=(str(panel.dates[days[0]]), str(panel.dates[days[-1]])),
            n_fit_days=len(fit_days),
            n_validation_days=len(validation_days),
            chosen=chosen,
            validation_rank_ic=validation_ic,
        )
        return predictions

    def uses_seed(self, n_samples: int) -> bool:
        """Whether fitting on `n_samples` rows draws random numbers (ridge never does)."""
        return False

    def uses_seed_on(self, dates: np.ndarray, n_stocks: int, *, train_start: Any, train_end: Any) -> bool:
        """Whether the seed can change the predictions on a panel of these `dates` and (at most) `n_stocks`."""
        n = n_training_samples(dates, n_stocks, train_start=train_start, train_end=train_end, horizon=self.horizon)
        return self.uses_seed(n)

    def _fit(self, x, y, fit_days, validation_days, all_days, seed):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _validation_ic(model, x: np.ndarray, y: np.ndarray, days: np.ndarray) -> float:
        predicted = model.predict(_rows(x, days)).reshape(len(days), x.shape[1])
        return mean_rank_ic(predicted, y[days])


@dataclass
class RidgePredictor(PooledPredictor):
    """Pooled ridge regression on standardized features; `alpha` picked from `alphas` by the mean daily
    rank IC on the validation slice (what the top-k policy depends on; ties go to the larger alpha)."""

    alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0)
    name: str = field(default="ridge", init=False)

    def _fit(self, x, y, fit_days, validation_days, all_days, seed):
        from sklearn.linear_model import Ridge
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        def fitted(alpha: float, days: np.ndarray):
            return make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(_rows(x, days), _rows(y, days))

        scores = {a: self._validation_ic(fitted(a, fit_days), x, y, validation_days) for a in self.alphas}
        best = max(sorted(self.alphas, reverse=True), key=lambda a: np.nan_to_num(scores[a], nan=-np.inf))
        return fitted(best, all_days), {"alpha": float(best)}, scores[best]


@dataclass
class GradientBoostingPredictor(PooledPredictor):
    """Pooled `HistGradientBoostingRegressor` (squared error), seeded with the job's seed, early-stopped
    on the validation slice's loss, then refitted on all training samples with the best tree count."""

    learning_rate: float = 0.05
    max_iter: int = 300
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 200  # pooled daily returns are noisy: large leaves
    l2_regularization: float = 1.0
    n_iter_no_change: int = 20
    name: str = field(default="gbm", init=False)

    def _model(self, seed: int, **overrides):
        from sklearn.ensemble import HistGradientBoostingRegressor

        options = dict(
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            n_iter_no_change=self.n_iter_no_change,
            early_stopping=True,
            random_state=seed,
        )
        return HistGradientBoostingRegressor(**{**options, **overrides})

    def uses_seed(self, n_samples: int) -> bool:
        """Only above `BINNING_SUBSAMPLE` rows (the refit on all training days fits the most rows)."""
        return n_samples > BINNING_SUBSAMPLE

    def _fit(self, x, y, fit_days, validation_days, all_days, seed):
        stopped = self._model(seed).fit(
            _rows(x, fit_days),
            _rows(y, fit_days),
            X_val=_rows(x, validation_days),
            y_val=_rows(y, validation_days),
        )
        # validation_score_[i] scores the model after i trees (index 0: none); sklearn keeps the
        # n_iter_no_change trees past the best, so the refit uses the best count itself.
        n_trees = max(1, int(np.argmax(stopped.validation_score_)))
        final = self._model(seed, max_iter=n_trees, early_stopping=False).fit(
            _rows(x, all_days), _rows(y, all_days)
        )
        return final, {"n_trees": n_trees}, self._validation_ic(stopped, x, y, validation_days)


# ---------------------------------------------------------------------------------------- registry
#: Predictor name -> one-line description.
PREDICTORS: dict[str, str] = {}
_FACTORIES: dict[str, Callable[[dict[str, Any]], ReturnPredictor]] = {}


def register_predictor(
    name: str,
    factory: Callable[[dict[str, Any]], ReturnPredictor],
    description: str,
    *,
    replace: bool = False,
) -> None:
    """Make `name` usable as ``predictor=`` of predict-then-hold: ``factory(config)`` builds it."""
    if name in _FACTORIES and not replace:
        raise ValueError(f"predictor {name!r} is already registered; pass replace=True to override it")
    PREDICTORS[name] = description
    _FACTORIES[name] = factory


def make_predictor(name: str, config: dict[str, Any] | None = None) -> ReturnPredictor:
    """The predictor registered as `name`, built with `config` (its options; None = defaults)."""
    if name not in _FACTORIES:
        raise UserError(f"unknown return predictor {name!r}; choose one of {', '.join(PREDICTORS)}")
    try:
        return _FACTORIES[name](dict(config or {}))
    except TypeError as exc:
        raise UserError(f"predictor {name!r}: bad options {sorted(config or {})} ({exc})") from exc


def _with_tuples(config: dict[str, Any]) -> dict[str, Any]:
    """YAML gives lists; the dataclasses hold tuples. A training `budget` (which `trustfolio reproduce`
    gives every seed-dependent method) is dropped: these models fit in seconds, there is none to scale."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k != "budget"}


register_predictor(
    "ridge",
    lambda config: RidgePredictor(**_with_tuples(config)),
    "pooled ridge regression on normalized indicators and trailing returns (alpha by validation rank IC)",
)
register_predictor(
    "gbm",
    lambda config: GradientBoostingPredictor(**_with_tuples(config)),
    "pooled gradient-boosted trees (sklearn HistGradientBoostingRegressor, early-stopped on validation)",
)


# ---------------------------------------------------------------------------------------- StockFormer
#: Encoder settings per training budget (`EncoderConfig` fields; the job's options override them).
#: "paper" is the StockFormer release (60 epochs, early-stopped); "cpu" the light encoder trained as
#: long (487 s on csi88 on a busy 2-core machine); "quick" a smoke run. Default: "quick", as for agents.
ENCODER_BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"kind": "light", "max_epochs": 2, "steps_per_epoch": 20},
    "cpu": {"kind": "light"},
    "paper": {"kind": "stockformer"},
}


@dataclass
class StockFormerLongPredictor:
    """StockFormer's long-term branch (`trustfolio.encoders`): the encoder is pretrained on the training
    window (early-stopped on its last part, frozen, cached on disk) and its 5-day head predicts each
    day from that day's `lookback`-day window. `encoder` holds `EncoderConfig` fields; the job's seed
    replaces `seed`."""

    encoder: dict[str, Any] = field(default_factory=dict)
    cache_dir: str | Path | None = None  # encoder weights/states cache (None: trustfolio's cache)
    name: str = field(default="stockformer-long", init=False)

    def __post_init__(self) -> None:
        from trustfolio.encoders import EncoderConfig

        self.config = EncoderConfig.from_dict(self.encoder)  # unknown fields fail now

    def uses_seed_on(self, dates: np.ndarray, n_stocks: int, *, train_start: Any, train_end: Any) -> bool:
        return True  # the encoder's training is seeded, on any data

    def __call__(self, panel: Panel, *, train_start: Any, train_end: Any, seed: int = 0) -> np.ndarray:
        from trustfolio.encoders import long_term_predictions

        config = self.config.with_(seed=seed)
        return long_term_predictions(
            panel,
            config,
            train_start=train_start,
            train_end=train_end,
            cache_dir=self.cache_dir,
            progress=False,
        )


def _stockformer_long(config: dict[str, Any]) -> StockFormerLongPredictor:
    options = dict(config)
    budget = options.pop("budget", "quick")  # the agents' default budget too
    if budget not in ENCODER_BUDGETS:
        raise UserError(
            f"stockformer-long: unknown budget {budget!r}; choose one of {', '.join(ENCODER_BUDGETS)}"
        )
    cache_dir = options.pop("cache_dir", None)
    return StockFormerLongPredictor(encoder={**ENCODER_BUDGETS[budget], **options}, cache_dir=cache_dir)


register_predictor(
    "stockformer-long",
    _stockformer_long,
    "StockFormer's long-term branch (trustfolio.encoders), pretrained on the training window",
)
