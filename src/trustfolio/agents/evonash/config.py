"""`EvoNashConfig`: every switch of the EvoNash-MARL building blocks, with the paper's values as defaults.

Where the paper gives a value (Table IX, §III, §VI) the default is the paper's and the comment says
so ("paper"). Where the paper names a quantity but gives no value, the default is ours and the
comment says "ours". Where a reasonable reader could read the paper otherwise, the alternative is an
option and the comment names the paper's (or the literal) reading; docs/evonash.md lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustfolio.agents.base import AgentConfig
from trustfolio.errors import UserError

MODES = ("cross_section", "timing")
BENCHMARKS = ("auto", "index", "equal_weight")
REGIME_RETURNS = ("cumulative", "mean")
PENALTY_NORMS = ("portfolio", "per_asset")
META_STRATEGIES = ("average", "last")
PAYOFF_NORMALIZATIONS = ("none", "max")


@dataclass(frozen=True)
class EvoNashConfig(AgentConfig):
    """The EvoNash-MARL switches. Field groups follow the paper's sections."""

    # --- §III-A, paper-notes: what a signal is
    # "cross_section" (paper-notes: one score per asset, positions a vector) or "timing" (the literal
    # scalar reading: one exposure to the benchmark / the 1/N basket, i.e. N = 1).
    mode: str = "cross_section"
    # b_t: "auto" = the panel's index when it has one, else the 1/N basket (paper-notes); or force one.
    benchmark: str = "auto"

    # --- §III-C / §VI-B: features (trailing only) and regimes
    return_clip: float = 0.20  # paper §VI-A: daily returns clipped at ±20 % before training
    momentum_windows: tuple[int, ...] = (5, 21, 63)  # paper-notes: returns over 5/21/63 days
    volatility_windows: tuple[int, ...] = (21, 63)  # paper-notes: volatility 21/63
    volume_window: int = 63  # ours: trailing window of the log-volume z-score
    beta_window: int = 63  # ours: trailing beta to the benchmark
    breadth_window: int = 50  # paper-notes: share of assets above their 50-day mean
    moment_window: int = 63  # ours: skew / kurtosis / CVaR of benchmark returns
    tail_quantile: float = 0.05  # ours: the left tail of the trailing CVaR feature (and eq. 15-16's α)
    factor_lookback: int = 126  # paper-notes: momentum factor = top minus bottom tercile by 126-day return
    factor_fraction: float = 1.0 / 3.0  # paper-notes: terciles
    feature_clip: float = 5.0  # ours: standardized features clipped at ±5 (one bad tick cannot dominate)
    regime_window: int = 20  # paper §VI-B: 20-day market return and volatility
    # r̄_t in eq. 3: "cumulative" 20-day return (§VI-B's "20-day market return") or the "mean" daily
    # return (the bar in r̄_t); thresholds below are for the cumulative reading.
    regime_return: str = "cumulative"
    regime_bull: float = 0.02  # θ_bull (ours; the paper gives no value)
    regime_bear: float = -0.02  # θ_bear (ours)
    regime_shock: float = 1.5  # κ_shock (ours): σ_t > κ·σ̄_t
    regime_baseline_window: int = 252  # ours: σ̄_t = trailing mean of σ over a year (expanding before)
    # Eq. 3-4 do not say which label wins when a crash is both BEAR and SHOCK. True (ours): SHOCK first,
    # a volatility shock overrides the direction; False: the paper's listing order (BULL, BEAR, SHOCK).
    shock_first: bool = True

    # --- §III-D: population (eq. 5-9)
    population_size: int = 16  # paper Table IX
    temperature_floor: float = 0.15  # paper eq. 6
    risk_head: bool = True  # paper §VI-C: v21 has an active risk head
    leverage_min: float = 0.25  # ℓ^min (ours)
    leverage_max: float = 1.0  # ℓ^max (ours; 1 = no borrowing, paper-notes)
    long_only: bool = True  # paper §VI-C: long-only
    init_scale: float = 1.0  # ours: std of the initial weights times 1/sqrt(features)

    # --- §III-E: PnL (eq. 10) and overlays
    transaction_cost_bps: float = 3.0  # paper Table IX (c_tc = bps / 10000)
    impact_penalty: float = 0.0002  # λ_imp, paper Table IX
    capacity_penalty: float = 0.0001  # λ_cap, paper Table IX
    risk_penalty: float = 0.01  # λ_risk (ours)
    # "portfolio" (paper-notes: u_t = ||Δp||_1, |p| = ||p||_1, σ_t the benchmark's volatility) or
    # "per_asset" (Σ_i of the per-asset terms with each asset's own volatility).
    penalty_norm: str = "portfolio"
    max_gross: float = 1.0  # paper-notes: gross exposure capped at 1 (no borrowing)
    rebalance_every: int = 14  # paper §VI-C: 14-day rebalance interval
    smoothing: float = 0.5  # ours: p ← (1-α)·p + α·target on rebalance days (1 = no smoothing)
    vol_target: float = 0.15  # ours: annualized target of the benchmark-vol overlay (0 = off)
    vol_target_max_scale: float = 1.0  # ours: the overlay never levers up past 1 (no borrowing)
    tail_sigma: float = 3.0  # ours: a benchmark day below -3 σ is a tail day (0 = overlay off)
    tail_scale: float = 0.5  # ours: exposure multiplier after a tail day
    tail_cooldown: int = 5  # ours: days the deleveraging lasts after a tail day

    # --- §III-F: game layer (eq. 11-14)
    psro_iterations: int = 50  # paper Table IX
    psro_eta: float = 0.25  # paper Table IX
    # "average" (ours): the time-average of the MW iterates, the strategy §IV-B's no-regret guarantee
    # is about; "last": the literal last iterate m^(T) of eq. 12.
    meta_strategy: str = "average"
    # Eq. 11's A is in daily PnL units (|A_ij| ~ 1e-4): with η = 0.25 and 50 iterations m stays
    # within 1e-3 of uniform (measured, docs/evonash.md). "none" is the paper's literal A; "max"
    # divides A by max|A_ij| for eq. 12 only (payoffs bounded by G = 1, as §IV-B assumes).
    payoff_normalization: str = "none"

    # --- §III-G: utility, violation, fitness (eq. 15-18); λ's are ours unless noted
    periods_per_year: int = 252
    lambda_excess: float = 1.0
    lambda_down: float = 0.5
    lambda_drawdown: float = 1.0
    lambda_cvar: float = 10.0
    lambda_worst: float = 5.0
    lambda_violation: float = 10.0
    cvar_floor: float = -0.02  # c*_cvar: daily excess CVaR below this is a violation (ours)
    worst_day_floor: float = -0.05  # c*_worst: worst daily excess return below this (ours)
    lambda_diversity: float = 0.1
    lambda_league: float = 0.1
    beta_target: float = 0.55  # β*, paper Table IX
    lambda_beta: float = 0.25  # paper Table IX

    # --- §III-K, Table IX: evolution
    generations_per_round: int = 4  # paper
    tournament_rounds: int = 5  # paper: rounds of the training loop (not the selection tournament)
    elite_count: int = 4  # ours: agents kept unchanged each generation
    tournament_size: int = 3  # ours: entrants per selection tournament
    mutation_std: float = 0.1  # ours: Gaussian noise on weights and biases
    temperature_mutation_std: float = 0.1  # ours: noise on log τ

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        for key, allowed in (("mode", MODES), ("benchmark", BENCHMARKS), ("regime_return", REGIME_RETURNS),
                             ("penalty_norm", PENALTY_NORMS), ("meta_strategy", META_STRATEGIES),
                             ("payoff_normalization", PAYOFF_NORMALIZATIONS)):  # fmt: skip
            if getattr(self, key) not in allowed:
                raise UserError(f"{name}: {key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        object.__setattr__(self, "momentum_windows", tuple(int(w) for w in self.momentum_windows))
        object.__setattr__(self, "volatility_windows", tuple(int(w) for w in self.volatility_windows))
        self.check_whole_numbers(
            at_least_one=("volume_window", "beta_window", "breadth_window", "moment_window", "factor_lookback",
                          "regime_window", "regime_baseline_window", "population_size", "rebalance_every",
                          "psro_iterations", "generations_per_round", "tournament_rounds", "tournament_size",
                          "periods_per_year"),
            at_least_zero=("elite_count", "tail_cooldown"),
        )  # fmt: skip
        if min(self.momentum_windows + self.volatility_windows, default=1) < 2:
            raise UserError(f"{name}: momentum and volatility windows must be at least 2 days")
        if not 0 < self.return_clip <= 1:
            raise UserError(f"{name}: return_clip must be in (0, 1], got {self.return_clip}")
        if not 0 < self.factor_fraction <= 0.5 or not 0 < self.tail_quantile < 1:
            raise UserError(f"{name}: factor_fraction must be in (0, 0.5] and tail_quantile in (0, 1)")
        if not 0 <= self.leverage_min <= self.leverage_max:
            raise UserError(f"{name}: need 0 <= leverage_min <= leverage_max, "
                            f"got {self.leverage_min}, {self.leverage_max}")  # fmt: skip
        if not 0 < self.smoothing <= 1 or not 0 <= self.tail_scale <= 1:
            raise UserError(f"{name}: smoothing must be in (0, 1] and tail_scale in [0, 1]")
        if self.elite_count > self.population_size:
            raise UserError(f"{name}: elite_count {self.elite_count} exceeds population_size {self.population_size}")
        if self.temperature_floor <= 0 or self.psro_eta <= 0 or self.max_gross <= 0:
            raise UserError(f"{name}: temperature_floor, psro_eta and max_gross must be positive")
        if self.regime_bear > self.regime_bull:
            raise UserError(f"{name}: regime_bear {self.regime_bear} is above regime_bull {self.regime_bull}")
