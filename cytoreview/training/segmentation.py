"""Training a segmenter: a generator of progress events, cancellable between steps.

Adam with its rate lowered on plateaus, class-weighted Dice + cross-entropy, a moving average of
the weights that is what is validated and kept, early stopping on the validation IoU (or loss)
restoring the best average, an optional wall-clock budget. CUDA (mixed precision) when there is
a GPU; on the CPU, channels_last (bf16 autocast on request, where the CPU computes bf16
natively) and a thread count measured while training
(:class:`~cytoreview.training.runtime.ThreadTuner`), so that a busy machine costs its share of
the CPU and not ten times the time. Augmentation runs in a DataLoader worker process when the
run is long enough to pay for starting it. The best weights so far are handed to ``on_best`` at
every improvement, so a cancelled or crashed run still leaves its best model.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from cytoreview.data.datasets import SegmentationDataset, UnlabelledViews
from cytoreview.data.transforms import AugmentConfig
from cytoreview.defaults import SEG, SEG_MONITORS
from cytoreview.errors import ConfigError
from cytoreview.metrics.segmentation import Counts, scores_from_counts
from cytoreview.models.devices import describe_device, pick_torch_device
from cytoreview.training.loader import EpochBatches, make_loader
from cytoreview.training.losses import SegmentationLoss, class_weights_from_masks, classes_present
from cytoreview.training.runtime import (
    autocast_for,
    cpu_threads,
    decay_lr,
    precision_name,
    seed_everything,
)
from cytoreview.training.semi import (
    SemiConfig,
    ema_update,
    make_teacher,
    pseudo_label_loss,
    warmed_up_decay,
)
from cytoreview.types import CancelToken, Progress

SCORED = {"cytoplasm": 1, "nucleus": 2}


@dataclass(frozen=True)
class SegTrainConfig:
    """Settings of one training run (stored in the checkpoint)."""

    input_size: int = 256
    epochs: int = SEG.epochs
    batch_size: int = SEG.batch_size
    lr: float = SEG.lr
    loss: str = SEG.loss
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    patience: int = SEG.patience
    #: Learning-rate schedule on plateaus (see cytoreview.defaults.SegRecipe); 0: constant.
    lr_patience: int = SEG.lr_patience
    lr_factor: float = SEG.lr_factor
    min_lr: float = SEG.min_lr
    #: Validate and keep a moving average of the weights (0: the weights as trained).
    ema_decay: float = SEG.ema_decay
    #: What early stopping and the kept model watch: "image_iou", "iou" or "loss" (see
    #: SegRecipe.monitor).
    monitor: str = SEG.monitor
    min_delta: float = 1e-4
    time_budget_s: float | None = None
    device: str = "auto"
    amp: bool = SEG.amp
    #: bf16 autocast on a CPU that computes it natively (opt-in, see SegRecipe.cpu_bf16).
    cpu_bf16: bool = SEG.cpu_bf16
    seed: int = 0
    tile_threshold: int = SEG.tile_threshold
    #: Fields are resized by this before windows are cut (see cytoreview.data.geometry).
    scale: float = 1.0
    #: CPU threads: None measures the best count while training (ThreadTuner).
    threads: int | None = None
    #: DataLoader worker processes for augmentation: None chooses (see training.loader).
    loader_workers: int | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    #: Learn from unpainted images too (see cytoreview.training.semi); None: masks only.
    semi: SemiConfig | None = None

    def __post_init__(self) -> None:
        if self.monitor not in SEG_MONITORS:
            known = ", ".join(SEG_MONITORS)
            raise ConfigError(f"monitor must be one of {known}, not {self.monitor!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form."""
        data = asdict(self)
        data["augment"] = self.augment.to_dict()
        data["semi"] = self.semi.to_dict() if self.semi is not None else None
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
    #: Which classes the training masks contain (absent ones are never predicted).
    present: list[bool] = field(default_factory=lambda: [True, True, True])
    #: The CPU thread counts chosen while training, (threads, {threads: median step s}).
    thread_decisions: list[tuple[int, dict[int, float]]] = field(default_factory=list)


def _to_device(
    x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    memory = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    return x.to(device, memory_format=memory, non_blocking=True), y.to(device, non_blocking=True)


def _sample(images: Sequence[np.ndarray], n: int, seed: int) -> list[np.ndarray]:
    """At most ``n`` of ``images``, a seeded random choice (all of them if fewer)."""
    if len(images) <= n:
        return list(images)
    keep = np.random.default_rng(seed).choice(len(images), n, replace=False)
    return [images[int(i)] for i in sorted(keep)]


def _cycle(
    loader: torch.utils.data.DataLoader, batches: EpochBatches, epoch: int
) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
    """Unlabelled batches without end: a new shuffle each time the pool runs out."""
    round_ = 0
    while True:
        batches.set_epoch(epoch * 1000 + round_)
        yield from loader
        round_ += 1


@torch.inference_mode()
def _validate(
    model: torch.nn.Module,
    loss_fn: SegmentationLoss,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp: bool,
    cpu_bf16: bool = False,
) -> tuple[float, dict[str, float]]:
    """Mean validation loss, pooled per-class IoU / Dice and the per-class IoU per image.

    ``iou_<class>`` and ``dice_<class>`` pool the pixels of every validation image, so that a
    large cell weighs more than a small one; ``image_iou_<class>`` is the mean over images of
    each image's IoU, over the images where the class is in the mask or the prediction (NaN
    if none), so that each cell counts once, as a reviewer and ``evaluate-seg`` count them.
    """
    model.eval()
    total, n = 0.0, 0
    counts = {name: Counts(0, 0, 0, 0) for name in SCORED}
    per_image: dict[str, list[float]] = {name: [] for name in SCORED}
    for x, y in batches:
        x, y = _to_device(x, y, device)
        with autocast_for(device, amp, cpu_bf16):
            logits = model(x)
        total += float(loss_fn(logits, y)) * len(x)
        n += len(x)
        # A class no mask contains is never predicted (as at inference): its logit is untrained.
        pred = logits.masked_fill(loss_fn.absent.view(1, -1, 1, 1), -torch.inf).argmax(1)
        for name, label in SCORED.items():
            p, t = (pred == label).flatten(1), (y == label).flatten(1)
            # Per image first: the pooled counts are their sums.
            tp_i, fp_i, fn_i = (p & t).sum(1), (p & ~t).sum(1), (~p & t).sum(1)
            tp, fp, fn = int(tp_i.sum()), int(fp_i.sum()), int(fn_i.sum())
            counts[name] = counts[name] + Counts(tp, fp, fn, int(t.numel()) - tp - fp - fn)
            union = tp_i + fp_i + fn_i
            per_image[name] += (tp_i[union > 0] / union[union > 0]).tolist()
    scores: dict[str, float] = {}
    for name, c in counts.items():
        s = scores_from_counts(c)
        scores[f"iou_{name}"], scores[f"dice_{name}"] = s.iou, s.dice
        values = per_image[name]
        scores[f"image_iou_{name}"] = sum(values) / len(values) if values else math.nan
    return total / max(n, 1), scores


def validation_criterion(
    monitor: str, val_loss: float, scores: dict[str, float], present: Sequence[bool]
) -> tuple[float, float]:
    """The numbers early stopping watches, lower is better, the second breaking ties.

    ``loss``: the validation loss. ``iou``: minus the mean validation IoU of the classes the
    training masks contain (a nucleus-only project is judged on nuclei alone), the score the masks
    are judged by, then the loss; ``image_iou``: the same with each class's IoU the mean over the
    validation images (see :func:`_validate`) instead of pooled over their pixels. The IoU comes
    first and the loss second because the loss of a few validation images can flatten while the
    IoU still rises, and the IoU can stand still (at 0 in the first epochs of a tiny run) while
    the loss falls.
    """
    key = "image_iou" if monitor == "image_iou" else "iou"
    ious = [scores[f"{key}_{name}"] for name, label in SCORED.items() if present[label]]
    # NaN: the class is in no validation mask and was not predicted (or there are no validation
    # images at all: then the loss, 0, is all there is, as with the loss monitor).
    ious = [iou for iou in ious if math.isfinite(iou)]
    if monitor == "loss" or not ious:
        return val_loss, 0.0
    return -sum(ious) / len(ious), val_loss


def improves(score: tuple[float, float], best: tuple[float, float], min_delta: float) -> bool:
    """Whether ``score`` beats ``best``.

    Better on the first number by more than ``min_delta``, or level with it (within
    ``min_delta``) and better on the second by more than that.
    """
    if score[0] < best[0] - min_delta:
        return True
    return abs(score[0] - best[0]) <= min_delta and score[1] < best[1] - min_delta


def segmentation_loaders(
    train: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
    val: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
    config: SegTrainConfig,
) -> tuple[EpochBatches, Iterable[Any], Iterable[Any], int]:
    """The batches of a segmentation run: augmented training, plain validation.

    Shared with segmenter plugins that bring their own trainer, so that every trainer sees the
    same letterboxing, tiling and augmentation of the same images.

    Returns
    -------
    tuple
        The training batch order (``set_epoch`` each epoch), the training loader, the
        validation loader and the number of training steps of the whole run.
    """
    geometry = (config.input_size, config.augment, config.seed, config.tile_threshold, config.scale)
    train_set = SegmentationDataset(*train, *geometry)
    val_set = SegmentationDataset(*val, config.input_size, None, config.seed,
                                  config.tile_threshold, config.scale)  # fmt: skip
    batches = EpochBatches(len(train_set), config.batch_size, config.seed)
    total_steps = len(batches) * config.epochs
    loader = make_loader(train_set, batches, total_steps, config.loader_workers)
    val_loader = make_loader(
        val_set, EpochBatches(len(val_set), config.batch_size, shuffle=False), 0, 0
    )
    return batches, loader, val_loader, total_steps


def train_segmenter(
    model: torch.nn.Module,
    train: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
    val: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
    config: SegTrainConfig,
    *,
    cancel: CancelToken | None = None,
    on_best: Callable[[dict[str, torch.Tensor], EpochStats], None] | None = None,
    unlabelled: Sequence[np.ndarray] = (),
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
    unlabelled
        Images without a person's mask, used only when ``config.semi`` is set.
    """
    start = time.perf_counter()
    seed_everything(config.seed)
    device = pick_torch_device(config.device)
    tuner = cpu_threads(device, config.threads)
    weights = class_weights_from_masks(train[1])
    present = classes_present([*train[1], *val[1]])
    loss_fn = SegmentationLoss(
        config.loss, weights, config.focal_alpha, config.focal_gamma, present=present
    ).to(device)
    memory = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model.to(device, memory_format=memory)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    # fp16 needs loss scaling; bf16 (preferred when the GPU has it) does not.
    use_scaler = device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    batches, loader, val_loader, total_steps = segmentation_loaders(train, val, config)
    semi = config.semi if config.semi is not None and len(unlabelled) else None
    teacher, extra = None, None
    if semi is not None:
        teacher = make_teacher(model)
        pool = _sample(unlabelled, semi.max_images, config.seed)
        extra_set = UnlabelledViews(pool, config.input_size, config.seed,
                                    config.tile_threshold, config.scale)  # fmt: skip
        extra_batches = EpochBatches(len(extra_set), config.batch_size, config.seed + 1)
        extra = (extra_set, extra_batches)
        extra_loader = make_loader(extra_set, extra_batches, total_steps, config.loader_workers)
    # The averaged weights are validated and kept: on a few dozen images the last step's
    # weights swing from epoch to epoch, their average does not.
    averaged = None
    if config.ema_decay:
        averaged = teacher if teacher is not None else make_teacher(model)
    evaluated = averaged if averaged is not None else model
    best_score, best = (math.inf, math.inf), None
    best_state = copy.deepcopy(model.state_dict())
    history: list[EpochStats] = []
    stale, step, reason = 0, 0, "max_epochs"
    device_name = (
        f"{describe_device(device)}, {precision_name(device, config.amp, config.cpu_bf16)}"
    )
    yield Progress("train", 0, total_steps, f"training on {device_name}", device=device_name)

    try:
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            epoch_lr = optimiser.param_groups[0]["lr"]
            batches.set_epoch(epoch)
            model.train()
            running, seen = 0.0, 0
            views = iter(_cycle(extra_loader, extra[1], epoch)) if extra is not None else None
            for x, y in loader:
                if cancel is not None and cancel.cancelled:
                    reason = "cancelled"
                    break
                if (
                    config.time_budget_s is not None
                    and time.perf_counter() - start > config.time_budget_s
                ):
                    reason = "time_budget"
                    break
                if tuner is not None:
                    tuner.start_step()
                x, y = _to_device(x, y, device)
                optimiser.zero_grad(set_to_none=True)
                with autocast_for(device, config.amp, config.cpu_bf16):
                    logits = model(x)
                loss = loss_fn(logits, y)
                share = None
                if semi is not None and views is not None and teacher is not None:
                    weak, strong = next(views)
                    weak, strong = _to_device(weak, strong, device)
                    strong = strong.contiguous(memory_format=memory)
                    with torch.no_grad(), autocast_for(device, config.amp, config.cpu_bf16):
                        teacher_logits = teacher(weak)
                    with autocast_for(device, config.amp, config.cpu_bf16):
                        student_logits = model(strong)
                    unsup, share = pseudo_label_loss(
                        student_logits, teacher_logits, semi.threshold, loss_fn.absent
                    )
                    loss = loss + semi.weight_at(epoch) * unsup
                scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
                if semi is not None and teacher is not None:
                    ema_update(teacher, model, semi.ema_decay)
                if averaged is not None and averaged is not teacher:
                    decay = warmed_up_decay(config.ema_decay, step)
                    ema_update(averaged, model, decay, average_buffers=True)
                loss_value = float(loss.detach())
                if tuner is not None:
                    tuner.end_step()
                running += loss_value * len(x)
                seen += len(x)
                step += 1
                metrics = {"loss": loss_value, "epoch": epoch}
                if tuner is not None:
                    metrics["threads"] = tuner.threads
                if share is not None:
                    metrics["pseudo_label_share"] = share
                yield Progress("train", step, total_steps, metrics=metrics)
            if reason != "max_epochs" and seen < batches.n:
                break  # an interrupted epoch is not validated: its numbers would mislead
            val_loss, scores = _validate(
                evaluated, loss_fn, val_loader, device, config.amp, config.cpu_bf16
            )
            stats = EpochStats(
                epoch, running / max(seen, 1), val_loss, scores, time.perf_counter() - epoch_start
            )
            history.append(stats)
            score = validation_criterion(config.monitor, val_loss, scores, present)
            improved = improves(score, best_score, config.min_delta)
            if improved:
                best_score, best, stale = score, stats, 0
                best_state = {
                    k: v.detach().to("cpu", copy=True) for k, v in evaluated.state_dict().items()
                }
                if on_best is not None:
                    on_best(best_state, stats)
            else:
                stale += 1
                if config.lr_patience and stale % config.lr_patience == 0:
                    decay_lr(optimiser, config.lr_factor, config.min_lr)
            summary = (
                f"epoch {epoch}/{config.epochs}: train {stats.train_loss:.4f}, val {val_loss:.4f}, "
                f"IoU cyto {scores['iou_cytoplasm']:.3f} nuc {scores['iou_nucleus']:.3f}"
                + (" (best)" if improved else "")
            )
            metrics = {"train_loss": stats.train_loss, "val_loss": val_loss, "lr": epoch_lr}
            metrics.update(scores)
            yield Progress("epoch", epoch, config.epochs, summary, metrics=metrics)
            if stale >= config.patience:
                reason = "early_stopping"
                break
    finally:
        del loader, val_loader  # stops the worker process at once, also on cancel or error
        if extra is not None:
            del extra_loader
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
        present=present,
        thread_decisions=list(tuner.decisions) if tuner is not None else [],
    )
