"""The protocols a contribution's ``target`` object implements.

These are structural (:class:`typing.Protocol`): a plugin does not import or subclass anything
from here; it only needs the attributes and methods below. Torch types appear only in the
annotations, so this module stays torch-free.

Segmenter
    A network factory. The core trains it on the project's human masks (or on generated masks
    when asked) with the segmentation recipe, exports it to ONNX, tiles fields, averages views,
    scores uncertainty and writes auto-masks: nothing in ``workflows/`` depends on which network
    it is. A network gives ``(N, 3, H, W)`` logits (background, cytoplasm, nucleus) for any
    ``H, W`` that are multiples of ``size_multiple`` (with no ``--input-size`` given, the size
    the core picks from the data is rounded up to a multiple of it). It may bring its own
    ``trainer`` (e.g. a GAN's generator and discriminator): a generator function with the
    signature and events of :func:`cytoreview.training.segmentation.train_segmenter`, given the
    network ``build`` made; that network is then exported and used for inference as is.
Classifier
    A cell classifier in the core's input layout: ``(N, 6, S, S)`` float32 (channels 0-2 the
    normalised RGB crop, 3-5 the one-hot mask) to ``(N, K)`` logits, with a ``cam_layer``
    attribute (a conv module for Grad-CAM++, or None: the review panel then says this
    classifier has no heatmap). It may bring its own trainer (several stages, features that
    are fitted rather than learned); the trainer has the signature of
    :func:`cytoreview.training.classification.train_classifier`, and may call
    ``on_best(weights, stats, model_config)`` with the config ``build`` needs (sizes fitted
    from the data). A method whose network cannot be exported to ONNX (e.g. OpenCV on numpy
    inside ``forward``) sets ``onnx_exportable = False``: it then runs in torch.
Mask generator
    Label masks (0 background, 1 cytoplasm, 2 nucleus) from an RGB image with no painting:
    stored as ``auto`` masks with the generator named as their source, never over a person's.
    ``generate`` may return ``(mask, uncertainty)``: a float in [0, 1], higher for a mask it is
    less sure of (the review queue shows those first). A generator that learns first (e.g. a
    classifier trained on the project's class labels, whose explanations become masks) has a
    ``prepare(examples, settings, *, cancel)`` generator function: ``examples`` is a sequence
    of :class:`~cytoreview.plugin_api.examples.LabelledImage` (test split left out), it yields
    :class:`~cytoreview.types.Progress` and returns a fitted object whose ``generate(rgb)``
    makes the masks; the fitted object may also have ``checkpoint() -> (config, state_dict)``
    (stored in the project's models, so a later run can reuse it) and ``describe() -> str``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

#: A ``torch.nn.Module`` (named in words: this module must not import torch).
Module = Any

__all__ = ["ClassifierMethod", "FittedGenerator", "MaskGeneratorMethod", "SegmenterMethod"]


@runtime_checkable
class SegmenterMethod(Protocol):
    """A segmentation network factory."""

    #: Input sides must be multiples of this (the network's total stride).
    size_multiple: int

    def build(self, settings: Any, *, classes: int, in_channels: int) -> Module:
        """A randomly initialised network giving ``(N, classes, H, W)`` logits."""
        ...

    def weight_targets(self, model: Module) -> list[Module]:
        """Modules a plain weights file may fit, best first (the whole model, its encoder...)."""
        ...


@runtime_checkable
class ClassifierMethod(Protocol):
    """A cell-classifier factory, with an optional trainer of its own."""

    def build(self, config: dict[str, Any]) -> Module:
        """The network from a checkpoint's config alone.

        ``config`` holds ``class_names``, ``input_size``, ``backbone``, ``mask_backbone``,
        ``dropout``, ``hidden`` and ``settings`` (this method's own, as plain values).
        """
        ...

    #: None: the core's trainer; else a generator function with the signature of
    #: :func:`cytoreview.training.classification.train_classifier`.
    trainer: Callable[..., Any] | None

    # Optional: ``describe(config) -> str``, a trained model in words for the report and the
    # review panel (default: ``ARCH on BACKBONE`` and the settings).


@runtime_checkable
class MaskGeneratorMethod(Protocol):
    """Masks without painting."""

    def generate(self, rgb: np.ndarray, settings: Any) -> np.ndarray | tuple[np.ndarray, float]:
        """``(H, W)`` uint8 labels (0, 1, 2) of an ``(H, W, 3)`` uint8 image (and uncertainty).

        Not called for a generator with a ``prepare`` step: its fitted object's
        ``generate(rgb)`` is.
        """
        ...

    # Optional: ``prepare(examples, settings, *, cancel) -> Generator[Progress, None, Fitted]``
    # (see the module docstring).


@runtime_checkable
class FittedGenerator(Protocol):
    """What a generator's ``prepare`` step returns."""

    def generate(self, rgb: np.ndarray) -> np.ndarray | tuple[np.ndarray, float]:
        """Labels of one image (and an uncertainty in [0, 1])."""
        ...

    # Optional: ``checkpoint() -> (config, state_dict)`` and ``describe() -> str``.
