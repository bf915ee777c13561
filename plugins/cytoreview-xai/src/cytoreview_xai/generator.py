"""The ``xai-weak`` mask generator: masks from class labels alone (Sritharan et al.).

``prepare`` (contract of :mod:`cytoreview.plugin_api.protocols`) trains the normal/abnormal
classifier on the project's labelled images (:mod:`cytoreview_xai.training`), or loads one
from the ``weights`` setting; the fitted object then masks each image by the paper's
Algorithms 1 and 2:

1. letterbox the image to the classifier's 128 px input (aspect kept, padded with the colour
   of its border);
2. explain the predicted class (:mod:`cytoreview_xai.explain`: Grad-CAM++ or LRP);
3. group the relevance into background / cytoplasm / nucleus
   (:func:`cytoreview_xai.grouping.group_relevance`; LRP relevance log-scaled first);
4. refine the groups with GrabCut, cell and nucleus separately, the nucleus kept inside the
   cell (:func:`cytoreview_xai.refine.refine_grouping`, one cell per image);
5. map the mask back to the image's own pixels (padding cropped, nearest neighbour).

**Uncertainty** (what the review queue sorts by, higher = look first): the noisy-OR
``1 - (1 - classifier_doubt) (1 - disagreement)`` of two independent reasons for a mask to be
wrong. ``classifier_doubt = 2 (1 - p)`` with ``p`` the probability of the predicted class
(0 for a sure call, 1 for a coin flip): an explanation of a decision the classifier hardly
made points at little. ``disagreement`` is how far GrabCut had to move the grouped mask
(:func:`cytoreview_xai.refine.disagreement`, 1 - mean Dice of cytoplasm and nucleus): where
the image's colours contradict the explanation, the mask is a guess. A mask with no cell at all
scores 1: every image is meant to hold a cell, so an empty mask is surely wrong. So the queue
starts with the cells the classifier could not call and those whose explanation did not fit
the cell's outline, which is where a pathologist's correction changes most.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from cytoreview.data.transforms import Letterbox, letterbox_image, to_tensor_layout
from cytoreview.errors import ConfigError, ImageReadError
from cytoreview.models.devices import pick_torch_device
from cytoreview.plugin_api import LabelledImage
from cytoreview.storage.checkpoints import load_weights
from cytoreview.types import CancelToken, Progress
from cytoreview_xai.explain import LOG_SCALED, explain_batch
from cytoreview_xai.grouping import group_relevance
from cytoreview_xai.networks import ARCHITECTURES, CLASS_NAMES, build_classifier
from cytoreview_xai.refine import refine_grouping
from cytoreview_xai.settings import INPUT_SIZE, XaiSettings
from cytoreview_xai.training import TrainedClassifier, model_input, train_classifier

__all__ = [
    "XAI_WEAK",
    "FittedXai",
    "XaiWeakGenerator",
    "combined_uncertainty",
    "load_classifier",
    "mask_from_map",
    "unletterbox_labels",
]


def combined_uncertainty(probability: float, disagreement: float, empty: bool) -> float:
    """The mask's uncertainty (module docstring): noisy-OR of classifier doubt and disagreement.

    Examples
    --------
    >>> combined_uncertainty(1.0, 0.0, False), combined_uncertainty(0.5, 0.0, False)
    (0.0, 1.0)
    >>> round(combined_uncertainty(0.9, 0.5, False), 2)
    0.6
    """
    if empty:
        return 1.0
    doubt = min(max(2.0 * (1.0 - probability), 0.0), 1.0)
    return float(min(max(1.0 - (1.0 - doubt) * (1.0 - disagreement), 0.0), 1.0))


def unletterbox_labels(labels: np.ndarray, box: Letterbox) -> np.ndarray:
    """A ``(size, size)`` label mask back on the original pixels (padding cropped, nearest)."""
    nh, nw = box.new_shape
    crop = np.ascontiguousarray(labels[box.top : box.top + nh, box.left : box.left + nw])
    h, w = box.orig_shape
    if crop.shape == (h, w):
        return crop
    # NEAREST_EXACT samples at pixel centres, as the letterbox's own resize of a mask does.
    return cv2.resize(crop, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


def mask_from_map(
    letterboxed: np.ndarray,
    relevance: np.ndarray,
    explanation: str,
    grouping: str,
    grabcut: bool,
) -> tuple[np.ndarray, float]:
    """Steps 3-4 at the classifier's input size: the label mask and the disagreement.

    Parameters
    ----------
    letterboxed
        ``(S, S, 3)`` uint8 letterboxed image.
    relevance
        ``(S, S)`` map of :func:`~cytoreview_xai.explain.explain_batch` for it.
    explanation
        Which method made it (LRP maps are log-scaled before grouping).
    grouping, grabcut
        The settings of the same names.
    """
    groups = group_relevance(relevance, grouping, log_scale_factor=LOG_SCALED.get(explanation))
    refined = refine_grouping(letterboxed, groups.labels, grabcut=grabcut)
    return refined.labels, refined.uncertainty


class FittedXai:
    """A trained classifier with the settings that turn its explanations into masks.

    Parameters
    ----------
    trained
        The classifier and its training metrics.
    settings
        The generator's settings (explanation, grouping, GrabCut).
    source
        Where the weights came from, in words (``trained on N images``, a file).
    """

    def __init__(self, trained: TrainedClassifier, settings: XaiSettings, source: str) -> None:
        self.trained = trained
        self.settings = settings
        self.source = source

    def generate(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        """``(H, W)`` uint8 labels of one RGB image, and the mask's uncertainty in [0, 1]."""
        rgb = np.ascontiguousarray(np.asarray(rgb, np.uint8)[..., :3])
        letterboxed, box = letterbox_image(rgb, INPUT_SIZE)
        model = self.trained.model
        device = next(model.parameters()).device
        x = torch.from_numpy(to_tensor_layout(letterboxed[None])).to(device)
        maps, probs = explain_batch(model, x, self.settings.explanation)
        labels, disagreement = mask_from_map(
            letterboxed, maps[0], self.settings.explanation, self.settings.grouping,
            self.settings.grabcut,
        )  # fmt: skip
        mask = unletterbox_labels(labels, box)
        uncertainty = combined_uncertainty(float(probs[0].max()), disagreement, not mask.any())
        return mask, uncertainty

    def checkpoint(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The classifier as a self-describing checkpoint (config of plain values, weights)."""
        spec = ARCHITECTURES[self.trained.classifier]
        config = {
            "arch": spec.name,
            "classifier": self.trained.classifier,
            "channels_scale": self.trained.channels_scale,
            "input_size": INPUT_SIZE,
            "normalisation": "imagenet",
            "class_names": list(CLASS_NAMES),
            "class_mapping": "abnormal = the project's binary 'needs review' call of the class",
            "val_metrics": dict(self.trained.metrics),
            "explained": "predicted class",
        }
        state = {k: v.detach().to("cpu") for k, v in self.trained.model.state_dict().items()}
        return config, state

    def describe(self) -> str:
        """One line: the classifier, what it learnt from and its validation scores."""
        m = self.trained.metrics
        spec = ARCHITECTURES[self.trained.classifier].name
        scores = (
            f", validation accuracy {m['val_accuracy']:.3f} / F1 {m['val_f1']:.3f}"
            if "val_accuracy" in m
            else ""
        )
        s = self.settings
        return (
            f"{spec} normal/abnormal classifier {self.source}{scores}; masks from "
            f"{s.explanation}, {s.grouping} grouping{', GrabCut' if s.grabcut else ''}"
        )


def load_classifier(path: str, settings: XaiSettings, device: str = "cpu") -> TrainedClassifier:
    """A classifier from a file an earlier run stored (``weights`` setting).

    A CytoReview checkpoint rebuilds the architecture its config names; a plain weights file
    must fit the ``classifier`` setting's architecture. Read with ``weights_only=True``.

    Raises
    ------
    ConfigError
        When the weights do not fit the architecture.
    """
    config, state = load_weights(Path(path).expanduser())
    config = config or {}
    name = str(config.get("classifier", settings.classifier))
    if name not in ARCHITECTURES:
        raise ConfigError(f"{path}: classifier {name!r} is not one of {', '.join(ARCHITECTURES)}")
    model = build_classifier(name, float(config.get("channels_scale", 1.0)))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"{path}: not a {ARCHITECTURES[name].name} classifier ({first})") from exc
    model.to(pick_torch_device(device)).eval()
    metrics = dict(config.get("val_metrics", {}))
    return TrainedClassifier(model, name, float(config.get("channels_scale", 1.0)), metrics)


class XaiWeakGenerator:
    """The ``xai-weak`` mask generator (the object behind the contribution's ``target``).

    Parameters
    ----------
    channels_scale
        The classifier's width factor: 1.0 is the paper's VGG16; tests set a small one on
        :data:`XAI_WEAK` to train in seconds. Not a setting.
    device
        Where the classifier trains and explains (``auto``: CUDA when present).
    """

    settings_type = XaiSettings

    def __init__(self, channels_scale: float = 1.0, device: str = "auto") -> None:
        self.channels_scale = channels_scale
        self.device = device
        self._loaded: dict[tuple[str, XaiSettings], FittedXai] = {}

    def prepare(
        self,
        examples: Sequence[LabelledImage],
        settings: XaiSettings,
        *,
        cancel: CancelToken | None = None,
    ) -> Generator[Progress, None, FittedXai | None]:
        """Train the classifier on ``examples`` (or load ``settings.weights``).

        Yields
        ------
        Progress
            Images read (a warning for each that cannot be), then one event per epoch.

        Returns
        -------
        FittedXai or None
            None when cancelled.

        Raises
        ------
        NotEnoughDataError
            With fewer than two readable images of either class.
        """
        if settings.weights:
            trained = load_classifier(settings.weights, settings, self.device)
            yield Progress("prepare", 1, 1, f"classifier loaded from {settings.weights}")
            return FittedXai(trained, settings, f"loaded from {settings.weights}")
        images, abnormal = [], []
        for i, example in enumerate(examples):
            if cancel is not None and cancel.cancelled:
                return None
            try:
                images.append(example.load())
            except ImageReadError as exc:
                yield Progress("prepare", i + 1, len(examples), f"{exc}; not learnt from",
                               level="warning")  # fmt: skip
                continue
            abnormal.append(example.abnormal)
        yield Progress("prepare", len(examples), len(examples), f"{len(images)} image(s) read")
        trained = yield from train_classifier(
            model_input(images), abnormal, classifier=settings.classifier,
            optimiser=settings.optimiser, epochs=settings.epochs, patience=settings.patience,
            cancel=cancel, channels_scale=self.channels_scale, device=self.device,
        )  # fmt: skip
        if trained is None:
            return None
        m = trained.metrics
        source = f"trained on {m['n_train']} labelled images ({m['n_val']} more validated)"
        return FittedXai(trained, settings, source)

    def generate(self, rgb: np.ndarray, settings: XaiSettings) -> tuple[np.ndarray, float]:
        """A mask with the classifier of ``settings.weights`` (no training without one).

        Raises
        ------
        ConfigError
            Without ``weights``: this generator learns from class labels first
            (``cytoreview masks-from-labels``).
        """
        if not settings.weights:
            raise ConfigError(
                "xai-weak learns from class labels first: run `cytoreview masks-from-labels`, "
                "or give a classifier an earlier run stored (--xai-weak-weights)"
            )
        key = (settings.weights, settings)
        if key not in self._loaded:
            trained = load_classifier(settings.weights, settings, self.device)
            self._loaded = {key: FittedXai(trained, settings, f"loaded from {settings.weights}")}
        return self._loaded[key].generate(rgb)


#: The contribution's target (``cytoreview_xai.generator:XAI_WEAK``).
XAI_WEAK = XaiWeakGenerator()
