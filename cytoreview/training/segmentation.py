"""Training a segmenter: a generator of progress events, cancellable between steps.

Adam, class-weighted Dice + focal loss, early stopping on the validation loss restoring the best
weights, an optional wall-clock budget. CPU (channels_last, all cores) or CUDA (mixed precision)
is chosen automatically. The best weights so far are handed to ``on_best`` at every improvement,
so a cancelled or crashed run still leaves its best model behind.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from cytoreview.data.datasets import DEFAULT_TILE_THRESHOLD, SegmentationDataset
from cytoreview.data.transforms import AugmentConfig
from cytoreview.metrics.segmentation import Counts, scores_from_counts
from cytoreview.models.devices import describe_device, pick_torch_device, use_all_cpu_cores
from cytoreview.training.losses import SegmentationLoss, class_weights_from_masks
from cytoreview.training.runtime import autocast_for, seed_everything
from cytoreview.types import CancelToken, Progress

SCORED = {"cytoplasm": 1, "nucleus": 2}


@dataclass(frozen=True)
class SegTrainConfig:
    """Settings of one training run (stored in the checkpoint)."""

    input_size: int = 256
    epochs: int = 100
    batch_size: int = 8
    lr: float = 1e-4
    loss: str = "dice_focal"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    patience: int = 20
    min_delta: float = 1e-4
    time_budget_s: float | None = None
    device: str = "auto"
    amp: bool = True
    seed: int = 0
    tile_threshold: int = DEFAULT_TILE_THRESHOLD
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form."""
        data = asdict(self)
        data["augment"] = self.augment.to_dict()
        return data


@dataclass(frozen=True)
class EpochStats:
    """What one epoch measured (validation scores at the model's input size)."""

    epoch: int
    train_loss: float
    val_loss: float
    scores: dict[str, float]
    seconds: float


@dataclass
class SegTrainResult:
    """The outcome: best weights (already restored into the model) and the history."""

    state_dict: dict[str, torch.Tensor]
    best: EpochStats | None
    history: list[EpochStats]
    stop_reason: str  # "max_epochs", "early_stopping", "time_budget", "cancelled"
    device: str
    seconds: float
    class_weights: list[float]


def _batches(
    dataset: SegmentationDataset, batch_size: int, order: Sequence[int]
) -> list[list[int]]:
    return [list(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]


def _collate(dataset: SegmentationDataset, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [dataset[i] for i in indices]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def _to_device(
    x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    memory = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    return x.to(device, memory_format=memory, non_blocking=True), y.to(device, non_blocking=True)


@torch.inference_mode()
def _validate(
    model: torch.nn.Module,
    loss_fn: SegmentationLoss,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp: bool,
) -> tuple[float, dict[str, float]]:
    """Mean validation loss and pooled per-class IoU / Dice."""
    model.eval()
    total, n = 0.0, 0
    counts = {name: Counts(0, 0, 0, 0) for name in SCORED}
    for x, y in batches:
        x, y = _to_device(x, y, device)
        with autocast_for(device, amp):
            logits = model(x)
        total += float(loss_fn(logits, y)) * len(x)
        n += len(x)
        pred = logits.argmax(1)
        for name, label in SCORED.items():
            p, t = pred == label, y == label
            tp = int((p & t).sum())
            fp = int((p & ~t).sum())
            fn = int((~p & t).sum())
            counts[name] = counts[name] + Counts(tp, fp, fn, int(t.numel()) - tp - fp - fn)
    scores: dict[str, float] = {}
    for name, c in counts.items():
        s = scores_from_counts(c)
        scores[f"iou_{name}"], scores[f"dice_{name}"] = s.iou, s.dice
    return total / max(n, 1), scores


def train_segmenter(
    model: torch.nn.Module,
    train: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
    val: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
    config: SegTrainConfig,
    *,
    cancel: CancelToken | None = None,
    on_best: Callable[[dict[str, torch.Tensor], EpochStats], None] | None = None,
) -> Generator[Progress, None, SegTrainResult]:
    """Train ``model`` in place; yield a ``train`` event per step and an ``epoch`` event per epoch.

    Parameters
    ----------
    model
        A freshly built or checkpoint-initialised segmenter (fine-tuning starts from its weights).
    train, val
        (images, masks) lists; images RGB uint8, masks 0/1/2, any sizes.
    config
        Hyper-parameters; see :class:`SegTrainConfig`.
    cancel
        Checked between steps; the best weights so far are restored and returned.
    on_best
        Called with a CPU copy of the weights and the epoch's stats at every improvement.
    """
    start = time.perf_counter()
    seed_everything(config.seed)
    device = pick_torch_device(config.device)
    if device.type == "cpu":
        use_all_cpu_cores()
    weights = class_weights_from_masks(train[1])
    loss_fn = SegmentationLoss(config.loss, weights, config.focal_alpha, config.focal_gamma)
    loss_fn = loss_fn.to(device)
    memory = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model.to(device, memory_format=memory)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    # fp16 needs loss scaling; bf16 (preferred when the GPU has it) does not.
    use_scaler = device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    train_set = SegmentationDataset(
        *train, config.input_size, config.augment, config.seed, config.tile_threshold
    )
    val_set = SegmentationDataset(*val, config.input_size, None, config.seed, config.tile_threshold)
    val_batches = [
        _collate(val_set, b) for b in _batches(val_set, config.batch_size, range(len(val_set)))
    ]
    steps_per_epoch = math.ceil(len(train_set) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    best_loss, best, best_state = math.inf, None, copy.deepcopy(model.state_dict())
    history: list[EpochStats] = []
    stale, step, reason = 0, 0, "max_epochs"
    order_rng = np.random.default_rng(config.seed)
    device_name = describe_device(device)
    yield Progress("train", 0, total_steps, f"training on {device_name}")

    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        train_set.set_epoch(epoch)
        model.train()
        running, seen = 0.0, 0
        for indices in _batches(
            train_set, config.batch_size, order_rng.permutation(len(train_set))
        ):
            if cancel is not None and cancel.cancelled:
                reason = "cancelled"
                break
            if (
                config.time_budget_s is not None
                and time.perf_counter() - start > config.time_budget_s
            ):
                reason = "time_budget"
                break
            x, y = _to_device(*_collate(train_set, indices), device)
            optimiser.zero_grad(set_to_none=True)
            with autocast_for(device, config.amp):
                logits = model(x)
            loss = loss_fn(logits, y)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            loss_value = float(loss.detach())
            running += loss_value * len(indices)
            seen += len(indices)
            step += 1
            yield Progress("train", step, total_steps, metrics={"loss": loss_value, "epoch": epoch})
        if reason != "max_epochs" and seen < len(train_set):
            break  # an interrupted epoch is not validated: its numbers would mislead
        val_loss, scores = _validate(model, loss_fn, val_batches, device, config.amp)
        stats = EpochStats(
            epoch, running / max(seen, 1), val_loss, scores, time.perf_counter() - epoch_start
        )
        history.append(stats)
        improved = val_loss < best_loss - config.min_delta
        if improved:
            best_loss, best, stale = val_loss, stats, 0
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            if on_best is not None:
                on_best(best_state, stats)
        else:
            stale += 1
        summary = (
            f"epoch {epoch}/{config.epochs}: train {stats.train_loss:.4f}, val {val_loss:.4f}, "
            f"IoU cyto {scores['iou_cytoplasm']:.3f} nuc {scores['iou_nucleus']:.3f}"
            + (" (best)" if improved else "")
        )
        metrics = {"train_loss": stats.train_loss, "val_loss": val_loss, **scores}
        yield Progress("epoch", epoch, config.epochs, summary, metrics=metrics)
        if stale >= config.patience:
            reason = "early_stopping"
            break
    model.load_state_dict(best_state)
    model.to("cpu", memory_format=torch.contiguous_format).eval()
    return SegTrainResult(
        state_dict=best_state,
        best=best,
        history=history,
        stop_reason=reason,
        device=device_name,
        seconds=time.perf_counter() - start,
        class_weights=weights,
    )
