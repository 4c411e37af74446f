"""Helpers shared by tests: small synthetic panels, garbage-after-t panels, decision recorders
(import as `from synthetic import ...`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from trustfolio.data import FIELDS, Calendar, Panel


def panel_from_prices(close, open_=None, lot_size: int = 1) -> Panel:
    """A panel from close (and open) price rows on consecutive days; high/low bracket them."""
    close = np.asarray(close, dtype=np.float32)
    open_ = close if open_ is None else np.asarray(open_, dtype=np.float32)
    T, N = close.shape
    return Panel(
        dates=np.datetime64("2024-01-01") + np.arange(T),
        tickers=tuple(f"S{i}" for i in range(N)),
        open=open_,
        high=np.maximum(open_, close),
        low=np.minimum(open_, close),
        close=close,
        volume=np.ones((T, N), dtype=np.float32),
        calendar=Calendar(lot_size=lot_size),
    )


class Recording:
    """Wraps a policy and records every decision it makes: (day index, target weights)."""

    def __init__(self, policy):
        self.policy = policy
        self.name = policy.name
        self.order_mode = policy.order_mode
        self.decisions: list[tuple[int, np.ndarray]] = []

    def reset(self):
        self.decisions = []
        self.policy.reset()

    def act(self, obs):
        action = np.array(self.policy.act(obs), dtype=np.float64, copy=True)
        self.decisions.append((obs.t, action))
        return action


def corrupt_after(panel: Panel, t: int, seed: int) -> Panel:
    """`panel` with every value after day t replaced by random (but valid) garbage."""
    rng = np.random.default_rng(seed)
    garbage = rng.lognormal(mean=3.0, sigma=1.5, size=(panel.T - t - 1, panel.N)).astype(np.float32)
    fields = {}
    for name in FIELDS:
        values = np.array(getattr(panel, name), copy=True)
        values[t + 1 :] = garbage * (1000.0 if name == "volume" else 1.0)
        fields[name] = values
    return replace(panel, **fields)


# ---------------------------------------------------------------------------------------- resume tests
def pause_after_checkpoints(module, seconds: float) -> None:
    """Make `module.save_atomic` sleep after each write (wall time only), so a test can kill the
    process while it trains between two checkpoints."""
    save = module.save_atomic

    def save_then_pause(payload, path):
        save(payload, path)
        time.sleep(seconds)

    module.save_atomic = save_then_pause


def start_training(test_module: str, out_dir: Path, pause: float = 0.0) -> subprocess.Popen:
    """Run `<test_module>.train_for_resume_test(out_dir, pause)` in a new process group (one torch thread)."""
    tests = Path(__file__).resolve().parent
    code = (
        f"import sys, torch; torch.set_num_threads(1); sys.path.insert(0, {str(tests)!r})\n"
        f"import {test_module} as t; t.train_for_resume_test({str(out_dir)!r}, pause={pause})\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stderr=subprocess.PIPE)


def kill_between_checkpoints(process: subprocess.Popen, checkpoint: Path, pause: float, timeout: float) -> None:
    """Wait for `checkpoint` to appear, sleep past the process's `pause` after it (so it is training
    between two checkpoints), then SIGKILL its process group and reap it."""
    deadline = time.monotonic() + timeout
    while not checkpoint.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    time.sleep(pause + 0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
