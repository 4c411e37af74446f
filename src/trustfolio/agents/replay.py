"""Replay of off-policy transitions: the `Batch` an algorithm's `update` reads and the `ReplayBuffer`.

The buffer stores **day indices** and balance features, never copies of the market state: ``h[t]``
and ``h[t+1]`` are gathered from one precomputed tensor when a batch is sampled. Episodes end by a
time limit, not by a terminal state, so every transition bootstraps (no "done" flag).

An algorithm file imports this module (for `Batch`), never a training loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trustfolio.market.observation import observation


# ---------------------------------------------------------------------------------------- replay
@dataclass
class Batch:
    """Transitions ``(s, a, r, s')`` with observations already assembled, plus the day of ``s``."""

    obs: torch.Tensor  # [b, obs_dim]
    action: torch.Tensor  # [b, N]
    reward: torch.Tensor  # [b]
    next_obs: torch.Tensor  # [b, obs_dim]
    day: torch.Tensor  # LongTensor [b]; s' is day + 1


class ReplayBuffer:
    """A ring buffer of transitions as ``(day, balance, action, reward, next balance)`` rows."""

    def __init__(self, capacity: int, n_stocks: int, device: torch.device) -> None:
        self.capacity, self.device = int(capacity), device
        self.day = torch.zeros(self.capacity, dtype=torch.long, device=device)
        self.balance = torch.zeros(self.capacity, n_stocks + 1, device=device)
        self.action = torch.zeros(self.capacity, n_stocks, device=device)
        self.reward = torch.zeros(self.capacity, device=device)
        self.next_balance = torch.zeros(self.capacity, n_stocks + 1, device=device)
        self.position = 0  # where the next row goes
        self.size = 0

    def add(self, day, balance, action, reward, next_balance) -> None:
        """Append B rows (overwriting the oldest once full)."""
        rows = (self.position + torch.arange(day.shape[0], device=self.device)) % self.capacity
        self.day[rows] = day
        self.balance[rows] = balance
        self.action[rows] = action.float()
        self.reward[rows] = reward.float()
        self.next_balance[rows] = next_balance
        self.position = (self.position + day.shape[0]) % self.capacity
        self.size = min(self.size + day.shape[0], self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator, market: torch.Tensor) -> Batch:
        """`batch_size` rows drawn uniformly (with replacement); market states gathered by day."""
        rows = torch.from_numpy(rng.integers(0, self.size, size=batch_size)).to(self.device)
        day = self.day[rows]
        return Batch(
            obs=observation(market[day], self.balance[rows]),
            action=self.action[rows],
            reward=self.reward[rows],
            next_obs=observation(market[day + 1], self.next_balance[rows]),
            day=day,
        )

    def state_dict(self) -> dict[str, Any]:
        kept = slice(0, self.size)
        tensors = {
            name: getattr(self, name)[kept].clone()
            for name in ("day", "balance", "action", "reward", "next_balance")
        }
        return {"position": self.position, "size": self.size, **tensors}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position, self.size = int(state["position"]), int(state["size"])
        for name in ("day", "balance", "action", "reward", "next_balance"):
            getattr(self, name)[: self.size] = state[name]


__all__ = ["Batch", "ReplayBuffer"]
