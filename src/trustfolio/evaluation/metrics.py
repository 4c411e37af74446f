"""Performance metrics of a daily portfolio value series.

Definitions follow the MetaTrader paper (Supplementary S4, `paper-notes.md` "Metrics (S4)"):

- ``CR``  cumulative return ``V_end / V_0 - 1``;
- ``AR``  annualized return ``(1 + CR) ** (d / t) - 1`` with ``d`` the calendar's trading days per
  year (242 for China, 252 for the US) and ``t`` the number of daily returns;
- ``SR``  annualized Sharpe ratio of the daily returns, risk-free rate 0:
  ``sqrt(k) * mean(r) / std(r, ddof=1)``;
- ``MDD`` maximum drawdown, the largest peak-to-trough loss ``max_t (peak_t - V_t) / peak_t``, as a
  positive fraction (``V_0`` counts as a peak).

and, beyond the paper:

- ``volatility``  annualized standard deviation of daily returns ``sqrt(k) * std(r, ddof=1)``;
- ``sortino``     ``sqrt(k) * mean(r) / downside deviation``, where the downside deviation is
  ``sqrt(mean(min(r, 0) ** 2))`` over all ``t`` returns (target 0);
- ``calmar``      ``AR / MDD``;
- ``turnover``    mean daily one-sided turnover: the traded value of a day (buys + sells) halved,
  divided by the portfolio value before the trade, summed over the period and divided by ``t``
  (1.0 means replacing the whole portfolio once a day);
- ``total_costs`` transaction costs paid over the period as a fraction of ``V_0``;
- ``idle_cash``   mean over the days of the cash share ``cash_t / V_t`` at each close (after that
  close's trade): capital a strategy meant to invest but could not, e.g. because lot rounding
  (100-share lots in China) leaves a small portfolio unable to buy whole lots. 1/N at 1e5 CNY on the
  CSI data keeps 52 % in cash and earns CR 0.29 instead of 0.73. Above `IDLE_CASH_WARNING` the
  command line warns.

Why ``k = 252`` for the Sharpe family even on Chinese data: the paper's numbers come from the
StockFormer/FinRL code, which annualizes the Sharpe ratio by ``sqrt(252)`` on every market (and
uses pandas' ``std``, ``ddof=1``). With that convention daily-rebalanced 1/N on the CSI data earns
SR 1.03 over the test window, the figure quoted in the data README; with ``k = 242`` it is 1.005.
Pass ``sharpe_days_per_year=None`` to annualize SR, volatility and Sortino by the calendar's ``d``
instead. AR and Calmar always use the calendar's ``d``, as the paper's eq. (9) says.
"""

from __future__ import annotations

import math

import numpy as np

from trustfolio.errors import UserError

#: Annualization of the Sharpe ratio, volatility and Sortino in the paper's code (see module doc).
SHARPE_DAYS_PER_YEAR = 252

#: Keys of `compute_metrics`, in display order.
METRIC_NAMES = (
    "CR", "AR", "SR", "MDD", "volatility", "sortino", "calmar", "turnover", "total_costs", "idle_cash",
)  # fmt: skip

#: Mean idle-cash share above which a backtest's numbers mostly measure rounding, not the strategy.
IDLE_CASH_WARNING = 0.05


def daily_returns(values: np.ndarray) -> np.ndarray:
    """Simple returns ``V[i] / V[i-1] - 1`` of a value series (length ``len(values) - 1``)."""
    v = np.asarray(values, dtype=np.float64)
    return v[1:] / v[:-1] - 1.0


def max_drawdown(values: np.ndarray) -> float:
    """Largest peak-to-trough loss of a value series, as a positive fraction (0 if it never falls)."""
    v = np.asarray(values, dtype=np.float64)
    peaks = np.maximum.accumulate(v)
    return float(np.max((peaks - v) / peaks))


def drawdown_series(values: np.ndarray) -> np.ndarray:
    """Drawdown ``(peak_t - V_t) / peak_t`` at each day (0 at a new high)."""
    v = np.asarray(values, dtype=np.float64)
    peaks = np.maximum.accumulate(v)
    return (peaks - v) / peaks


def sharpe_ratio(returns: np.ndarray, days_per_year: float = SHARPE_DAYS_PER_YEAR) -> float:
    """``sqrt(days_per_year) * mean / std`` (``ddof=1``, risk-free 0); NaN for a constant series."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2:
        return math.nan
    std = r.std(ddof=1)
    return float(math.sqrt(days_per_year) * r.mean() / std) if std > 0 else math.nan


def sortino_ratio(returns: np.ndarray, days_per_year: float = SHARPE_DAYS_PER_YEAR) -> float:
    """``sqrt(days_per_year) * mean / downside deviation`` (target 0); NaN with no losing day."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) == 0:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    return float(math.sqrt(days_per_year) * r.mean() / downside) if downside > 0 else math.nan


def compute_metrics(
    values: np.ndarray,
    trading_days_per_year: int,
    turnover: np.ndarray | None = None,
    costs: np.ndarray | None = None,
    *,
    cash_share: np.ndarray | None = None,
    sharpe_days_per_year: int | None = SHARPE_DAYS_PER_YEAR,
) -> dict[str, float]:
    """All metrics of a daily value series ``V_0 .. V_t`` (see the module docstring for formulas).

    ``turnover`` holds each day's one-sided turnover and ``costs`` each day's costs in currency
    (any length; they are summed). ``cash_share`` holds each close's cash / value (averaged). Without
    them ``turnover``, ``total_costs`` and ``idle_cash`` are NaN.
    ``sharpe_days_per_year=None`` annualizes SR, volatility and Sortino by ``trading_days_per_year``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) < 2:
        raise UserError(f"metrics need at least 2 daily values (got shape {v.shape}); widen the date range")
    if not np.isfinite(v).all() or (v <= 0).any():
        raise UserError("metrics need finite, positive portfolio values")
    d = float(trading_days_per_year)
    k = d if sharpe_days_per_year is None else float(sharpe_days_per_year)
    r = daily_returns(v)
    t = len(r)
    cr = float(v[-1] / v[0] - 1.0)
    ar = float((1.0 + cr) ** (d / t) - 1.0)
    mdd = max_drawdown(v)
    return {
        "CR": cr,
        "AR": ar,
        "SR": sharpe_ratio(r, k),
        "MDD": mdd,
        "volatility": float(math.sqrt(k) * r.std(ddof=1)) if t > 1 else math.nan,
        "sortino": sortino_ratio(r, k),
        "calmar": ar / mdd if mdd > 0 else math.nan,
        "turnover": math.nan if turnover is None else float(np.sum(turnover) / t),
        "total_costs": math.nan if costs is None else float(np.sum(costs) / v[0]),
        "idle_cash": math.nan if cash_share is None else float(np.mean(cash_share)),
    }
