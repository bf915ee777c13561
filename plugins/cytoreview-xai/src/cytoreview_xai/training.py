"""Training the normal/abnormal classifier from class labels, as a generator of progress events.

The paper's recipe (Section III-C-2): cross-entropy, SGD at lr 0.001 (momentum 0.9), the rate
divided by 10 every 7 epochs, up to 50 epochs with early stopping on validation performance.
The paper fine-tuned ImageNet weights; here nothing is downloaded and the network starts from
random weights, where that SGD rate does not move it: on Herlev (488 training cells, the
network at a quarter of its widths) SGD at 0.001 and 0.003 stayed at chance (loss 0.69, every
cell called abnormal) for 8 epochs, and 0.01 started to learn at epoch 5 and fell back to
chance at epoch 7. Adam at 0.0001 with the same schedule reached 0.80 validation accuracy
(macro-F1 0.75) by epoch 8, so the ``optimiser`` setting defaults to ``adam``; ``sgd`` is the
paper's (for a ``weights``-free run it only makes sense with many more epochs).

What the paper leaves open, and what is chosen here:

* **Validation**: a stratified 20 % split (the core's
  :func:`~cytoreview.data.sampling.stratified_split`, seed 0); early stopping watches the
  validation macro-F1 (accuracy breaks ties), the best weights are kept.
* **Class balance**: the paper augments normal cells three times more than abnormal ones to
  balance them; here the cross-entropy weighs each class by its inverse frequency in the
  training split, which balances the loss without extra images.
* **Augmentation**: the eight flips and right-angle rotations of the square input (exact on
  a letterboxed crop: no interpolation, no border to fill); a cell has no orientation.
* **Batch**: 16 images (the paper gives 16 for its XceptionNet, none for VGG).
* **Threads**: on the CPU the intra-op thread count is chosen by timing steps
  (:class:`~cytoreview.training.runtime.ThreadTuner`): on a shared machine fewer threads
  than cores is often faster.

Cancelling stops between steps and returns None: a half-trained classifier would make poor
masks without saying so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cytoreview.data.sampling import stratified_split
from cytoreview.data.transforms import letterbox_image, to_tensor_layout
from cytoreview.errors import NotEnoughDataError
from cytoreview.models.devices import describe_device, pick_torch_device
from cytoreview.training.classification import accuracy_macro_f1
from cytoreview.training.runtime import ThreadTuner, seed_everything
from cytoreview.types import CancelToken, Progress
from cytoreview_xai.networks import ABNORMAL, CLASS_NAMES, XaiVgg, build_classifier
from cytoreview_xai.settings import INPUT_SIZE

__all__ = ["TrainedClassifier", "model_input", "predict_probs", "train_classifier"]

#: Learning rate per optimiser (SGD: the paper's).
LR: dict[str, float] = {"adam": 1e-4, "sgd": 1e-3}
MOMENTUM = 0.9
LR_STEP_EPOCHS = 7
LR_FACTOR = 0.1
BATCH_SIZE = 16
VAL_FRACTION = 0.2


@dataclass
class TrainedClassifier:
    """A fitted classifier and what its training measured.

    Attributes
    ----------
    model
        The network with its best weights, in eval mode.
    classifier
        The ``classifier`` setting it was built for (``adapted128`` or ``simplified``).
    channels_scale
        Its width factor (1.0 outside tests).
    metrics
        ``val_accuracy``, ``val_f1``, ``best_epoch``, ``epochs_run``, ``n_train``, ``n_val``,
        ``stop_reason``, ``seconds`` (empty for weights loaded from a file).
    """

    model: XaiVgg
    classifier: str
    channels_scale: float = 1.0
    metrics: dict[str, Any] = field(default_factory=dict)


def model_input(images: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, 128, 128, 3)`` uint8 letterboxed copies of RGB images of any size."""
    return np.stack([letterbox_image(np.ascontiguousarray(im), INPUT_SIZE)[0] for im in images])


def _dihedral(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each ``(H, W, 3)`` image turned by a random multiple of 90 degrees and maybe mirrored."""
    out = np.empty_like(batch)
    for i, image in enumerate(batch):
        turned = np.rot90(image, int(rng.integers(4)))
        out[i] = turned[:, ::-1] if rng.integers(2) else turned
    return out


def _tensor(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(to_tensor_layout(batch)).to(device)


def predict_probs(model: nn.Module, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """``(N, 2)`` softmax probabilities of ``(N, 128, 128, 3)`` uint8 letterboxed images."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            logits = model(_tensor(images[start : start + batch_size], device))
            out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
    model.train(was)
    return np.concatenate(out) if out else np.zeros((0, len(CLASS_NAMES)), np.float32)


def _check_labels(abnormal: np.ndarray) -> None:
    counts = {name: int(np.sum(abnormal == k)) for k, name in enumerate(CLASS_NAMES)}
    if min(counts.values()) < 2:
        raise NotEnoughDataError(
            "the classifier needs at least 2 normal and 2 abnormal labelled images (one of "
            f"each for validation); the project has {counts['normal']} normal and "
            f"{counts['abnormal']} abnormal"
        )


def train_classifier(
    images: np.ndarray,
    abnormal: Sequence[bool],
    *,
    classifier: str = "adapted128",
    optimiser: str = "adam",
    epochs: int = 50,
    patience: int = 7,
    cancel: CancelToken | None = None,
    channels_scale: float = 1.0,
    seed: int = 0,
    device: str = "auto",
) -> Generator[Progress, None, TrainedClassifier | None]:
    """Train the normal/abnormal classifier (module docstring for the recipe).

    Parameters
    ----------
    images
        ``(N, 128, 128, 3)`` uint8 letterboxed images (:func:`model_input`).
    abnormal
        The project's binary call of each image's class (True: "needs review").
    classifier
        ``adapted128`` or ``simplified``.
    optimiser
        ``adam`` or ``sgd`` (:data:`LR` gives their rates).
    epochs, patience
        Most epochs, and epochs without a better validation F1 before stopping.
    cancel
        Checked between steps.
    channels_scale
        Width factor (tests).
    seed
        Seeds the weights, the split's order of batches and the augmentation.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Yields
    ------
    Progress
        ``stage="train-classifier"``, one per epoch, with ``loss``, ``val_accuracy`` and
        ``val_f1`` in ``metrics``.

    Returns
    -------
    TrainedClassifier or None
        None when cancelled.

    Raises
    ------
    NotEnoughDataError
        With fewer than two images of either class.
    """
    y = np.asarray(abnormal, dtype=bool).astype(np.int64)
    if len(images) != len(y):
        raise ValueError(f"{len(images)} images for {len(y)} labels")
    _check_labels(y)
    seed_everything(seed)
    dev = pick_torch_device(device)
    model = build_classifier(classifier, channels_scale).to(dev)
    train_idx, val_idx = stratified_split([CLASS_NAMES[k] for k in y], VAL_FRACTION, seed)
    counts = np.bincount(y[train_idx], minlength=len(CLASS_NAMES)).astype(np.float64)
    weights = torch.tensor(len(train_idx) / (len(CLASS_NAMES) * counts), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weights.to(dev))
    if optimiser not in LR:
        raise ValueError(f"unknown optimiser {optimiser!r}; valid: {', '.join(LR)}")
    step_rule: torch.optim.Optimizer = (
        torch.optim.Adam(model.parameters(), lr=LR["adam"])
        if optimiser == "adam"
        else torch.optim.SGD(model.parameters(), lr=LR["sgd"], momentum=MOMENTUM)
    )
    schedule = torch.optim.lr_scheduler.StepLR(step_rule, LR_STEP_EPOCHS, LR_FACTOR)
    tuner = ThreadTuner() if dev.type == "cpu" else None
    rng = np.random.default_rng(seed)
    n_batches = math.ceil(len(train_idx) / BATCH_SIZE)
    best: dict[str, Any] = {"f1": -1.0, "accuracy": -1.0, "epoch": 0, "state": None}
    start = time.perf_counter()
    yield Progress(
        "train-classifier", 0, epochs,
        f"training {classifier} ({optimiser}) on {len(train_idx)} images "
        f"({int(counts[ABNORMAL])} abnormal), validating on {len(val_idx)}",
        device=describe_device(dev),
    )  # fmt: skip
    reason, epoch = "max_epochs", 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = rng.permutation(train_idx)
        losses = []
        for b in range(n_batches):
            if cancel is not None and cancel.cancelled:
                return None
            chosen = order[b * BATCH_SIZE : (b + 1) * BATCH_SIZE]
            x = _tensor(_dihedral(images[chosen], rng), dev)
            target = torch.from_numpy(y[chosen]).to(dev)
            if tuner is not None:
                tuner.start_step()
            step_rule.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), target)
            loss.backward()
            step_rule.step()
            if tuner is not None:
                tuner.end_step()
            losses.append(float(loss.detach()))
        schedule.step()
        predicted = predict_probs(model, images[val_idx]).argmax(axis=1)
        accuracy, f1 = accuracy_macro_f1(y[val_idx], predicted)
        if (f1, accuracy) > (best["f1"], best["accuracy"]):
            state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            best.update(f1=f1, accuracy=accuracy, epoch=epoch, state=state)
        loss_mean = float(np.mean(losses)) if losses else math.nan
        yield Progress(
            "train-classifier", epoch, epochs,
            f"epoch {epoch}: loss {loss_mean:.4f}, validation accuracy {accuracy:.3f}, F1 {f1:.3f}",
            metrics={"loss": loss_mean, "val_accuracy": accuracy, "val_f1": f1},
        )  # fmt: skip
        if epoch - best["epoch"] >= patience:
            reason = "early_stopping"
            break
    model.load_state_dict(best["state"])
    model.eval()
    metrics = {
        "val_accuracy": best["accuracy"], "val_f1": best["f1"], "best_epoch": best["epoch"],
        "epochs_run": epoch, "n_train": len(train_idx), "n_val": len(val_idx),
        "stop_reason": reason, "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    return TrainedClassifier(model, classifier, channels_scale, metrics)
