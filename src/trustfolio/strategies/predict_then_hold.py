"""Predict-then-hold: the MetaTrader paper's prediction baselines (category D).

"Buying the stock with the highest predicted return over the next 5 days and selling it 5 days
later": every `holding_days` trading days (counted from the first day of the backtest) the policy
puts the whole portfolio, equally split, into the `top_k` stocks with the highest predicted return,
then holds those shares untouched until the next decision day, where it sells them and buys the new
top stocks (a stock still on top is simply kept). Defaults reproduce the paper: ``top_k=1``,
``holding_days=5``.

The predictions come from a return predictor (`trustfolio.strategies.predictors`): fitted on the
training window only, computed once for the whole timeline, and read at row ``obs.t`` — each row
uses data up to its own day only (`tests/test_lookahead_predict_then_hold.py`).

These are runner methods, not `make_strategy` strategies: `make_strategy` builds fit-free policies
from options alone, while a predictor must be fitted on a window's training days, which is what a
`Method.build_policy(panel, window, seed, work_dir)` is for. `PREDICT_HOLD_METHODS` lists the
method names; `trustfolio.methods` registers them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trustfolio.data.panel import Panel
from trustfolio.errors import DataError, UserError
from trustfolio.evaluation.backtest import Observation
from trustfolio.evaluation.protocols import Window
from trustfolio.strategies.predictors import make_predictor

#: Runner method name -> (return predictor name, description); `trustfolio.methods` registers them.
PREDICT_HOLD_METHODS: dict[str, tuple[str, str]] = {
    "predict-hold-ridge": (
        "ridge",
        "prediction (D): every 5 days buy the stock with the highest 5-day return predicted by ridge",
    ),
    "predict-hold-gbm": (
        "gbm",
        "prediction (D): every 5 days buy the stock with the highest 5-day return predicted by boosted trees",
    ),
    "predict-hold-stockformer": (
        "stockformer-long",
        "prediction (D): every 5 days buy the stock with the highest 5-day return predicted by StockFormer's "
        "long-term branch",
    ),
}
POLICY_OPTIONS = ("top_k", "holding_days")  # method config keys for the policy; the rest go to the predictor


class PredictThenHold:
    """Top-k of precomputed predictions, bought every `holding_days` days and held in between.

    `predictions` is ``[T, N]`` aligned with `dates` (the panel's days); on a decision day the policy
    ranks row ``obs.t`` (NaN ranks last; ties go to the first ticker) and holds cash if the row has no
    prediction at all (e.g. before the predictor's feature warm-up).
    """

    order_mode = "weights"

    def __init__(
        self,
        predictions: np.ndarray,
        dates: np.ndarray,
        *,
        top_k: int = 1,
        holding_days: int = 5,
        name: str = "predict-then-hold",
    ) -> None:
        predictions = np.asarray(predictions, dtype=np.float32)
        if predictions.ndim != 2 or len(predictions) != len(dates):
            raise DataError(
                f"{name}: predictions of shape {predictions.shape} do not match {len(dates)} days"
            )
        _check_options(name, {"top_k": top_k, "holding_days": holding_days})
        if top_k > predictions.shape[1]:
            raise UserError(f"{name}: top_k={top_k} is more than the {predictions.shape[1]} stocks")
        self.predictions = predictions
        self.dates = np.asarray(dates).astype("datetime64[D]")
        self.top_k = int(top_k)
        self.holding_days = int(holding_days)
        self.name = name
        self._days = 0

    def reset(self) -> None:
        self._days = 0

    def act(self, obs: Observation) -> np.ndarray:
        if obs.t >= len(self.dates) or self.dates[obs.t] != obs.date:
            raise DataError(
                f"{self.name}: predictions were made for another panel (no prediction row for {obs.date} "
                f"at day {obs.t}); build the policy from the panel it trades"
            )
        due = self._days % self.holding_days == 0
        self._days += 1
        if not due:
            return obs.weights  # keep the shares bought on the last decision day
        scores = self.predictions[obs.t]
        weights = np.zeros(len(scores))
        if not np.isfinite(scores).any():
            return weights
        ranked = np.argsort(-np.where(np.isfinite(scores), scores, -np.inf), kind="stable")
        weights[ranked[: self.top_k]] = 1.0 / self.top_k
        return weights


def _check_options(name: str, options: dict[str, Any]) -> None:
    for option, value in options.items():
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise UserError(f"{name}: {option} must be a whole number >= 1, not {value!r}")


@dataclass
class PredictThenHoldMethod:
    """A runner method: fit the return predictor on ``window.train_*`` days, then predict-then-hold.

    `config` holds the policy options (`POLICY_OPTIONS`) and the predictor's options (e.g. ``alphas``
    for ridge, ``max_iter`` for gbm, ``cache_dir`` for the features). The fit summary (chosen
    hyperparameters, validation rank IC) is written to ``work_dir/predictor.json``.
    """

    name: str
    predictor: str
    config: dict[str, Any] = field(default_factory=dict)
    deterministic: bool = True

    def __post_init__(self) -> None:
        self.policy_options = {k: v for k, v in self.config.items() if k in POLICY_OPTIONS}
        self.predictor_options = {k: v for k, v in self.config.items() if k not in POLICY_OPTIONS}
        _check_options(self.name, self.policy_options)  # bad options fail now, before any job runs
        make_predictor(self.predictor, self.predictor_options)
        # Whatever the data: ridge draws no random numbers. Boosted trees use the seed above 200,000
        # training rows only (`deterministic_on` knows the data), the encoder's training always.
        self.deterministic = self.predictor == "ridge"

    def deterministic_on(self, window: Window, dates: np.ndarray, n_stocks: int) -> bool:
        """Whether every seed gives the same policy for `window` on a panel of these `dates` and at most
        `n_stocks` stocks (a predictor that cannot tell is taken to use its seed)."""
        uses_seed = getattr(make_predictor(self.predictor, self.predictor_options), "uses_seed_on", None)
        if uses_seed is None:
            return self.deterministic
        return not uses_seed(dates, n_stocks, train_start=window.train_start, train_end=window.train_end)

    def build_policy(self, panel: Panel, window: Window, seed: int, work_dir: Path) -> PredictThenHold:
        """Fit on ``[window.train_start, window.train_end]`` (its last 10% validates), predict every day."""
        predictor = make_predictor(self.predictor, self.predictor_options)
        predictions = predictor(panel, train_start=window.train_start, train_end=window.train_end, seed=seed)
        summary = getattr(predictor, "summary", None)
        if summary is not None:
            (Path(work_dir) / "predictor.json").write_text(json.dumps(asdict(summary), indent=2))
        return PredictThenHold(predictions, panel.dates, name=self.name, **self.policy_options)


def make_predict_hold_method(name: str, config: dict[str, Any]) -> PredictThenHoldMethod:
    """The method registered as `name` (a key of `PREDICT_HOLD_METHODS`) with its `config`."""
    return PredictThenHoldMethod(name, PREDICT_HOLD_METHODS[name][0], dict(config))
