"""A Gymnasium environment over one portfolio of the batched `Simulator`.

Observation: the one the agents read (`trustfolio.market.observation`), a flat float32 Box

    obs_t = [ h[t] flattened (N·D) ‖ cash_t / initial_cash ‖ w_t (N) ]

where `h[t]` `[N, D]` is the action-free market state at the close of day t (the caller's
`market_states[t]`, or the default features below) and `w_t = holdings · close[t] / value` the
portfolio weights. An agent trained on this env (e.g. with Stable-Baselines3) therefore sees exactly
what trustfolio's own agents see.

Action: `"shares"` mode, a Box in [-1, 1]^N (times `hmax` shares per stock); `"weights"` mode, a Box
in [0, 1]^N of target weights, divided by their sum when it exceeds 1 (the rest is cash).

An episode runs from its start day to its end day; reaching the end of the data window is a time
limit, not a terminal state of the market, so it is reported as `truncated=True`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from trustfolio.data.panel import Panel
from trustfolio.errors import DataError, UserError
from trustfolio.market.observation import balance_features, observation, observation_dim
from trustfolio.market.simulator import Simulator, SimulatorConfig

# Look-backs (trading days) of the default market features.
DEFAULT_LOOKBACKS = (1, 5, 20, 60)


def default_market_features(panel: Panel, lookbacks: tuple[int, ...] = DEFAULT_LOOKBACKS) -> np.ndarray:
    """Trailing log price ratios `log(close[t] / close[t-k])` per stock, `float32[T, N, len(lookbacks)]`.

    Only past closes are used (no look-ahead); for the first days, where `t-k` is before the panel,
    the ratio is taken to the first close instead.
    """
    log_close = np.log(np.asarray(panel.close, dtype=np.float64))
    days = np.arange(panel.T)
    columns = [log_close - log_close[np.maximum(days - k, 0)] for k in lookbacks]
    return np.stack(columns, axis=-1).astype(np.float32)


class TradingEnv(gym.Env):
    """One portfolio trading `panel` between `start` and `end` (dates, or int day indices).

    With `random_start=True`, `reset(seed=...)` draws the start day uniformly from the days that
    leave a full episode (`episode_length` steps, or at least one step when it is None); otherwise
    every episode starts at `start`.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        panel: Panel,
        market_states: np.ndarray | None = None,
        config: SimulatorConfig = SimulatorConfig(),  # noqa: B008 - frozen, hence a safe default
        start: Any = None,
        end: Any = None,
        *,
        random_start: bool = False,
        episode_length: int | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.panel = panel
        self.config = config
        self.simulator = Simulator(panel, config, dtype=dtype)
        self.first_day, self.last_day = _day_range(panel, start, end)
        if self.last_day <= self.first_day:
            raise UserError(f"TradingEnv: the window {start}..{end} holds fewer than 2 trading days")
        if episode_length is not None and not 1 <= episode_length <= self.last_day - self.first_day:
            raise UserError(
                f"TradingEnv: episode_length must be in [1, {self.last_day - self.first_day}] for this "
                f"window, got {episode_length}"
            )
        self.random_start = random_start
        self.episode_length = episode_length

        if market_states is None:
            market_states = default_market_features(panel)
        market_states = np.asarray(market_states, dtype=np.float32)
        if market_states.ndim != 3 or market_states.shape[:2] != (panel.T, panel.N):
            raise DataError(
                f"TradingEnv: market_states has shape {market_states.shape}, expected "
                f"({panel.T}, {panel.N}, D) to match the panel"
            )
        window = market_states[self.first_day : self.last_day + 1]
        if not np.isfinite(window).all():
            bad_day = self.first_day + int(np.argwhere(~np.isfinite(window))[0][0])
            raise DataError(
                f"TradingEnv: market_states has NaN/inf on {panel.dates[bad_day]} inside the trading "
                "window; start the window after the features' warm-up period"
            )
        # h[t] flattened once (a copy: the caller's array may be read-only or change later).
        self.market_rows = torch.from_numpy(market_states.reshape(panel.T, -1).copy())

        N, D = panel.N, market_states.shape[2]
        # Market features are unbounded; the cash share is >= 0 (no borrowing) and each weight is in
        # [0, 1] (no shorting, no leverage).
        low = np.full(observation_dim(N, D), -np.inf, dtype=np.float32)
        high = np.full(observation_dim(N, D), np.inf, dtype=np.float32)
        low[N * D :], high[N * D + 1 :] = 0.0, 1.0
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        low = -1.0 if config.order_mode == "shares" else 0.0
        self.action_space = spaces.Box(low, 1.0, shape=(N,), dtype=np.float32)
        self._day = self.first_day

    # ------------------------------------------------------------------ gymnasium API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        start, end = self._episode_bounds()
        self.simulator.reset(1, start=start, end=end)
        self._day = start
        return self._observation(), self._info(costs=0.0, traded_value=0.0)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64).reshape(1, self.panel.N)
        if self.config.order_mode == "weights":
            action = np.clip(action, 0.0, 1.0)
            action = action / max(1.0, float(action.sum()))
        result = self.simulator.step(torch.from_numpy(action))
        self._day += 1
        truncated = bool(result.done[0])
        info = self._info(costs=float(result.costs[0]), traded_value=float(result.traded_value[0]))
        return self._observation(), float(result.reward[0]), False, truncated, info

    # ------------------------------------------------------------------ helpers
    def _episode_bounds(self) -> tuple[int, int]:
        length = self.episode_length
        if self.random_start:
            latest_start = self.last_day - (length or 1)
            start = int(self.np_random.integers(self.first_day, latest_start + 1))
        else:
            start = self.first_day
        end = self.last_day if length is None else start + length
        return start, end

    def _observation(self) -> np.ndarray:
        state = self.simulator.state
        balance = balance_features(state.cash, self.simulator.weights(), self.config.initial_cash)
        return observation(self.market_rows[self._day].unsqueeze(0), balance)[0].numpy()

    def _info(self, costs: float, traded_value: float) -> dict[str, Any]:
        state = self.simulator.state
        return {
            "day": self._day,
            "date": self.panel.dates[self._day],
            "value": float(state.value[0]),
            "costs": costs,
            "traded_value": traded_value,
        }


def _day_range(panel: Panel, start: Any, end: Any) -> tuple[int, int]:
    """First and last day index (inclusive) of the window; ints are day indices, others dates."""
    first = _day_of(panel, start, default=0, side="left")
    last = _day_of(panel, end, default=panel.T - 1, side="right")
    if not 0 <= first <= last <= panel.T - 1:
        raise UserError(f"TradingEnv: need 0 <= start <= end <= {panel.T - 1}, got {first}..{last}")
    return first, last


def _day_of(panel: Panel, value: Any, default: int, side: str) -> int:
    if value is None:
        return default
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    return panel.index_of(value, side)
