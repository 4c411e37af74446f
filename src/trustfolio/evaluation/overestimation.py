"""The value-overestimation diagnostic of the MetaTrader paper (Fig. 10): what an agent's critic
believes its actions are worth, against the discounted return they actually earn.

One portfolio trades the agent's deterministic action through a test window in the one deterministic
rollout (`trustfolio.market.rollout`), as the training loops' evaluation callback does (no lot
rounding: the critic was trained without lots). The agent's critic is read through its
``critic_value(obs, action)`` (SAC and its descendants, DDPG, IQL, MetaTrader have one). On every day ``t`` the critic's estimate ``Q(s_t, a_t)`` of the action taken
is recorded with the reward ``r_t`` (scaled by the agent's ``reward_scale``, the units the critic
learned in). The realized discounted return is ``G_t = Σ_{k≥0} γ^k r_{t+k}``, summed to the end of the
window. A critic that overestimates has ``Q(s_t, a_t) > G_t`` on most days.

Two things to keep in mind when reading the numbers:

- **Truncation.** ``G_t`` stops at the window's end, so on the last ~``1/(1-γ)`` days it misses the
  tail ``γ^(T-t) V(s_T)`` and is biased low (the bias then looks like overestimation). `summary`
  therefore also reports every statistic on the days with at least ``int(3/(1-γ))`` days left,
  where the missing tail weighs at most ``γ^(int(3/(1-γ))+1) ≈ e^-3 ≈ 5%`` (``untruncated_*``; NaN
  when the window is too short, e.g. fewer than 300 days at γ = 0.99).
- **Soft values.** SAC-style critics (SAC, StockFormer, SARL, CQL, MetaTrader) learn the *soft*
  value, which includes future entropy bonuses ``-α log π``; part of their "bias" is that bonus by
  construction. IQL's critics value the data's actions (in-sample), not the actor's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trustfolio.data.features import MarketStates
from trustfolio.data.panel import Panel
from trustfolio.errors import DataError, UserError
from trustfolio.files import write_atomic


def has_critic(agent: Any) -> bool:
    """Whether `agent` exposes ``critic_value(obs, action)`` (what this diagnostic reads)."""
    return callable(getattr(agent, "critic_value", None))


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """``G_t = r_t + γ G_{t+1}`` backwards from ``G_{T-1} = r_{T-1}``: the discounted return of every
    day, truncated at the end of `rewards`."""
    returns = np.empty(len(rewards), dtype=np.float64)
    following = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        following = rewards[t] + gamma * following
        returns[t] = following
    return returns


@dataclass(eq=False)
class OverestimationResult:
    """Day by day, the critic's estimate of the action taken and the realized discounted return.
    Row ``i`` is the decision at the close of ``dates[i]``."""

    agent: str
    dates: np.ndarray  # datetime64[D][T], the decision days
    estimate: np.ndarray  # float64[T], Q(s_t, a_t)
    realized: np.ndarray  # float64[T], G_t truncated at the window's end
    reward: np.ndarray  # float64[T], r_t in the critic's units (x reward_scale)
    gamma: float

    @property
    def horizon(self) -> int:
        """Days that must be left after a day for its ``G_t`` to count as untruncated: ``int(3/(1-γ))``."""
        return int(3 / (1 - self.gamma))

    @property
    def horizon_note(self) -> str:
        """Why the ``untruncated_*`` statistics exist, with this result's numbers."""
        return (
            f"G_t is summed only to the end of the window, so on the last ~{1 / (1 - self.gamma):.0f} days "
            "it misses the discounted value beyond and is biased low; untruncated_* keep the days with "
            f"at least {self.horizon} days left, where the missing tail weighs at most "
            f"{self.gamma ** (self.horizon + 1):.3f}"
        )

    @property
    def untruncated(self) -> np.ndarray:
        """Boolean mask ``[T]`` of the days with at least `horizon` days left after them."""
        days_left = len(self.estimate) - 1 - np.arange(len(self.estimate))
        return days_left >= self.horizon

    def summary(self, *, nan_as_none: bool = False) -> dict[str, Any]:
        """Mean estimate, mean realized, mean and median bias (estimate − realized), share of days
        overestimated, over all days and over the untruncated days (``untruncated_*``; NaN when there
        are none). ``nan_as_none=True`` puts None in place of NaN, for JSON documents."""
        kept = self.untruncated
        numbers = {
            "gamma": self.gamma,
            "horizon": self.horizon,
            "days": len(self.estimate),
            **_bias_statistics(self.estimate, self.realized, prefix=""),
            "untruncated_days": int(kept.sum()),
            **_bias_statistics(self.estimate[kept], self.realized[kept], prefix="untruncated_"),
        }
        if nan_as_none:
            return {key: None if _is_nan(value) else value for key, value in numbers.items()}
        return numbers

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"OverestimationResult({self.agent!r}, {len(self.dates)} days {self.dates[0]}→{self.dates[-1]}, "
            f"mean estimate {s['mean_estimate']:+.3f}, mean realized {s['mean_realized']:+.3f}, "
            f"overestimated on {s['share_overestimated']:.0%} of days)"
        )

    def to_json(self, path: str | Path) -> Path:
        """Write the summary, the horizon note and the daily series (NaN as null) to `path`, atomically."""
        path = Path(path)
        document = {
            "agent": self.agent,
            "summary": self.summary(nan_as_none=True),
            "horizon_note": self.horizon_note,
            "dates": [str(day) for day in self.dates],
            **{
                name: [None if math.isnan(x) else x for x in getattr(self, name).tolist()]
                for name in ("estimate", "realized", "reward")
            },
        }
        text = json.dumps(document, indent=2, allow_nan=False)
        write_atomic(path, text)
        return path

    def plot(self, path: str | Path) -> Path:
        """Write a PNG of the estimate and the realized return over time, the mean bias in the title
        and the start of the truncated days marked; drawn on the Agg canvas (no window, no pyplot state)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        path, s = Path(path), self.summary()
        fig = Figure(figsize=(9, 4.2))
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        ax.plot(self.dates, self.estimate, label="critic estimate Q(s_t, a_t)")
        ax.plot(self.dates, self.realized, label=f"realized discounted return (γ = {self.gamma:g})")
        if s["untruncated_days"] < len(self.dates):
            ax.axvline(
                self.dates[s["untruncated_days"]], color="grey", linestyle=":", label="truncated from here"
            )
        ax.set_title(
            f"{self.agent}: mean bias {s['mean_bias']:+.3g} (untruncated days: {s['untruncated_mean_bias']:+.3g}), "
            f"overestimated on {s['share_overestimated']:.0%} of days",
            fontsize=10,
        )
        ax.set_ylabel("value (reward units)")
        ax.legend(fontsize=8)
        write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
        return path


def value_overestimation(
    agent: Any,
    panel: Panel,
    states: MarketStates,
    start: int,
    end: int,
    *,
    initial_cash: float,
    hmax: float,
    cost_bps: float,
    fill: str = "close",
) -> OverestimationResult:
    """Trade `agent`'s deterministic action from day index `start` to `end` (inclusive, the last day
    only marks to market) and compare its critic's estimate with the realized discounted return on
    each of the ``end - start`` decision days (see the module docstring).

    `states` must be the agent's market states of `panel`, day by day; `initial_cash` and `hmax`
    must be those the agent trained with (the observation divides cash by `initial_cash`)."""
    import torch

    from trustfolio.market.rollout import deterministic_rollout
    from trustfolio.market.simulator import Simulator, SimulatorConfig

    if not has_critic(agent):
        raise UserError(f"agent {agent.name} has no critic to diagnose")
    if not 0 <= start < end < panel.T:
        raise UserError(f"{panel.name}: need 0 <= start < end < {panel.T}, got [{start}, {end}]")
    if states.h.shape[:2] != (panel.T, panel.N) or not np.array_equal(states.dates, panel.dates):
        raise DataError(
            f"{panel.name}: the market states do not cover the panel's days and stocks one to one"
        )
    config = SimulatorConfig(
        initial_cash=initial_cash,
        hmax=hmax,
        cost_bps=cost_bps,
        fill=fill,
        order_mode=agent.order_mode,
        round_lots=False,
        reward_scale=agent.config.reward_scale,
    )
    sim = Simulator(panel, config, device=agent.device)
    market = torch.tensor(states.h.reshape(panel.T, -1), device=agent.device)  # [T, N·D], gathered by day
    path = deterministic_rollout(sim, market, lambda obs: agent.act(obs, deterministic=True), start, end,
                                 initial_cash)  # fmt: skip
    estimate = agent.critic_value(path.observations, path.actions).double().cpu().numpy()
    gamma = float(agent.config.gamma)
    return OverestimationResult(
        agent=agent.name,
        dates=np.array(panel.dates[start:end]),
        estimate=estimate,
        realized=discounted_returns(path.rewards, gamma),
        reward=path.rewards,
        gamma=gamma,
    )


def _bias_statistics(estimate: np.ndarray, realized: np.ndarray, prefix: str) -> dict[str, float]:
    """Mean estimate / realized, mean and median bias, share overestimated (all NaN for no days)."""
    names = ("mean_estimate", "mean_realized", "mean_bias", "median_bias", "share_overestimated")
    if len(estimate) == 0:
        return {prefix + name: math.nan for name in names}
    bias = estimate - realized
    values = (estimate.mean(), realized.mean(), bias.mean(), np.median(bias), (bias > 0).mean())
    return {prefix + name: float(value) for name, value in zip(names, values, strict=True)}


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


__all__ = [
    "OverestimationResult",
    "discounted_returns",
    "has_critic",
    "value_overestimation",
]
