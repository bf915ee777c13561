"""Training Pix2Pix: generator and discriminator on (image, colour map) pairs.

A generator function with the signature and the events of the core's
:func:`cytoreview.training.segmentation.train_segmenter` (a ``train`` event per step, an
``epoch`` event per epoch, ``on_best`` at each improvement), so that ``train-seg``, the
workbench and the model store treat it like any other segmenter's training.

What is the core's
    The data pipeline: :class:`~cytoreview.data.datasets.SegmentationDataset` letterboxes crops,
    cuts windows of fields and augments (the colour map is drawn from the augmented mask, so its
    black border is exact); :class:`~cytoreview.training.loader.EpochBatches` and
    :func:`~cytoreview.training.loader.make_loader` batch it. The validation: the core's
    ``_validate`` on the whole segmenter (generator + colour decoding), so the Dice and IoU of
    every epoch are computed exactly as the U-Net's, and its validation loss is the core's
    segmentation loss on the decoded logits. The CPU thread tuning, the seeding, the moving
    average of the weights, the plateau schedule (both networks' rates), early stopping with
    ``config.patience``, the time budget and cancelling between steps.
What is pix2pix's
    Each step trains the discriminator on the real pair (label 1) and the generated pair
    (label 0), then the generator to make the discriminator say 1 while staying near the
    target colours: ``BCE(D(x, G(x)), 1) + lambda * L1(G(x), y)``. The adversarial loss is the
    binary cross-entropy on logits of pix2pix (not LSGAN's squares); the discriminator's loss is
    halved, as pix2pix does, to slow it against the generator. Adam with betas (0.5, 0.999) and
    the method's own rate (``Pix2PixSettings.lr``, 2e-4; the request's ``lr`` is the U-Net's).
Which weights are kept
    Those of the epoch with the highest validation Dice of cytoplasm plus nucleus (the moving
    average when ``config.ema_decay``). Not the lowest loss: a GAN's losses are a contest
    between two networks and do not fall steadily, and the segmentation loss on the decoded
    colours depends on the temperature of the decoding rather than on the masks. Early stopping
    and the plateau schedule count epochs without a better Dice.

The discriminator is not part of the model that is saved and exported (inference needs only the
generator): fine-tuning from a checkpoint starts it afresh. Unpainted images (``config.semi``)
are not used: the generator learns from painted masks alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812 - the conventional name

from cytoreview.models.devices import describe_device, pick_torch_device
from cytoreview.training.losses import SegmentationLoss, class_weights_from_masks, classes_present
from cytoreview.training.runtime import (
    autocast_for,
    cpu_threads,
    decay_lr,
    precision_name,
    seed_everything,
)
from cytoreview.training.segmentation import (
    EpochStats,
    SegTrainConfig,
    SegTrainResult,
    _validate,
    segmentation_loaders,
)
from cytoreview.training.semi import ema_update, make_teacher, warmed_up_decay
from cytoreview.types import CancelToken, Progress
from cytoreview_pix2pix.colour_map import colours_from_labels
from cytoreview_pix2pix.networks import PatchDiscriminator

if TYPE_CHECKING:
    from cytoreview_pix2pix.segmenter import Pix2PixSegmenter

__all__ = ["ADAM_BETAS", "colour_targets", "train_pix2pix"]

#: Pix2pix's Adam momentum terms (a low beta1 steadies the two networks' contest).
ADAM_BETAS = (0.5, 0.999)


def colour_targets(masks: torch.Tensor) -> torch.Tensor:
    """The generator's targets: ``(N, H, W)`` labels to ``(N, 3, H, W)`` colours in [-1, 1]."""
    rgb = colours_from_labels(masks.cpu().numpy())  # (N, H, W, 3) uint8
    return torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _set_trainable(module: torch.nn.Module, trainable: bool) -> None:
    # The generator's step back-propagates through the discriminator but must not give it
    # gradients (they would be wasted work, then discarded).
    for p in module.parameters():
        p.requires_grad_(trainable)


def _cpu_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def train_pix2pix(
    model: Pix2PixSegmenter,
    train: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
    val: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
    config: SegTrainConfig,
    *,
    cancel: CancelToken | None = None,
    on_best: Callable[[dict[str, torch.Tensor], EpochStats], None] | None = None,
    unlabelled: Sequence[np.ndarray] = (),
) -> Generator[Progress, None, SegTrainResult]:
    """Train ``model``'s generator in place against a new PatchGAN discriminator.

    Parameters
    ----------
    model
        A :class:`~cytoreview_pix2pix.segmenter.Pix2PixSegmenter` (fresh or from a checkpoint).
    train, val
        (images, masks) lists; images RGB uint8, masks 0/1/2, any sizes.
    config
        The core's training settings; ``lr`` is not used (``model.settings.lr`` is), nor
        ``loss`` except for the reported validation loss, nor ``semi``.
    cancel
        Checked between steps; the best weights so far are restored and returned.
    on_best
        Called with a CPU copy of the weights and the epoch's stats at every improvement.
    unlabelled
        Not used (see the module's docstring).

    Returns
    -------
    SegTrainResult
        The best weights (already loaded into ``model``, which ends on the CPU in eval mode),
        the history, and why training stopped.
    """
    start = time.perf_counter()
    seed_everything(config.seed)
    settings = model.settings
    device = pick_torch_device(config.device)
    tuner = cpu_threads(device, config.threads)
    weights = class_weights_from_masks(train[1])
    present = classes_present([*train[1], *val[1]])
    # Only for the validation loss the core reports beside the scores (same loss as the U-Net).
    loss_fn = SegmentationLoss(
        config.loss, weights, config.focal_alpha, config.focal_gamma, present=present
    ).to(device)
    memory = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    model.to(device, memory_format=memory)
    discriminator = PatchDiscriminator(settings).to(device, memory_format=memory)
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=settings.lr, betas=ADAM_BETAS)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=settings.lr, betas=ADAM_BETAS)
    # fp16 needs loss scaling; bf16 (preferred when the GPU has it) does not.
    use_scaler = device.type == "cuda" and config.amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    batches, loader, val_loader, total_steps = segmentation_loaders(train, val, config)
    # As in the core: the averaged weights are validated and kept (they swing less).
    averaged = make_teacher(model) if config.ema_decay else None
    evaluated = averaged if averaged is not None else model
    best_score, best, best_state = -math.inf, None, _cpu_copy(model)
    history: list[EpochStats] = []
    stale, step, reason = 0, 0, "max_epochs"
    device_name = (
        f"{describe_device(device)}, {precision_name(device, config.amp, config.cpu_bf16)}"
    )
    yield Progress(
        "train",
        0,
        total_steps,
        f"training pix2pix (generator + discriminator) on {device_name}",
        device=device_name,
    )
    if config.semi is not None and len(unlabelled):
        yield Progress(
            "train",
            0,
            total_steps,
            "pix2pix learns from painted masks only: the "
            f"{len(unlabelled)} unpainted images are not used",
            level="warning",
        )

    try:
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            epoch_lr = opt_g.param_groups[0]["lr"]
            batches.set_epoch(epoch)
            model.train()
            discriminator.train()
            sums = {"g": 0.0, "d": 0.0, "l1": 0.0}
            seen = 0
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
                target = colour_targets(y).to(device, memory_format=memory, non_blocking=True)
                x = x.to(device, memory_format=memory, non_blocking=True)
                with autocast_for(device, config.amp, config.cpu_bf16):
                    fake = model.generator(x)

                # The discriminator: real pairs are 1, generated pairs 0.
                _set_trainable(discriminator, True)
                opt_d.zero_grad(set_to_none=True)
                with autocast_for(device, config.amp, config.cpu_bf16):
                    real_logits = discriminator(x, target)
                    fake_logits = discriminator(x, fake.detach())
                    loss_d = 0.5 * (
                        F.binary_cross_entropy_with_logits(
                            real_logits, torch.ones_like(real_logits)
                        )
                        + F.binary_cross_entropy_with_logits(
                            fake_logits, torch.zeros_like(fake_logits)
                        )
                    )
                scaler.scale(loss_d).backward()
                scaler.step(opt_d)

                # The generator: fool the discriminator, stay near the target colours.
                _set_trainable(discriminator, False)
                opt_g.zero_grad(set_to_none=True)
                with autocast_for(device, config.amp, config.cpu_bf16):
                    fooled = discriminator(x, fake)
                    loss_gan = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
                loss_l1 = F.l1_loss(fake.float(), target)
                loss_g = loss_gan.float() + settings.l1_weight * loss_l1
                scaler.scale(loss_g).backward()
                scaler.step(opt_g)
                scaler.update()
                if averaged is not None:
                    decay = warmed_up_decay(config.ema_decay, step)
                    ema_update(averaged, model, decay, average_buffers=True)
                values = {
                    "loss": float(loss_g.detach()),
                    "loss_d": float(loss_d.detach()),
                    "loss_gan": float(loss_gan.detach()),
                    "loss_l1": float(loss_l1.detach()),
                }
                if tuner is not None:
                    tuner.end_step()
                sums["g"] += values["loss"] * len(x)
                sums["d"] += values["loss_d"] * len(x)
                sums["l1"] += values["loss_l1"] * len(x)
                seen += len(x)
                step += 1
                metrics: dict[str, float] = {**values, "epoch": epoch}
                if tuner is not None:
                    metrics["threads"] = tuner.threads
                yield Progress(
                    "train",
                    step,
                    total_steps,
                    f"G {values['loss']:.3f} (GAN {values['loss_gan']:.3f} + "
                    f"{settings.l1_weight:g} x L1 {values['loss_l1']:.4f}), "
                    f"D {values['loss_d']:.3f}",
                    metrics=metrics,
                )
            if reason != "max_epochs" and seen < batches.n:
                break  # an interrupted epoch is not validated: its numbers would mislead
            val_loss, scores = _validate(
                evaluated, loss_fn, val_loader, device, config.amp, config.cpu_bf16
            )
            n = max(seen, 1)
            stats = EpochStats(
                epoch, sums["g"] / n, val_loss, scores, time.perf_counter() - epoch_start
            )
            history.append(stats)
            score = scores["dice_cytoplasm"] + scores["dice_nucleus"]
            improved = score > best_score + config.min_delta
            if improved:
                best_score, best, stale = score, stats, 0
                best_state = _cpu_copy(evaluated)
                if on_best is not None:
                    on_best(best_state, stats)
            else:
                stale += 1
                if config.lr_patience and stale % config.lr_patience == 0:
                    for optimiser in (opt_g, opt_d):
                        decay_lr(optimiser, config.lr_factor, config.min_lr)
            summary = (
                f"epoch {epoch}/{config.epochs}: G {stats.train_loss:.3f}, D {sums['d'] / n:.3f}, "
                f"val {val_loss:.4f}, Dice cyto {scores['dice_cytoplasm']:.3f} "
                f"nuc {scores['dice_nucleus']:.3f}, IoU cyto {scores['iou_cytoplasm']:.3f} "
                f"nuc {scores['iou_nucleus']:.3f}" + (" (best)" if improved else "")
            )
            epoch_metrics = {
                "train_loss": stats.train_loss,
                "val_loss": val_loss,
                "lr": epoch_lr,
                "discriminator_loss": sums["d"] / n,
                "l1": sums["l1"] / n,
            }
            epoch_metrics.update(scores)
            yield Progress("epoch", epoch, config.epochs, summary, metrics=epoch_metrics)
            if stale >= config.patience:
                reason = "early_stopping"
                break
    finally:
        del loader, val_loader  # stops the worker process at once, also on cancel or error
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
