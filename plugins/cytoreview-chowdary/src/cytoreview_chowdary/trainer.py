"""Training the feature-fusion MLP in two stages, as a generator of progress events.

Stage 1 trains each enabled CNN branch alone, with a temporary linear head, on the training
split (the core's data pipeline: letterboxed crops, augmentation, class balancing; Adam on the
cross-entropy, the rate lowered on plateaus, early stopping on the validation loss; the best
weights kept). Stage 2 freezes the branches, extracts every group's features of every image
(no augmentation), fits the SIFT codebook (k-means on the training split's descriptors) and one
PCA per group on the training split, and trains the MLP on the concatenated projections with
early stopping on the validation split. Only stage 2 improves the model that is saved: every
better MLP goes to ``on_best`` with the whole module's weights and the fitted sizes.

The split is the core's (:func:`~cytoreview.data.sampling.stratified_split` with the same
seed and fraction), so ``val_indices`` mean what they mean for the built-in classifiers.
Epoch events count on across the stages (branches, then MLP) so the live plot continues.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.functional import cross_entropy

from cytoreview.data.cls_dataset import ClassificationDataset, balanced_order
from cytoreview.data.sampling import stratified_split
from cytoreview.errors import NotEnoughDataError
from cytoreview.models.devices import describe_device, pick_torch_device
from cytoreview.training.classification import (
    ClsEpochStats,
    ClsTrainConfig,
    ClsTrainResult,
    accuracy_macro_f1,
    prepare_labels,
)
from cytoreview.training.runtime import autocast_for, decay_lr, seed_everything, usable_cores
from cytoreview.types import CancelToken, Progress
from cytoreview_chowdary.branches import CnnBranch
from cytoreview_chowdary.features import fit_codebook, fit_pca, grey_from_input, lbp_histogram
from cytoreview_chowdary.fusion_mlp import FeatureFusionMlp, settings_of

__all__ = ["train_feature_fusion"]

_BALANCE = {"balanced": "epoch", "oversample": "majority", "none": None}
# Share of a time budget the CNN branches may spend together (the rest: features and MLP).
_CNN_SHARE = 0.8
# The MLP trains in seconds: it may wait longer for an improvement than a CNN.
_MLP_MIN_PATIENCE = 20
# At most this many training descriptors feed k-means (enough for 150 words, fast).
_MAX_DESCRIPTORS = 60_000


def _batches(order: Sequence[int], size: int) -> list[list[int]]:
    out = [list(order[i : i + size]) for i in range(0, len(order), size)]
    if len(out) > 1 and len(out[-1]) == 1:  # batch norm cannot train on one sample
        out[-2].extend(out.pop())
    return out


def _stack(dataset: ClassificationDataset, positions: list[int], device: torch.device) -> tuple:
    pairs = [dataset[p] for p in positions]
    x = torch.stack([p[0] for p in pairs]).to(device)
    return x, torch.stack([p[1] for p in pairs]).to(device)


def _load_fitting(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Copy the tensors of ``state`` that fit ``model`` (name and shape); (fitted, total)."""
    target = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in target and v.shape == target[k].shape}
    model.load_state_dict(fitting, strict=False)
    return len(fitting), len(target)


class _Clock:
    """Cancel and time-budget checks shared by the stages."""

    def __init__(self, config: ClsTrainConfig, cancel: CancelToken | None) -> None:
        self.start = time.perf_counter()
        self.budget = config.time_budget_s
        self.cancel = cancel

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def stop(self, share: float = 1.0) -> str | None:
        """``"cancelled"``, ``"time_budget"`` (past ``share`` of the budget) or None."""
        if self.cancel is not None and self.cancel.cancelled:
            return "cancelled"
        if self.budget is not None and self.elapsed() > self.budget * share:
            return "time_budget"
        return None


class _Counter:
    """Global epoch and step numbers across the stages (the live plot's x axis)."""

    def __init__(self, total_epochs: int, total_steps: int) -> None:
        self.epoch, self.step = 0, 0
        self.total_epochs, self.total_steps = total_epochs, total_steps


def _train_branch(
    name: str,
    branch: CnnBranch,
    train_set: ClassificationDataset,
    val_set: ClassificationDataset,
    config: ClsTrainConfig,
    device: torch.device,
    clock: _Clock,
    counter: _Counter,
    share: float,
) -> Generator[Progress, None, str | None]:
    """Stage 1 for one branch; its best weights (lowest validation loss) stay in ``branch``."""
    optimiser = torch.optim.Adam(
        branch.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    val_labels = np.array(val_set.labels)
    best_loss, stale = math.inf, 0
    best_state = {k: v.detach().clone() for k, v in branch.state_dict().items()}
    order_rng = np.random.default_rng([config.seed, len(name)])
    stopped: str | None = None
    for epoch in range(1, config.epochs + 1):
        started, lr = time.perf_counter(), optimiser.param_groups[0]["lr"]
        train_set.set_epoch(epoch)
        branch.train()
        running, seen = 0.0, 0
        order = order_rng.permutation(len(train_set)).tolist()
        for positions in _batches(order, config.batch_size):
            if stopped := clock.stop(share):
                break
            x, y = _stack(train_set, positions, device)
            optimiser.zero_grad(set_to_none=True)
            with autocast_for(device, config.amp):
                logits = branch(x[:, :3])
            loss = cross_entropy(logits.float(), y)
            loss.backward()
            optimiser.step()
            running += float(loss.detach()) * len(positions)
            seen += len(positions)
            counter.step += 1
            metrics = {"loss": float(loss.detach()), "epoch": counter.epoch + 1}
            yield Progress("train", counter.step, counter.total_steps, metrics=metrics)
        if stopped:
            break
        val_loss, probs = _validate_branch(branch, val_set, config.batch_size, device, config.amp)
        accuracy, macro_f1 = accuracy_macro_f1(val_labels, probs.argmax(1))
        improved = val_loss < best_loss - config.min_delta
        if improved:
            best_loss, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in branch.state_dict().items()}
        else:
            stale += 1
            if config.lr_patience and stale % config.lr_patience == 0:
                decay_lr(optimiser, config.lr_factor, config.min_lr)
        counter.epoch += 1
        yield Progress(
            "epoch", counter.epoch, counter.total_epochs,
            f"{name} branch epoch {epoch}/{config.epochs}: train {running / max(seen, 1):.4f}, "
            f"val {val_loss:.4f}, accuracy {accuracy:.3f}, macro-F1 {macro_f1:.3f}"
            + (" (best)" if improved else "") + f" [{time.perf_counter() - started:.0f} s]",
            metrics={"train_loss": running / max(seen, 1), "val_loss": val_loss,
                     "val_accuracy": accuracy, "val_macro_f1": macro_f1, "lr": lr},
        )  # fmt: skip
        if stale >= config.patience:
            break
    branch.load_state_dict(best_state)
    branch.eval()
    return stopped


@torch.inference_mode()
def _validate_branch(
    branch: CnnBranch, dataset: ClassificationDataset, batch: int, device: torch.device, amp: bool
) -> tuple[float, np.ndarray]:
    branch.eval()
    total, probs = 0.0, []
    for positions in _batches(list(range(len(dataset))), batch):
        x, y = _stack(dataset, positions, device)
        with autocast_for(device, amp):
            logits = branch(x[:, :3]).float()
        total += float(cross_entropy(logits, y, reduction="sum"))
        probs.append(torch.softmax(logits, 1).cpu().numpy())
    return total / max(len(dataset), 1), np.concatenate(probs)


@torch.inference_mode()
def _extract(
    model: FeatureFusionMlp,
    dataset: ClassificationDataset,
    batch: int,
    device: torch.device,
    clock: _Clock,
) -> Generator[Progress, None, dict[str, np.ndarray] | None]:
    """Raw features of every image (groups -> ``(N, D)``), the codebook not yet applied.

    BoVW needs the codebook first; its descriptors are returned under ``"_sift"`` (a list).
    """
    model.eval()
    parts: dict[str, list[Any]] = {}
    batches = _batches(list(range(len(dataset))), batch)
    for i, positions in enumerate(batches, start=1):
        if clock.stop() == "cancelled":
            return None
        x, _ = _stack(dataset, positions, device)
        rgb = x[:, :3]
        for name, branch in model.branches.items():
            parts.setdefault(name, []).append(branch.deep_features(rgb).float().cpu().numpy())
        if model.settings.lbp or model.bovw is not None:
            grey = grey_from_input(rgb)
            if model.settings.lbp:
                parts.setdefault("lbp", []).append(lbp_histogram(grey).cpu().numpy())
            if model.bovw is not None:
                parts.setdefault("_sift", []).extend(model.bovw.descriptors(grey))
        yield Progress("features", i, len(batches), f"features of {len(dataset)} images")
    out: dict[str, Any] = {k: np.concatenate(v) for k, v in parts.items() if k != "_sift"}
    if "_sift" in parts:
        out["_sift"] = parts["_sift"]
    return out


def _bovw_histograms(descriptors: list[np.ndarray], codebook: np.ndarray) -> np.ndarray:
    words = torch.from_numpy(codebook)
    out = np.zeros((len(descriptors), len(codebook)), np.float32)
    for i, desc in enumerate(descriptors):
        if len(desc):
            nearest = torch.cdist(torch.from_numpy(desc), words).argmin(1)
            counts = np.bincount(nearest.numpy(), minlength=len(codebook)).astype(np.float32)
            out[i] = counts / counts.sum()
    return out


def train_feature_fusion(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    labels: Sequence[str],
    class_names: Sequence[str],
    config: ClsTrainConfig,
    *,
    cancel: CancelToken | None = None,
    on_best: Callable[..., None] | None = None,
    init_state: dict[str, torch.Tensor] | None = None,
) -> Generator[Progress, None, ClsTrainResult]:
    """Train the feature-fusion MLP (signature of the core's ``train_classifier``).

    ``config.epochs``, ``patience``, ``lr``, ``batch_size``, ``balance`` and ``augment`` drive
    each CNN branch; the MLP has its own settings (``mlp_epochs``, ``mlp_batch``,
    ``mlp_lr``). ``init_state`` (a previous model of this classifier, or the core's
    ``--weights`` loaded into the first branch) starts the branches from the tensors that fit.
    ``on_best`` receives ``(weights, stats, model_config)``: the config carries the fitted sizes.

    Raises
    ------
    UnknownClassError, NotEnoughDataError
        As the core trainer.
    """
    clock = _Clock(config, cancel)
    if not len(images) == len(masks) == len(labels):
        raise ValueError(f"{len(images)} images, {len(masks)} masks, {len(labels)} labels")
    trained, y, notes = prepare_labels(list(labels), list(class_names))
    train_idx, val_idx = stratified_split(list(labels), config.val_fraction, config.seed)
    if not val_idx:
        raise NotEnoughDataError("no class has two examples: nothing to validate on")
    for note in notes:
        yield Progress("train", 0, 0, note, level="warning")
    settings = settings_of({"settings": config.settings})
    seed_everything(config.seed)
    device = pick_torch_device(config.device)
    if device.type == "cpu" and config.threads is not None:
        torch.set_num_threads(max(1, min(config.threads, usable_cores())))
    base_config = config.model_config(trained)
    model = FeatureFusionMlp(settings, len(trained), config.input_size, None, config.dropout)
    if init_state is not None:
        fitted, total = _load_fitting(model.branches, _strip(init_state, "branches."))
        note = f"initial weights: {fitted} of {total} branch tensors fitted (the rest random)"
        notes.append(note)
        yield Progress("train", 0, 0, note, level="warning" if fitted < total else "info")
    model.to(device)

    def subset(idx: list[int], augment: bool) -> ClassificationDataset:
        return ClassificationDataset(
            [images[i] for i in idx], [masks[i] for i in idx], [y[i] for i in idx],
            config.input_size, config.augment if augment else None, config.seed,
            balance=_BALANCE[config.balance] if augment else None,
        )  # fmt: skip

    train_set, val_set = subset(train_idx, True), subset(val_idx, False)
    n_branches = len(model.branches)
    steps = len(_batches(list(range(len(train_set))), config.batch_size)) * config.epochs
    mlp_steps = len(_batches(list(range(len(train_idx))), settings.mlp_batch)) * settings.mlp_epochs
    counter = _Counter(n_branches * config.epochs + settings.mlp_epochs,
                       n_branches * steps + mlp_steps)  # fmt: skip
    device_name = describe_device(device)
    yield Progress(
        "train", 0, counter.total_steps,
        f"training {config.arch} on {device_name}: {len(train_idx)} train, {len(val_idx)} "
        f"validation images, classes {', '.join(trained)}; groups {', '.join(settings.groups)}",
        device=device_name,
    )  # fmt: skip

    # -- stage 1: the CNN branches -----------------------------------------------------------
    reason = "max_epochs"
    for i, (name, branch) in enumerate(model.branches.items(), start=1):
        share = _CNN_SHARE * i / n_branches
        stopped = yield from _train_branch(
            name, branch, train_set, val_set, config, device, clock, counter, share
        )
        if stopped == "cancelled":
            reason = "cancelled"
            break
    empty = np.zeros((0, len(trained)), np.float32)
    val_labels = np.array([y[i] for i in val_idx], np.int64)
    if reason == "cancelled":
        return _result(model, trained, base_config, [], None, reason, device_name, clock,
                       val_idx, val_labels, empty, notes)  # fmt: skip

    # -- stage 2: features, codebook, PCA ----------------------------------------------------
    everything = subset(list(range(len(images))), False)
    raw = yield from _extract(model, everything, config.batch_size, device, clock)
    if raw is None:
        return _result(model, trained, base_config, [], None, "cancelled", device_name, clock,
                       val_idx, val_labels, empty, notes)  # fmt: skip
    fitted: dict[str, Any] = {"pca_dims": {}, "kept_variance": {}}
    if model.bovw is not None:
        sift = raw.pop("_sift")
        pool = [sift[i] for i in train_idx if len(sift[i])]
        pooled = np.concatenate(pool) if pool else np.zeros((0, 128), np.float32)
        if len(pooled) > _MAX_DESCRIPTORS:
            pick = np.random.default_rng(config.seed).choice(len(pooled), _MAX_DESCRIPTORS, False)
            pooled = pooled[pick]
        yield Progress("features", 0, 0, f"k-means codebook of {settings.words} words from "
                       f"{len(pooled)} SIFT descriptors")  # fmt: skip
        codebook = fit_codebook(pooled, settings.words, config.seed)
        raw["bovw"] = _bovw_histograms(sift, codebook)
        fitted["words"] = len(codebook)
        if len(codebook) < settings.words:
            notes.append(f"SIFT codebook: {len(codebook)} words (fewer distinct descriptors "
                         f"than {settings.words})")  # fmt: skip
    fits = {}
    for group in model.pca:
        mean, components, scale, kept = fit_pca(raw[group][train_idx], settings.variance)
        fits[group] = (mean, components, scale)
        fitted["pca_dims"][group] = len(components)
        fitted["kept_variance"][group] = round(kept, 4)
    model_config = {**base_config, "fitted": fitted}
    # Rebuilt at the fitted sizes; the trained branches carry over.
    branches = {k: v.detach().clone() for k, v in model.branches.state_dict().items()}
    model = FeatureFusionMlp(settings, len(trained), config.input_size, fitted, config.dropout)
    model.branches.load_state_dict(branches)
    if model.bovw is not None:
        model.bovw.codebook.copy_(torch.from_numpy(codebook))
    for group, (mean, components, scale) in fits.items():
        model.pca[group].set_fitted(mean, components, scale)
    dims = ", ".join(f"{g} {raw[g].shape[1]}->{fitted['pca_dims'][g]}" for g in model.pca)
    yield Progress("features", 1, 1, f"PCA to {settings.variance:g} % of the variance: {dims}")
    fused = model.fuse({g: torch.from_numpy(np.asarray(raw[g])) for g in model.pca}).float()

    # -- stage 2: the MLP --------------------------------------------------------------------
    history: list[ClsEpochStats] = []
    best, best_probs, reason = yield from _train_mlp(
        model, fused, y, train_idx, val_idx, config, clock, counter, history, model_config,
        on_best,
    )  # fmt: skip
    return _result(model, trained, model_config, history, best, reason, device_name, clock,
                   val_idx, val_labels, best_probs if best else empty, notes)  # fmt: skip


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Branch tensors of a whole-model state, named as in ``model.branches``."""
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def _train_mlp(
    model: FeatureFusionMlp,
    fused: torch.Tensor,
    y: list[int],
    train_idx: list[int],
    val_idx: list[int],
    config: ClsTrainConfig,
    clock: _Clock,
    counter: _Counter,
    history: list[ClsEpochStats],
    model_config: dict[str, Any],
    on_best: Callable[..., None] | None,
) -> Generator[Progress, None, tuple[ClsEpochStats | None, np.ndarray, str]]:
    """Train ``model.mlp`` on precomputed fused features; the best weights stay in ``model``."""
    settings = model.settings
    mlp = model.mlp.cpu()
    targets = torch.tensor(y, dtype=torch.int64)
    x_train, y_train = fused[train_idx], targets[train_idx]
    x_val, y_val = fused[val_idx], targets[val_idx]
    optimiser = torch.optim.Adam(mlp.parameters(), lr=settings.mlp_lr, weight_decay=1e-4)
    patience = max(config.patience, _MLP_MIN_PATIENCE)
    best_loss, best, stale = math.inf, None, 0
    best_probs = np.zeros((0, model.num_classes), np.float32)
    best_mlp = {k: v.clone() for k, v in mlp.state_dict().items()}
    rng = np.random.default_rng(config.seed)
    balance = _BALANCE[config.balance]
    reason = "max_epochs"
    for epoch in range(1, settings.mlp_epochs + 1):
        started, lr = time.perf_counter(), optimiser.param_groups[0]["lr"]
        if balance is None:
            order = rng.permutation(len(train_idx)).tolist()
        else:
            length = len(train_idx) if balance == "epoch" else None
            order = balanced_order(y_train.tolist(), rng, length)
        mlp.train()
        running, seen = 0.0, 0
        for positions in _batches(order, settings.mlp_batch):
            if stop := clock.stop():
                reason = stop
                break
            optimiser.zero_grad(set_to_none=True)
            loss = cross_entropy(mlp(x_train[positions]), y_train[positions])
            loss.backward()
            optimiser.step()
            running += float(loss.detach()) * len(positions)
            seen += len(positions)
            counter.step += 1
        if reason != "max_epochs":
            break
        metrics = {"loss": running / max(seen, 1), "epoch": counter.epoch + 1}
        yield Progress("train", counter.step, counter.total_steps, metrics=metrics)
        mlp.eval()
        with torch.inference_mode():
            logits = mlp(x_val)
            val_loss = float(cross_entropy(logits, y_val))
            probs = torch.softmax(logits, 1).numpy().astype(np.float32)
        accuracy, macro_f1 = accuracy_macro_f1(y_val.numpy(), probs.argmax(1))
        counter.epoch += 1
        stats = ClsEpochStats(counter.epoch, running / max(seen, 1), val_loss, accuracy, macro_f1,
                              time.perf_counter() - started, lr)  # fmt: skip
        history.append(stats)
        improved = val_loss < best_loss - config.min_delta
        if improved:
            best_loss, best, best_probs, stale = val_loss, stats, probs, 0
            best_mlp = {k: v.detach().clone() for k, v in mlp.state_dict().items()}
            if on_best is not None:
                state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                on_best(state, stats, model_config)
        else:
            stale += 1
        yield Progress(
            "epoch", counter.epoch, counter.total_epochs,
            f"MLP epoch {epoch}/{settings.mlp_epochs}: train {stats.train_loss:.4f}, "
            f"val {val_loss:.4f}, accuracy {accuracy:.3f}, macro-F1 {macro_f1:.3f}"
            + (" (best)" if improved else ""),
            metrics={"train_loss": stats.train_loss, "val_loss": val_loss,
                     "val_accuracy": accuracy, "val_macro_f1": macro_f1, "lr": lr},
        )  # fmt: skip
        if stale >= patience:
            reason = "early_stopping"
            break
    mlp.load_state_dict(best_mlp)
    return best, best_probs, reason


def _result(
    model: FeatureFusionMlp,
    trained: list[str],
    model_config: dict[str, Any],
    history: list[ClsEpochStats],
    best: ClsEpochStats | None,
    reason: str,
    device_name: str,
    clock: _Clock,
    val_idx: list[int],
    val_labels: np.ndarray,
    val_probs: np.ndarray,
    notes: list[str],
) -> ClsTrainResult:
    model.cpu().eval()
    return ClsTrainResult(
        state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
        class_names=trained, model_config=model_config, history=history, best=best,
        stop_reason=reason, device=device_name, seconds=clock.elapsed(),
        val_indices=list(val_idx), val_labels=val_labels, val_probs=val_probs, warnings=notes,
    )  # fmt: skip
