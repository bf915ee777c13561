"""Classifying cell crops: class probabilities from a torch model or an ONNX export.

Inputs are built by :func:`cytoreview.data.cls_dataset.make_inputs`, the very layout the model
was trained on. The ONNX graph takes ``image`` ``(N, 6, S, S)`` float32 and gives ``probs``
``(N, K)`` float32 (softmax inside), batch size dynamic; a cell classifier's graph also gives
what a Grad-CAM++ map needs without autograd (see :mod:`cytoreview.explain.cam_closed_form`):
``cam_features``, the ``(N, C, h, w)`` output of its ``cam_layer``, and for a model with a
hidden dense layer ``head_hidden``, that layer's ``(N, H)`` activations after the ReLU (their
sign is the ReLU's gradient). It runs in
:class:`~cytoreview.inference.cls_session.ClassifierSession`.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from cytoreview.data.cls_dataset import INPUT_CHANNELS, make_inputs
from cytoreview.errors import ConfigError
from cytoreview.inference.onnx_export import INPUT_NAME, OUTPUT_NAME
from cytoreview.inference.predictors import TorchPredictor
from cytoreview.inference.views import mean_of_views, stack_views
from cytoreview.models.classifiers import DEFAULT_ARCH, hidden_activation_layer
from cytoreview.models.measurement_model import MeasurementModel, combine_probs
from cytoreview.morphometry.features import feature_matrix
from cytoreview.plugin_api import find

__all__ = [
    "CAM_FEATURES",
    "HEAD_HIDDEN",
    "ClassifierSpec",
    "export_classifier_onnx",
    "has_cam_outputs",
    "hidden_activation_layer",
    "mean_over_views",
    "predict_class_probs",
    "with_measurements",
]

#: Output of the exported graph: the CAM layer's activations ``(N, C, h, w)``.
CAM_FEATURES = "cam_features"
#: Output of the exported graph: the dense head's hidden activations ``(N, H)`` (after ReLU).
HEAD_HIDDEN = "head_hidden"

# Said by torch's legacy exporter whatever the model (see onnx_export.export_onnx).
_HARMLESS_EXPORT_WARNINGS = (
    r"You are using the legacy TorchScript-based ONNX export",
    r"The feature will be removed\. Please remove usage of this function",
)


@dataclass(frozen=True)
class ClassifierSpec:
    """What inference needs to know about a classifier besides its weights."""

    input_size: int
    class_names: tuple[str, ...]
    arch: str = DEFAULT_ARCH
    #: The measurement model joined to the network (None: the network alone); see
    #: :mod:`cytoreview.models.measurement_model`.
    measurements: MeasurementModel | None = field(default=None, compare=False, repr=False)

    @property
    def uses_mask(self) -> bool:
        """Whether the model reads the mask channels (then every crop needs a mask)."""
        return find("classifier", self.arch).uses_mask

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ClassifierSpec:
        """From a checkpoint's config (``input_size``, ``class_names``, ``arch``, ...).

        A config with ``measurements`` gives the spec its measurement model.

        Raises
        ------
        ConfigError
            If ``input_size`` or ``class_names`` is missing.
        """
        missing = [k for k in ("input_size", "class_names") if k not in config]
        if missing:
            raise ConfigError(f"classifier config lacks {', '.join(missing)}")
        return cls(
            int(config["input_size"]),
            tuple(str(c) for c in config["class_names"]),
            str(config.get("arch", DEFAULT_ARCH)),
            MeasurementModel.from_config(config),
        )


def mean_over_views(
    predict: Callable[[np.ndarray], np.ndarray],
) -> Callable[[np.ndarray], np.ndarray]:
    """``predict`` averaged over the 8 rotations and mirror images of each input.

    The views of a ``(N, 6, S, S)`` batch go through ``predict`` as one ``(8 N, 6, S, S)``
    batch (one call: a session runs a large batch faster than eight small ones). Turning the
    letterboxed input turns the crop and its mask together, exactly as letterboxing the turned
    crop would. On Herlev (5 folds, the same models scored both ways) it gained 0.010 to 0.023
    Bethesda macro F1, depending on the training augmentation (``cytoreview.defaults.CLS``
    says why it is off by default).
    """

    def averaged(batch: np.ndarray) -> np.ndarray:
        return mean_of_views(predict(stack_views(batch)), len(batch))

    return averaged


def predict_class_probs(
    model_or_callable: torch.nn.Module | Callable[[np.ndarray], np.ndarray],
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None,
    spec: ClassifierSpec,
    batch_size: int = 16,
    device: str = "auto",
    tta: bool = False,
) -> np.ndarray:
    """Class probabilities of cell crops.

    Parameters
    ----------
    model_or_callable
        A classifier (``(N, 6, S, S)`` to logits; moved to ``device`` and set to eval mode in
        place) or any predictor mapping a ``(N, 6, S, S)`` float32 batch to ``(N, K)``
        probabilities, e.g. an :class:`~cytoreview.inference.predictors.OnnxPredictor`.
    images
        ``(H, W, 3)`` uint8 RGB crops, any sizes.
    masks
        Their 0/1/2 label masks; may be None (or hold None) only for image-only models.
    spec
        Input size, class names and architecture of the model.
    batch_size
        Crops per forward pass.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for a torch model; a predictor has its own.
    tta
        Average the 8 rotations and mirror images of each crop (:func:`mean_over_views`).
        With a measurement model (``spec.measurements``) the network's probabilities, with or
        without views, are joined to its call (:func:`with_measurements`).

    Returns
    -------
    np.ndarray
        ``(N, K)`` float32 probabilities, rows summing to 1, columns in ``spec.class_names``
        order.

    Raises
    ------
    ValueError
        If a mask-using model gets no mask, or the output has the wrong number of classes.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if masks is not None and len(masks) != len(images):
        raise ValueError(f"{len(images)} images but {len(masks)} masks")
    if spec.uses_mask and (masks is None or any(m is None for m in masks)):
        raise ValueError(f"a {spec.arch} classifier needs a mask for every crop")
    k = len(spec.class_names)
    if len(images) == 0:
        return np.zeros((0, k), np.float32)
    if isinstance(model_or_callable, torch.nn.Module):
        predictor: Callable[[np.ndarray], np.ndarray] = TorchPredictor(model_or_callable, device)
    else:
        predictor = model_or_callable
    if tta:
        predictor = mean_over_views(predictor)
    out = np.empty((len(images), k), np.float32)
    for lo in range(0, len(images), batch_size):
        hi = min(lo + batch_size, len(images))
        batch = make_inputs(images[lo:hi], None if masks is None else masks[lo:hi], spec.input_size)
        probs = np.asarray(predictor(batch), np.float32)
        if probs.shape != (hi - lo, k):
            raise ValueError(f"the model gave {probs.shape}, expected ({hi - lo}, {k})")
        out[lo:hi] = probs
    if spec.measurements is not None:
        return with_measurements(out, spec.measurements, images, masks)
    return out


def with_measurements(
    network_probs: np.ndarray,
    model: MeasurementModel,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray | None] | None,
) -> np.ndarray:
    """The classifier's call: the network's probabilities joined to the measurement model's.

    Raises
    ------
    ValueError
        If a crop has no mask (the measurements are read from it).
    """
    if masks is None or any(m is None for m in masks):
        raise ValueError("a classifier with a measurement model needs a mask for every crop")
    measured = model.probs(
        feature_matrix(images, [m for m in masks if m is not None], model.features)
    )
    return combine_probs(network_probs, measured)


class _WithCamOutputs(nn.Module):
    """Probabilities, plus the CAM layer's and the hidden layer's activations (by hooks)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        layers: dict[str, nn.Module | None] = {
            CAM_FEATURES: getattr(model, "cam_layer", None),
            HEAD_HIDDEN: hidden_activation_layer(model),
        }
        self.taps = {name: layer for name, layer in layers.items() if layer is not None}

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``probs`` then the tapped activations, in :attr:`taps` order."""
        captured: dict[str, torch.Tensor] = {}

        def tap(name: str) -> Callable[..., None]:
            def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
                captured[name] = output

            return hook

        handles = [layer.register_forward_hook(tap(n)) for n, layer in self.taps.items()]
        try:
            probs = torch.softmax(self.model(image), dim=1)
        finally:
            for handle in handles:
                handle.remove()
        return (probs, *(captured[name] for name in self.taps))


def export_classifier_onnx(model: torch.nn.Module, input_size: int, opset: int = 17) -> bytes:
    """Export a classifier to ONNX with a softmax head, as bytes.

    Parameters
    ----------
    model
        Maps ``(N, 6, S, S)`` inputs to ``(N, K)`` logits. Not changed: a float32 CPU copy in
        eval mode is exported.
    input_size
        ``S``, the side the model was trained at (fixed in the graph; the batch is dynamic).
    opset
        ONNX operator set version.

    Returns
    -------
    bytes
        The serialised model, checked by ``onnx.checker``: input ``"image"``, outputs
        ``"probs"`` first, then :data:`CAM_FEATURES` when the model has a ``cam_layer`` and
        :data:`HEAD_HIDDEN` when its head has a hidden ReLU layer. Asking ONNX Runtime for
        ``probs`` alone costs no more than before: the other two are intermediate tensors.
    """
    if input_size < 1:
        raise ValueError(f"input_size must be positive, got {input_size}")
    wrapper = _WithCamOutputs(deepcopy(model)).to(device="cpu", dtype=torch.float32).eval()
    names = [OUTPUT_NAME, *wrapper.taps]
    # Batch 2, not 1: a size-1 example invites the tracer to fold the batch into constants.
    example = torch.zeros(2, INPUT_CHANNELS, input_size, input_size, dtype=torch.float32)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        for message in _HARMLESS_EXPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        # The legacy exporter, as for segmenters: no onnxscript dependency, faster, silent.
        torch.onnx.export(
            wrapper,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    return data


def has_cam_outputs(onnx_bytes: bytes) -> bool:
    """Whether an exported classifier gives :data:`CAM_FEATURES` (exports before it did not).

    Parsing the graph takes ~10 ms for a 50 MB fusion model; no session is made.
    """
    graph = onnx.load_from_string(bytes(onnx_bytes)).graph
    return CAM_FEATURES in {output.name for output in graph.output}
