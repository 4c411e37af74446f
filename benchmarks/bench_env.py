"""Simulator throughput against FinRL's `StockTradingEnv`, on the same panel, in the same process.

Measures portfolio-steps per second of `trustfolio.market.Simulator` at B = 1 and B = 1024
portfolios (uniform random share orders in [-1, 1], each portfolio from its own random start day)
and steps per second of FinRL's env stepped with uniform random actions on the same prices. Runs are
interleaved (FinRL, then each batch size, repeated) so that a change in machine load hits both
sides alike; medians over the runs are reported, with their ratios.

    python -m benchmarks.bench_env [--data ../shared/data/csi88] [--runs 5] [--threads N] [--dtype float32]
    trustfolio bench env            # the same, from the CLI

FinRL is a benchmark-only extra (`make bench` installs it with `--no-deps`). Its package
`__init__` imports a live-trading stack, so its env module is loaded by file path.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from trustfolio.data.panel import Panel
from trustfolio.errors import UserError
from trustfolio.market import Simulator, SimulatorConfig

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "csi88"
FINRL_ENV_FILE = Path("meta") / "env_stock_trading" / "env_stocktrading.py"


@dataclass
class EnvBenchmarkResult:
    """Throughput of every run: simulator portfolio-steps/s per batch size, FinRL steps/s."""

    dataset: str
    n_stocks: int
    n_days: int
    threads: int
    dtype: str
    runs: int
    simulator: dict[int, list[float]] = field(default_factory=dict)
    finrl: list[float] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)

    def medians(self) -> dict[str, float]:
        out = {f"simulator_B{b}": statistics.median(v) for b, v in self.simulator.items()}
        if self.finrl:
            out["finrl"] = statistics.median(self.finrl)
        return out

    def ratios(self) -> dict[int, float]:
        """Median simulator portfolio-steps/s over median FinRL steps/s, per batch size."""
        if not self.finrl:
            return {}
        finrl = statistics.median(self.finrl)
        return {b: statistics.median(v) / finrl for b, v in self.simulator.items()}

    def to_markdown(self) -> str:
        ratios = self.ratios()
        lines = [
            f"Panel `{self.dataset}`: {self.n_stocks} stocks, {self.n_days} days; simulator dtype "
            f"{self.dtype}, torch threads {self.threads}; medians of {self.runs} interleaved runs.",
            "",
            "| env | portfolio-steps/s (median) | runs | × FinRL |",
            "|---|---:|---|---:|",
        ]
        if self.finrl:
            lines.append(
                f"| FinRL `StockTradingEnv` | {statistics.median(self.finrl):,.1f} | {_runs(self.finrl)} | 1 |"
            )
        for b, values in self.simulator.items():
            ratio = f"{ratios[b]:,.0f}" if b in ratios else "–"
            lines.append(
                f"| trustfolio `Simulator`, B={b} | {statistics.median(values):,.0f} | {_runs(values)} | {ratio} |"
            )
        return "\n".join(lines)


def run_env_benchmark(
    panel: Panel,
    *,
    batch_sizes: tuple[int, ...] = (1, 1024),
    runs: int = 5,
    steps: dict[int, int] | None = None,
    finrl: bool = True,
    finrl_steps: int = 200,
    threads: int = 1,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
) -> EnvBenchmarkResult:
    """Time the simulator at each batch size and (optionally) FinRL's env, `runs` times each.

    `steps[B]` is the number of timed steps per run (default: 2000 for B = 1, 300 otherwise);
    every run is preceded by a few untimed warm-up steps. `threads` sets torch's intra-op threads for
    the duration. The default is 1, like FinRL: on a small machine shared with other processes, two
    threads on two cores made B = 1024 erratic (70k to 1.7M portfolio-steps/s between runs).
    """
    steps = {b: (steps or {}).get(b, 2000 if b == 1 else 300) for b in batch_sizes}
    if max(steps.values()) + 5 >= panel.T:
        raise UserError(f"the panel has {panel.T} days, too few for {max(steps.values())} steps per run")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    result = EnvBenchmarkResult(
        dataset=panel.name,
        n_stocks=panel.N,
        n_days=panel.T,
        threads=threads,
        dtype=str(dtype).replace("torch.", ""),
        runs=runs,
        simulator={b: [] for b in batch_sizes},
        machine=machine_facts(threads),
    )
    try:
        finrl_env = make_finrl_env(panel) if finrl else None
        rng = np.random.default_rng(seed)
        for _ in range(runs):
            if finrl_env is not None:
                result.finrl.append(time_finrl(finrl_env, finrl_steps, rng))
            for b in batch_sizes:
                result.simulator[b].append(time_simulator(panel, b, steps[b], dtype, rng))
    finally:
        torch.set_num_threads(previous_threads)
    return result


def time_simulator(
    panel: Panel, batch_size: int, steps: int, dtype: torch.dtype, rng: np.random.Generator
) -> float:
    """Portfolio-steps/s of one run: B portfolios from random start days, random share orders."""
    sim = Simulator(panel, SimulatorConfig(), dtype=dtype)
    warmup = 5
    starts = torch.as_tensor(rng.integers(0, panel.T - 1 - steps - warmup, batch_size))
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    # A pool of pre-drawn actions, cycled: drawing random numbers is the policy's cost, not the env's.
    # A list of tensors, as FinRL iterates over rows of an array: indexing a pool tensor would add
    # a torch op (~2-4 us) per step to the simulator's time.
    pool = torch.rand((64, batch_size, panel.N), generator=generator, dtype=dtype) * 2 - 1
    actions = list(pool.unbind(0))
    sim.reset(batch_size, start=starts if batch_size > 1 else int(starts[0]))
    for i in range(warmup):
        sim.step(actions[i])
    began = time.perf_counter()
    for i in range(steps):
        sim.step(actions[i % 64])
    return batch_size * steps / (time.perf_counter() - began)


def time_finrl(env: Any, steps: int, rng: np.random.Generator) -> float:
    """Steps/s of FinRL's env over one run of random actions from day 0."""
    env.reset()
    actions = rng.uniform(-1, 1, (steps, env.stock_dim)).astype(np.float32)
    began = time.perf_counter()
    for action in actions:
        env.step(action)
    return steps / (time.perf_counter() - began)


def finrl_frame(panel: Panel) -> tuple[pd.DataFrame, list[str]]:
    """FinRL's long DataFrame (`date, tic, close` + indicator columns), indexed by day number.

    `date` and `tic` are categorical: FinRL's step calls `df.tic.unique()` on the whole frame
    several times, and categoricals are the fastest pandas representation for that (measured on
    csi88: ~118 steps/s, against ~70 with pandas 3's default Arrow strings and ~33 with object
    strings), so FinRL is timed at its best.
    """
    from trustfolio.data.features import INDICATORS, compute_indicators

    indicators = np.nan_to_num(compute_indicators(panel))  # FinRL's own pipeline fills NaN with 0
    T, N = panel.T, panel.N
    frame = pd.DataFrame(
        {
            "date": pd.Categorical(np.repeat(panel.dates.astype(str), N)),
            "tic": pd.Categorical(np.tile(np.array(panel.tickers, dtype=object), T)),
            "close": panel.close.reshape(-1).astype(np.float64),
            **{name: indicators[:, :, k].reshape(-1).astype(np.float64) for k, name in enumerate(INDICATORS)},
        },
        index=np.repeat(np.arange(T), N),
    )
    return frame, list(INDICATORS)


def make_finrl_env(
    panel: Panel, hmax: int = 100, initial_amount: int = 1_000_000, cost: float = 0.001
) -> Any:
    """FinRL 0.3.7's `StockTradingEnv` on `panel`, with the simulator's defaults (hmax, cash, 10 bps)."""
    module = _load_finrl_env_module()
    frame, indicators = finrl_frame(panel)
    N = panel.N
    return module.StockTradingEnv(
        df=frame,
        stock_dim=N,
        hmax=hmax,
        initial_amount=initial_amount,
        num_stock_shares=[0] * N,
        buy_cost_pct=[cost] * N,
        sell_cost_pct=[cost] * N,
        reward_scaling=1.0,
        state_space=1 + 2 * N + len(indicators) * N,
        action_space=N,
        tech_indicator_list=indicators,
        print_verbosity=10**9,
    )


def _load_finrl_env_module() -> Any:
    spec = importlib.util.find_spec("finrl")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "FinRL is not installed: run `make bench` (installs finrl==0.3.7 --no-deps), or pass --no-finrl"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / FINRL_ENV_FILE
    module_spec = importlib.util.spec_from_file_location("finrl_env_stocktrading", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except ImportError as exc:  # its module imports stable_baselines3
        raise UserError(
            f"FinRL's env module needs {exc.name}: run `make bench` (installs the bench extra)"
        ) from exc
    return module


def machine_facts(threads: int) -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": threads,
        "python": platform.python_version(),
        "date": date.today().isoformat(),
    }


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:,.0f}" if v >= 100 else f"{v:.1f}" for v in values)


def main(
    data_dir: Path | str = DEFAULT_DATA,
    runs: int = 5,
    threads: int = 1,
    dtype: str = "float64",
    finrl: bool = True,
    batch_sizes: tuple[int, ...] = (1, 1024),
) -> EnvBenchmarkResult:
    """Load the StockFormer-format panel at `data_dir`, run the benchmark, print a Markdown table."""
    from trustfolio.data.loaders import load_stockformer

    if not Path(data_dir).is_dir():
        raise UserError(f"{data_dir}: no such directory (expected a StockFormer-format directory like csi88)")
    panel = load_stockformer(data_dir)
    if not panel.is_clean:
        from trustfolio.data.cleaning import clean

        panel, _ = clean(panel)
    result = run_env_benchmark(
        panel, batch_sizes=batch_sizes, runs=runs, finrl=finrl, threads=threads, dtype=getattr(torch, dtype)
    )
    facts = result.machine
    print(
        f"{facts['date']}: {facts['cpu']} ({facts['cores']} cores), torch {facts['torch']}, "
        f"{facts['threads']} thread(s), Python {facts['python']}"
    )
    print(result.to_markdown())
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="StockFormer-format directory")
    parser.add_argument("--runs", type=int, default=5, help="repetitions (medians are reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 1024])
    parser.add_argument("--no-finrl", action="store_true", help="time the simulator only")
    args = parser.parse_args()
    main(args.data, args.runs, args.threads, args.dtype, not args.no_finrl, tuple(args.batch_sizes))
