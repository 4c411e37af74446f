"""MetaTrader's training subsets: sliced, transformed market data, encoded once, and per-subset replay.

A **subset** ``D_{m,n}`` is a slice of ``length`` (T = 64) trading days of the training data, starting
on the m-th of ``M`` evenly strided days, under transform ``n`` (0 = the original, then F1, F2, F3 of
`trustfolio.market.transforms`). For every subset this module precomputes, in one batched pass of
the frozen market encoder:

- ``states[s, k]`` — the market state ``h`` of slice day k (flattened ``N·D``);
- ``close[s, k]`` — the close prices the simulator trades at;
- ``alt_states[s, k, a]`` / ``alt_close[s, k, a]`` — the worst-case target's simulated next days
  (eq. 5, paper-notes decision): the day after slice day k replaced by transform ``a`` applied to
  that day only — F1 inverts its top risers' growth, F2 steps back (the next day is day k-1), F3
  steps ``delta`` days ahead (clamped to the slice's last day).

**Encoder inputs of a transformed day** (a decision of ours, documented in docs/metatrader.md):
normalized OHLCV and the five candle features are recomputed from the transformed prices with the
scales fitted on the real training window; the indicator columns and the relational rows
(covariance ‖ indicators) are those of the real day the row comes from. On the original path
(n = 0) this reproduces the real timeline's states exactly (tested).

Per-subset replay (`SubsetReplay`) trades the subsets in the `Simulator` (on a `MarketPath` of the
subsets' close paths laid end to end) and stores, per transition, what eq. 5 needs to re-price the
step under another next day: the balance after the trade (cash, holdings) and the value before it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from trustfolio.data.features import FIELDS, INDICATORS, FeatureSet
from trustfolio.encoders.inputs import CANDLE_COLUMNS, EncoderInputs, scale_candles
from trustfolio.encoders.pretrain import FittedEncoder
from trustfolio.errors import UserError
from trustfolio.market.observation import balance_features, observation
from trustfolio.market.path import MarketPath
from trustfolio.market.simulator import BalanceState, Simulator, SimulatorConfig
from trustfolio.market.transforms import (
    CLOSE,
    TRANSFORMS,
    TransformParams,
    invert_next_day,
    subset_starts,
    transform_path,
)
from trustfolio.progress import track

N_FIELDS, N_INDICATORS = len(FIELDS), len(INDICATORS)


# ---------------------------------------------------------------------------------------- encoder rows
def temporal_rows(
    path: np.ndarray, previous: np.ndarray, source_rows: np.ndarray, inputs: EncoderInputs,
    features: FeatureSet,
) -> np.ndarray:  # fmt: skip
    """The encoder's per-day input rows ``[L, N, 18]`` for OHLCV rows `path` ``[L, N, 5]``.

    `previous` ``[L, N, 5]`` holds the OHLCV row before each row (its close and volume make the
    candle features); `source_rows` are the real days the rows come from (their indicators are reused).
    """
    norm = features.normalizer
    prices = (path[..., :4] - norm.price_min[:, None]) / norm.price_scale[:, None]
    volume = (path[..., 4:] - norm.volume_min[:, None]) / norm.volume_scale[:, None]
    ohlcv = np.concatenate([prices, volume], axis=-1)
    ohlcv = np.where(np.isfinite(ohlcv), ohlcv, 0.0).astype(np.float32)
    indicators = inputs.temporal[source_rows][..., N_FIELDS : N_FIELDS + N_INDICATORS]
    candles = np.empty(path.shape[:-1] + (len(CANDLE_COLUMNS),), dtype=np.float64)
    candles[..., :4] = path[..., :4] / previous[..., CLOSE, None] - 1.0
    candles[..., 4] = np.log1p(np.maximum(path[..., 4], 0.0)) - np.log1p(np.maximum(previous[..., 4], 0.0))
    candles = scale_candles(candles, inputs.candle_scale).astype(np.float32)
    return np.concatenate([ohlcv, indicators, candles], axis=-1)


@torch.no_grad()
def encode_windows(fitted: FittedEncoder, windows: torch.Tensor, relational: torch.Tensor) -> torch.Tensor:
    """States ``[B, N·D]`` for look-back windows ``[B, N, L, F]`` and relational rows ``[B, N, N+8]``."""
    model = fitted.model
    relat, _ = model.relat(relational)
    long, _ = model.long(windows)
    short, _ = model.short(windows)
    return torch.cat([relat, long, short], dim=-1).flatten(start_dim=1)


# ---------------------------------------------------------------------------------------- the subsets
@dataclass(frozen=True)
class SubsetSpec:
    """How subsets are cut: ``count`` slices of ``length`` days per transform, inside days
    ``[first, last]`` (real day indices of the panel)."""

    first: int
    last: int
    count: int
    length: int
    transforms: tuple[str, ...]  # which of F1, F2, F3 expand the originals
    alternatives: tuple[str, ...]  # simulated next days of the worst-case target (eq. 5)
    params: TransformParams = TransformParams()


@dataclass(eq=False)
class SubsetMarket:
    """Every subset's market states, prices and simulated next days (see the module docstring)."""

    states: torch.Tensor  # float32 [S, T, N·D]
    close: torch.Tensor  # float64 [S, T, N]
    alt_states: torch.Tensor  # float32 [S, T-1, A, N·D]
    alt_close: torch.Tensor  # float64 [S, T-1, A, N]
    transform: np.ndarray  # int [S]: 0 original, 1..3 = F1..F3
    start_day: np.ndarray  # int [S]: real day index where the original slice starts
    alternatives: tuple[str, ...]

    @property
    def count(self) -> int:
        return self.states.shape[0]

    @property
    def length(self) -> int:
        return self.states.shape[1]


def build_subsets(
    spec: SubsetSpec,
    ohlcv: np.ndarray,
    fitted: FittedEncoder,
    inputs: EncoderInputs,
    features: FeatureSet,
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> SubsetMarket:
    """Cut, transform and encode every subset of `spec` (``ohlcv`` is the panel's ``[T, N, 5]``).

    Only days ``<= spec.last`` are read: the rows after it are cut off before any transform runs.
    """
    unknown = sorted(set(spec.transforms + spec.alternatives) - set(TRANSFORMS))
    if unknown:
        raise UserError(f"unknown transform(s) {', '.join(unknown)}; choose from {', '.join(TRANSFORMS)}")
    lookback = fitted.config.lookback
    context = lookback  # rows before the slice: a full window for day 0 and one more for F2's step back
    history = np.asarray(ohlcv[: spec.last + 1], dtype=np.float64)  # the future is never read
    starts = subset_starts(spec.first, spec.last, spec.count, spec.length, spec.transforms, context,
                           spec.params.delta)  # fmt: skip
    jobs = [(n, int(s)) for n, name in enumerate(("F0", *spec.transforms)) for s in starts]
    T, A = spec.length, len(spec.alternatives)
    states, close, alt_states, alt_close = [], [], [], []
    relational = torch.from_numpy(inputs.relational)
    for n, start in track(jobs, "encoding MetaTrader's subsets", unit="subsets", enabled=progress):
        name = ("F0", *spec.transforms)[n]
        rows, path = transform_path(name, history, start, T, context, spec.params)
        # row 0 has no previous row in the path; it is context only and never inside a window
        previous = np.concatenate([path[:1], path[:-1]])
        temporal = torch.from_numpy(temporal_rows(path, previous, rows, inputs, features))
        slice_positions = np.arange(context, context + T)
        windows = _windows(temporal, slice_positions, lookback)
        states.append(encode_windows(fitted, windows, relational[rows[slice_positions]]))
        close.append(torch.from_numpy(path[slice_positions, :, CLOSE]))
        # The simulated next days of each transition k -> k+1 of the slice.
        if A:
            k = slice_positions[:-1]
            alt_paths, alt_sources = _alternative_rows(spec, path, rows, k)
            alt_previous = np.broadcast_to(path[k][:, None], alt_paths.shape)
            alt_temporal = torch.from_numpy(
                temporal_rows(alt_paths, alt_previous, alt_sources, inputs, features)
            )  # [T-1, A, N, F]
            history_windows = _windows(temporal, k, lookback - 1)  # [T-1, N, L-1, F]
            windows = torch.cat(
                [history_windows.unsqueeze(1).expand(-1, A, -1, -1, -1),
                 alt_temporal.unsqueeze(3)], dim=3)  # fmt: skip
            alt_rel = relational[torch.from_numpy(alt_sources.reshape(-1))]
            encoded = encode_windows(fitted, windows.flatten(0, 1), alt_rel)
            alt_states.append(encoded.reshape(len(k), A, -1))
            alt_close.append(torch.from_numpy(alt_paths[..., CLOSE]))
    S = len(jobs)
    device = torch.device(device)
    if not A:
        d = states[0].shape[-1]
        alt_states = [torch.zeros(T - 1, 0, d)] * S
        alt_close = [torch.zeros(T - 1, 0, history.shape[1], dtype=torch.float64)] * S
    return SubsetMarket(
        states=torch.stack(states).to(device),
        close=torch.stack(close).to(device),
        alt_states=torch.stack(alt_states).to(device),
        alt_close=torch.stack(alt_close).to(device),
        transform=np.array([n for n, _ in jobs]),
        start_day=np.array([s for _, s in jobs]),
        alternatives=spec.alternatives,
    )


def _windows(temporal: torch.Tensor, ends: np.ndarray, lookback: int) -> torch.Tensor:
    """``[len(ends), N, lookback, F]``: rows ``end-lookback+1 .. end`` of `temporal` ``[L, N, F]``."""
    rows = torch.from_numpy(np.asarray(ends))[:, None] + torch.arange(-lookback + 1, 1)[None, :]
    return temporal[rows].permute(0, 2, 1, 3)


def _alternative_rows(spec: SubsetSpec, path: np.ndarray, rows: np.ndarray, k: np.ndarray):
    """For transitions from path rows `k`: the simulated next OHLCV rows ``[len(k), A, N, 5]`` and the
    real days their indicators come from ``[len(k), A]``."""
    last = len(path) - 1
    out = np.empty((len(k), len(spec.alternatives), *path.shape[1:]))
    sources = np.empty((len(k), len(spec.alternatives)), dtype=np.int64)
    for a, name in enumerate(spec.alternatives):
        if name == "F1":  # the real next day with its top risers' growth inverted
            out[:, a] = invert_next_day(path[k, :, CLOSE], path[k + 1], spec.params.alpha)
            sources[:, a] = rows[k + 1]
        else:  # F2: one day back; F3: delta days ahead (clamped to the path's end)
            step = np.minimum(k + spec.params.delta, last) if name == "F3" else k - 1
            out[:, a] = path[step]
            sources[:, a] = rows[step]
    return out, sources


# ---------------------------------------------------------------------------------------- rollouts & replay
@dataclass
class SubsetBatch:
    """K batches of B transitions, one batch per sampled subset, with what eq. 5 needs."""

    obs: torch.Tensor  # [K, B, obs_dim]
    action: torch.Tensor  # [K, B, N]
    reward: torch.Tensor  # [K, B]
    next_obs: torch.Tensor  # [K, B, obs_dim]
    alt_reward: torch.Tensor  # [K, B, A]
    alt_next_obs: torch.Tensor  # [K, B, A, obs_dim]


class SubsetReplay:
    """One ring buffer of ``capacity`` transitions per subset, with the rollouts that fill them.

    Portfolios trade whole slices (day 0 to T-1) in lockstep, each on its own subset, in one
    `Simulator` on the subsets' close paths laid end to end: slice day k of subset s is day
    ``s·T + k`` of that path, and each portfolio's start and end days keep it inside its subset.
    Orders fill at the close, in share mode, without lots (as in `trustfolio.agents.off_policy`);
    `sim` gives the cash, ``hmax`` and costs.
    """

    def __init__(self, market: SubsetMarket, capacity: int, *, sim: SimulatorConfig,
                 reward_scale: float) -> None:  # fmt: skip
        S, T, N = market.close.shape
        self.market, self.capacity, self.device = market, int(capacity), market.states.device
        self.initial_cash, self.reward_scale = sim.initial_cash, reward_scale
        path = MarketPath.from_arrays(market.close.reshape(S * T, N), name="MetaTrader's subsets")
        config = replace(sim, fill="close", order_mode="shares", round_lots=False, reward_scale=reward_scale)
        self.simulator = Simulator(path, config, device=self.device)
        zeros = lambda *shape, dtype=torch.float32: torch.zeros(*shape, dtype=dtype, device=self.device)  # noqa: E731
        self.day = zeros(S, self.capacity, dtype=torch.long)  # slice day k of the transition k -> k+1
        self.balance = zeros(S, self.capacity, N + 1)
        self.action = zeros(S, self.capacity, N)
        self.reward = zeros(S, self.capacity)
        self.next_balance = zeros(S, self.capacity, N + 1)
        self.cash_after = zeros(S, self.capacity, dtype=torch.float64)  # after the trade at close k
        self.holdings_after = zeros(S, self.capacity, N, dtype=torch.float64)
        self.value_before = zeros(S, self.capacity, dtype=torch.float64)
        self.position = torch.zeros(S, dtype=torch.long, device=self.device)
        self.size = torch.zeros(S, dtype=torch.long, device=self.device)
        # the portfolios currently trading: their subsets and slice day (their balance is the simulator's)
        self.subset = torch.zeros(0, dtype=torch.long, device=self.device)
        self.k = 0
        self.last_return = float("nan")  # mean scaled return of the last finished slices
        self._episode_return = torch.zeros(0, dtype=torch.float64, device=self.device)

    # ------------------------------------------------------------------ rollouts
    def start(self, subsets: torch.Tensor) -> None:
        """New portfolios (all cash) at day 0 of each of `subsets`."""
        self.subset = subsets.to(self.device)
        self.k = 0
        first_day = self.subset * self.market.length
        self.simulator.reset(start=first_day, end=first_day + self.market.length - 1)
        self._episode_return = torch.zeros(len(subsets), dtype=torch.float64, device=self.device)

    def observation(self) -> torch.Tensor:
        """``[P, obs_dim]``: market state of today ‖ balance features of each trading portfolio."""
        return observation(self.market.states[self.subset, self.k], self._balance())

    def _balance(self) -> torch.Tensor:
        return balance_features(self.simulator.state.cash, self.simulator.weights(), self.initial_cash)

    def step(self, action: torch.Tensor) -> bool:
        """Trade `action` ``[P, N]`` at today's close, store the transitions, move to tomorrow.
        Returns True when the slices are finished (call `start` again)."""
        balance, value = self._balance(), self.simulator.state.value
        result = self.simulator.step(action)
        self._store(balance, action, result.reward, self._balance(), result.state.cash, result.state.holdings,
                    value)  # fmt: skip
        self._episode_return += result.reward
        self.k += 1
        if self.k == self.market.length - 1:
            self.last_return = float(self._episode_return.mean())
            return True
        return False

    def _store(self, balance, action, reward, next_balance, cash, holdings, value) -> None:
        s = self.subset
        # several portfolios may trade the same subset: give each its own row
        order = torch.argsort(s, stable=True)
        s_sorted = s[order]
        rank = torch.arange(len(s), device=self.device) - torch.searchsorted(s_sorted, s_sorted)
        offset = torch.empty_like(rank)
        offset[order] = rank
        rows = (self.position[s] + offset) % self.capacity
        self.day[s, rows] = self.k
        self.balance[s, rows] = balance
        self.action[s, rows] = action.float()
        self.reward[s, rows] = reward.float()
        self.next_balance[s, rows] = next_balance
        self.cash_after[s, rows] = cash
        self.holdings_after[s, rows] = holdings
        self.value_before[s, rows] = value
        added = torch.bincount(s, minlength=len(self.position))
        self.position = (self.position + added) % self.capacity
        self.size = torch.clamp(self.size + added, max=self.capacity)

    # ------------------------------------------------------------------ sampling
    def sample(self, subsets: torch.Tensor, batch_size: int, rng: np.random.Generator) -> SubsetBatch:
        """B transitions uniformly from each subset of `subsets` ``[K]`` (each must hold some)."""
        sizes = self.size[subsets].cpu().numpy()
        if (sizes == 0).any():
            raise RuntimeError("sampling from an empty subset buffer (fill every subset first)")
        rows = torch.from_numpy((rng.random((len(subsets), batch_size)) * sizes[:, None]).astype(np.int64))
        s = subsets[:, None].expand(-1, batch_size)
        k = self.day[s, rows]
        market = self.market
        obs = observation(market.states[s, k], self.balance[s, rows])
        next_obs = observation(market.states[s, k + 1], self.next_balance[s, rows])
        # eq. 5: the same trade, re-priced at each simulated next day
        alt_close = market.alt_close[s, k]  # [K, B, A, N]
        cash, holdings = self.cash_after[s, rows][..., None], self.holdings_after[s, rows][..., None, :]
        alt_value = cash + (holdings * alt_close).sum(-1)  # [K, B, A]
        alt_reward = (alt_value / self.value_before[s, rows][..., None] - 1.0) * self.reward_scale
        alt_balance = balance_features(cash.expand_as(alt_value), holdings * alt_close / alt_value[..., None],
                                  self.initial_cash)  # fmt: skip
        alt_next_obs = observation(market.alt_states[s, k], alt_balance)
        return SubsetBatch(
            obs=obs,
            action=self.action[s, rows],
            reward=self.reward[s, rows],
            next_obs=next_obs,
            alt_reward=alt_reward.float(),
            alt_next_obs=alt_next_obs,
        )

    # ------------------------------------------------------------------ checkpoints
    _STATE = ("day", "balance", "action", "reward", "next_balance", "cash_after", "holdings_after",
              "value_before", "position", "size", "subset", "_episode_return")  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """Buffers and rollouts (call after `start`: the trading portfolios' balance is part of it)."""
        balance = self.simulator.state
        return {"k": self.k, "last_return": self.last_return,
                **{name: getattr(self, name).clone() for name in self._STATE},
                "cash": balance.cash.clone(), "holdings": balance.holdings.clone(),
                "value": balance.value.clone()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.k, self.last_return = int(state["k"]), float(state["last_return"])
        for name in self._STATE:
            setattr(self, name, state[name].to(self.device))
        first_day = self.subset * self.market.length
        saved = BalanceState(cash=state["cash"], holdings=state["holdings"], t=first_day + self.k,
                             value=state["value"])  # fmt: skip
        self.simulator.restore(saved, end=first_day + self.market.length - 1)


__all__ = [
    "SubsetBatch",
    "SubsetMarket",
    "SubsetReplay",
    "SubsetSpec",
    "build_subsets",
    "encode_windows",
    "temporal_rows",
]
