"""Pretraining of the three branches on the training window only, early stopping, freezing.

Each branch trains on its own task (relational: reconstruct the indicators of a random `mask_ratio`
of the stocks of a day, MSE on the masked stocks; long/short: the standardized 5/1-day forward return,
MSE + `rank_weight` x StockFormer's pairwise ranking loss), with Adam, batches of `batch_size` days
(every stock of a day), and early stopping on the last `validation_fraction` of the training window:
after `patience` epochs without a lower validation loss, the best epoch's weights are restored.

Which days a branch learns from (day indices, training window `[i0, i1)`, validation from `v0`):
- predictor with horizon h: training days t with `t + h < v0` (the label's close comes before the
  validation slice), validation days `t >= v0` with `t + h <= i1 - 1` (no label crosses the training
  end); and `t >= lookback - 1` (a full window; history before `i0` is allowed — it is the past).
- relational: training days `i0 <= t < v0`, validation days `v0 <= t < i1` (a row only reads day t).

Determinism: all of it runs inside `torch.random.fork_rng` (the caller's RNG state is untouched),
seeded from `config.seed` (weights), one seed per branch (dropout) and a `torch.Generator` per branch
(batch order, masks). Thread settings are the caller's business and are not changed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trustfolio.encoders.config import BRANCHES, EncoderConfig
from trustfolio.encoders.inputs import EncoderInputs, gather_windows
from trustfolio.encoders.light import MLPPredictor, SetRelational
from trustfolio.encoders.stockformer import TransformerPredictor, TransformerRelational
from trustfolio.errors import DataError, UserError
from trustfolio.files import write_atomic

VALIDATION_MASK_SEED = 12_345  # fixed masks for the relational validation loss (comparable across epochs)


class MarketEncoder(nn.Module):
    """The three branches: `relat(rows)`, `long(windows)`, `short(windows)` -> (state, task output)."""

    def __init__(self, relat: nn.Module, long: nn.Module, short: nn.Module) -> None:
        super().__init__()
        self.relat, self.long, self.short = relat, long, short


def build_encoder(
    config: EncoderConfig, *, n_stocks: int, n_temporal: int, n_indicators: int
) -> MarketEncoder:
    """A freshly initialized encoder of `config.kind` (uses the global torch RNG for the weights)."""
    n_relational = n_stocks + n_indicators
    if config.kind == "stockformer":
        return MarketEncoder(
            TransformerRelational(n_relational, n_indicators, n_stocks, config),
            TransformerPredictor(n_temporal, config),
            TransformerPredictor(n_temporal, config),
        )
    return MarketEncoder(
        SetRelational(n_relational, n_indicators, config),
        MLPPredictor(n_temporal, config),
        MLPPredictor(n_temporal, config),
    )


@dataclass(eq=False)
class FittedEncoder:
    """A pretrained, frozen encoder and what is needed to use and identify it."""

    config: EncoderConfig
    model: MarketEncoder
    dims: dict[str, int]  # n_stocks, n_temporal, n_indicators
    label_scale: np.ndarray  # float32[2]: std of the (short, long) training labels
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # per branch, per epoch

    def weights_hash(self) -> str:
        """A hash of every weight and the label scale: keys the cache of market states."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        digest.update(np.ascontiguousarray(self.label_scale, dtype=np.float32).tobytes())
        return digest.hexdigest()[:24]

    def save(self, path: str | Path) -> None:
        """Write weights, config and history to `path` (torch format, atomically)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "config": asdict(self.config),
            "dims": dict(self.dims),
            "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "label_scale": torch.from_numpy(np.asarray(self.label_scale, dtype=np.float32)),
            "history": json.dumps(self.history),
        }
        write_atomic(path, lambda temporary: torch.save(payload, temporary))

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> FittedEncoder:
        """Read a file written by `save` (`torch.load(weights_only=True)`); the model is frozen."""
        try:
            payload = torch.load(Path(path), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, EOFError) as exc:
            raise DataError(f"cannot read encoder weights from {path}: {exc}") from exc
        config = EncoderConfig(**payload["config"])
        if device is not None:
            config = config.with_(device=device)
        model = build_encoder(config, **payload["dims"])
        model.load_state_dict(payload["state_dict"])
        fitted = cls(
            config,
            model,
            dict(payload["dims"]),
            payload["label_scale"].numpy(),
            json.loads(payload["history"]),
        )
        return fitted.frozen()

    def frozen(self) -> FittedEncoder:
        """Eval mode, no gradients, on `config.device`."""
        self.model.to(self.config.device).eval().requires_grad_(False)
        return self


# ------------------------------------------------------------------------------------------- days
def branch_days(inputs: EncoderInputs, config: EncoderConfig, branch: str) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation day indices of one branch (see the module docstring for the rules)."""
    i0, i1 = inputs.train_span
    n_validation = max(1, math.ceil(config.validation_fraction * (i1 - i0)))
    v0 = i1 - n_validation
    days = np.arange(max(i0, config.lookback - 1), i1)
    if branch == "relat":
        train, validation = days[days < v0], days[days >= v0]
    else:
        h = inputs.horizons[0] if branch == "short" else inputs.horizons[1]
        train, validation = days[days + h < v0], days[(days >= v0) & (days + h <= i1 - 1)]
    if len(train) == 0 or len(validation) == 0:
        raise UserError(
            f"the training window {inputs.dates[i0]}→{inputs.dates[i1 - 1]} ({i1 - i0} days, {max(0, i0)} days of "
            f"history before it) is too short for the {branch} branch with lookback {config.lookback}: "
            f"{len(train)} training and {len(validation)} validation days; start the window later or shorten lookback"
        )
    if config.validation_days is not None and len(validation) > config.validation_days:
        picks = np.linspace(0, len(validation) - 1, config.validation_days).round().astype(int)
        validation = validation[np.unique(picks)]
    return train, validation


def _epoch_batches(days: np.ndarray, config: EncoderConfig, generator: torch.Generator) -> list[np.ndarray]:
    """Shuffled batches of training days for one epoch: one pass over `days` (each once, the last batch
    may be smaller), or `steps_per_epoch` full batches drawn from successive shuffles when it is set."""
    if config.steps_per_epoch is None:
        order = torch.randperm(len(days), generator=generator)
    else:
        needed = config.steps_per_epoch * config.batch_size
        shuffles = [
            torch.randperm(len(days), generator=generator) for _ in range(math.ceil(needed / len(days)))
        ]
        order = torch.cat(shuffles)[:needed]
    picked = days[order.numpy()]
    return [picked[k : k + config.batch_size] for k in range(0, len(picked), config.batch_size)]


# ------------------------------------------------------------------------------------------- losses
def ranking_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """StockFormer's pairwise ranking loss: mean over stock pairs of a day of `relu(-(p_i-p_j)(y_i-y_j))`."""
    predicted_gap = prediction[:, :, None] - prediction[:, None, :]
    true_gap = target[:, :, None] - target[:, None, :]
    return torch.relu(-predicted_gap * true_gap).mean()


class _Task:
    """One branch's data and loss: `loss(days, generator)` over a batch of day indices."""

    def __init__(
        self, branch: str, model: MarketEncoder, tensors: dict[str, torch.Tensor], config: EncoderConfig
    ):
        self.branch, self.module, self.config = branch, getattr(model, branch), config
        self.tensors = tensors
        self.n_stocks = tensors["relational"].shape[1]

    def loss(self, days: np.ndarray, generator: torch.Generator) -> torch.Tensor:
        index = torch.as_tensor(days, device=self.tensors["temporal"].device)
        if self.branch == "relat":
            rows = self.tensors["relational"][index]  # [B, N, N+I]
            masked, hidden = mask_indicators(rows, self.n_stocks, self.config.mask_ratio, generator)
            _, reconstruction = self.module(masked)
            error = (reconstruction - rows[..., self.n_stocks :]) ** 2
            return error[hidden].mean()
        windows = gather_windows(self.tensors["temporal"], index, self.config.lookback)
        target = self.tensors["labels"][index, :, 0 if self.branch == "short" else 1]
        _, prediction = self.module(windows)
        return nn.functional.mse_loss(prediction, target) + self.config.rank_weight * ranking_loss(
            prediction, target
        )


def mask_indicators(
    rows: torch.Tensor, n_stocks: int, mask_ratio: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the indicator part of a random `mask_ratio` of the stocks of each day (at least one).

    Returns the masked rows and the boolean `[B, N]` mask of the hidden stocks.
    """
    B, N = rows.shape[:2]
    n_hidden = max(1, int(mask_ratio * N))
    chosen = torch.rand(B, N, generator=generator).argsort(dim=1)[:, :n_hidden].to(rows.device)
    hidden = torch.zeros(B, N, dtype=torch.bool, device=rows.device)
    hidden[torch.arange(B, device=rows.device)[:, None], chosen] = True
    masked = rows.clone()
    masked[..., n_stocks:] *= (~hidden)[..., None]
    return masked, hidden


# ------------------------------------------------------------------------------------------- fitting
def fit_encoder(inputs: EncoderInputs, config: EncoderConfig, *, progress: bool = True) -> FittedEncoder:
    """Pretrain the three branches of a `config.kind` encoder on `inputs`' training window; frozen result.

    Reads no row after the training window's last day (labels included) — see `branch_days`.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    device = torch.device(config.device)
    label_scale = inputs.label_scale()
    tensors = {
        "temporal": torch.from_numpy(inputs.temporal).to(device),
        "relational": torch.from_numpy(inputs.relational).to(device),
        "labels": torch.from_numpy(inputs.labels / label_scale).to(device),
    }
    dims = {
        "n_stocks": inputs.N,
        "n_temporal": inputs.temporal.shape[-1],
        "n_indicators": inputs.n_indicators,
    }
    history: dict[str, list[dict[str, float]]] = {}
    cuda = [device.index or 0] if device.type == "cuda" else []
    columns = (TextColumn("[bold]encoder[/] {task.description}"), BarColumn(), TextColumn("epoch {task.completed}/{task.total}"),
               TimeElapsedColumn())  # fmt: skip
    with torch.random.fork_rng(devices=cuda), Progress(*columns, disable=not progress, transient=True) as bar:
        torch.manual_seed(config.seed)
        model = build_encoder(config, **dims).to(device)
        for k, branch in enumerate(BRANCHES):
            torch.manual_seed(config.seed + 1 + k)  # dropout of this branch, independent of the others
            generator = torch.Generator().manual_seed(config.seed * 1_000 + k)
            train_days, validation_days = branch_days(inputs, config, branch)
            task = _Task(branch, model, tensors, config)
            bar_task = bar.add_task(branch, total=config.max_epochs)
            history[branch] = _train_branch(task, train_days, validation_days, generator,
                                            lambda log, t=bar_task: bar.update(t, advance=1, description=log))  # fmt: skip
            bar.update(bar_task, completed=config.max_epochs)
    return FittedEncoder(config, model, dims, label_scale, history).frozen()


def _train_branch(task: _Task, train_days: np.ndarray, validation_days: np.ndarray,
                  generator: torch.Generator, on_epoch: Any) -> list[dict[str, float]]:  # fmt: skip
    """Adam with early stopping; leaves the branch holding its best validation epoch's weights."""
    config, module = task.config, task.module
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr)
    best_loss, best_state, since_best = math.inf, None, 0
    history: list[dict[str, float]] = []
    for epoch in range(1, config.max_epochs + 1):
        module.train()
        losses = []
        for days in _epoch_batches(train_days, config, generator):
            loss = task.loss(days, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        validation_loss = _validation_loss(task, validation_days)
        history.append(
            {"epoch": epoch, "train_loss": float(np.mean(losses)), "validation_loss": validation_loss}
        )
        if not math.isfinite(validation_loss):
            raise DataError(
                f"encoder {task.branch} branch: validation loss is {validation_loss} at epoch {epoch}"
            )
        if validation_loss < best_loss:
            best_loss, since_best = validation_loss, 0
            best_state = {name: value.detach().clone() for name, value in module.state_dict().items()}
        else:
            since_best += 1
        on_epoch(f"{task.branch} val {validation_loss:.4f} (best {best_loss:.4f})")
        if since_best >= config.patience:
            break
    module.load_state_dict(best_state)
    return history


def _validation_loss(task: _Task, days: np.ndarray) -> float:
    """The branch's loss on the validation days (eval mode; fixed masks), averaged per day."""
    task.module.eval()
    generator = torch.Generator().manual_seed(VALIDATION_MASK_SEED)
    total, chunk = 0.0, task.config.inference_batch_days
    with torch.no_grad():
        for start in range(0, len(days), chunk):
            part = days[start : start + chunk]
            total += task.loss(part, generator).item() * len(part)
    return total / len(days)
