"""One deterministic rollout: a policy trades a simulator's portfolios day by day on a fixed market path.

The evaluation callback of the training loops (validation metrics), the value-overestimation
diagnostic (critic estimates along the trajectory) and anything else that replays a policy over a
span of days use this loop, so they all see the same observations (`trustfolio.market.observation`)
and the same fills.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from trustfolio.market.observation import balance_features, observation
from trustfolio.market.simulator import Simulator


def observe(sim: Simulator, market: torch.Tensor, initial_cash: float) -> torch.Tensor:
    """``[B, obs_dim]``: the observation of each of `sim`'s portfolios today (`market` is ``h``
    flattened per day, ``[T, N·D]``, gathered by each portfolio's day)."""
    balance = balance_features(sim.state.cash, sim.weights(), initial_cash)
    return observation(market[sim.market_index()], balance)


@dataclass
class Rollout:
    """What one portfolio did on ``L`` decision days."""

    values: np.ndarray  # [L + 1]: portfolio value before the first decision, then after each day
    rewards: np.ndarray  # [L]: the simulator's rewards (daily return x its reward_scale)
    turnover: np.ndarray  # [L]: traded value / (2 x value before the trade)
    costs: np.ndarray  # [L]: transaction costs paid
    observations: torch.Tensor  # [L, obs_dim]
    actions: torch.Tensor  # [L, N]


@torch.no_grad()
def deterministic_rollout(
    sim: Simulator,
    market: torch.Tensor,
    act: Callable[[torch.Tensor], torch.Tensor],
    first: int,
    last: int,
    initial_cash: float,
) -> Rollout:
    """Trade ``act(obs)`` for one portfolio from day index `first` to `last` (the last day only marks
    to market: ``last - first`` decisions) on `sim` (its config decides orders, costs and fills)."""
    sim.reset(1, start=first, end=last)
    days = last - first
    values, rewards = np.empty(days + 1), np.empty(days)
    turnover, costs = np.empty(days), np.empty(days)
    observations, actions = [], []
    values[0] = float(sim.state.value[0])
    for i in range(days):
        obs = observe(sim, market, initial_cash)
        action = act(obs)
        result = sim.step(action)
        values[i + 1] = float(result.value[0])
        rewards[i] = float(result.reward[0])
        turnover[i] = float(result.traded_value[0]) / (2.0 * values[i])
        costs[i] = float(result.costs[0])
        observations.append(obs[0])
        actions.append(action[0])
    width = market.shape[1] + sim.N + 1
    return Rollout(
        values=values,
        rewards=rewards,
        turnover=turnover,
        costs=costs,
        observations=torch.stack(observations) if observations else torch.empty(0, width),
        actions=torch.stack(actions) if actions else torch.empty(0, sim.N),
    )


__all__ = ["Rollout", "deterministic_rollout", "observe"]
