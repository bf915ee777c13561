"""Grad-CAM and Grad-CAM++ without autograd, for heads whose gradient has a closed form.

Grad-CAM++ needs the gradient ``g`` of the class score with respect to the CAM layer's
activations ``A``. When ``A`` is the image branch's final feature map and the rest of the
network is a pooling (global average, or flatten) followed by a linear layer, or by
``Linear, ReLU, Dropout, Linear`` (dropout is the identity at inference), ``g`` follows from
the head's weights and the sign of its hidden activations alone:

* one linear layer ``W`` (image-only): ``dy_c / d pooled = W[c]``;
* two layers ``W1``, ``W2`` with a ReLU between: ``dy_c / d pooled = W1^T (W2[c] * [h > 0])``,
  where ``h`` are the hidden activations (the ReLU's gradient is 1 where its output is
  positive, 0 elsewhere, as in torch);

and through the pooling: global average pooling spreads ``dy_c / d pooled_k`` evenly over the
``h x w`` positions of channel ``k`` (divided by ``h * w``); flattening reshapes it to
``(C, h, w)``. The mask branch enters only through ``h``. So one forward pass that also gives
``A`` and ``h`` (the ONNX graph does: :mod:`cytoreview.inference.cls_session`) yields the map,
with the very formula of :func:`~cytoreview.explain.cam.cam_from_gradients`.

Models of another form (a backbone with layers after its CAM layer, as EfficientNet's
``conv_head``, or another head) get no :class:`CamHead`; their maps come from autograd
(:func:`~cytoreview.explain.cam.class_activation_maps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cytoreview.errors import ConfigError
from cytoreview.explain.cam import METHODS, cam_from_gradients
from cytoreview.models.classifiers import (
    IMAGE_CHANNELS,
    FusionClassifier,
    ImageOnlyClassifier,
    hidden_activation_layer,
)

__all__ = [
    "CamHead",
    "cam_head_of",
    "closed_form_cams",
    "feature_gradients",
]


@dataclass(frozen=True)
class CamHead:
    """The part of a classifier after its CAM layer, as float32 numpy weights.

    Only the columns of the first layer that see the image branch are kept (they come first
    in the head's input): the mask branch enters the gradient only through the hidden
    activations. For a fusion-flatten model at 128 px that is 8192 of 16384 columns, and the
    one matrix-vector product per image the gradient costs reads 8 MB instead of 33 MB.

    Attributes
    ----------
    reduce
        ``"gap"`` (global average pooling: ``C`` image columns) or ``"flatten"``
        (``C * h * w`` image columns, at the model's input size only).
    w1
        ``(H, D_image)`` image columns of the first linear layer (``(K, C)`` for a
        single-layer head).
    w2
        ``(K, H)`` weights of the second linear layer, or None for a single linear layer.
    """

    reduce: str
    w1: np.ndarray
    w2: np.ndarray | None

    @property
    def needs_hidden(self) -> bool:
        """Whether the gradient depends on the hidden activations (two-layer heads)."""
        return self.w2 is not None


def _image_feature_shape(
    model: ImageOnlyClassifier | FusionClassifier, size: int
) -> tuple[int, int, int] | None:
    """``(C, h, w)`` of the image branch's output at ``size``, if it is the CAM layer's output.

    None when any layer lies in between (EfficientNet's ``conv_head``, ConvNeXt's norm): that
    layer would need its own gradient. One forward pass tells, whatever the backbone's class:
    the CAM layer's output must be, as an object, what the backbone returns.
    """
    backbone, layer = model.image_backbone, model.cam_layer
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    was_training = backbone.training
    try:
        backbone.eval()
        with torch.no_grad():
            param = next(backbone.parameters())
            out = backbone(torch.rand(1, IMAGE_CHANNELS, size, size, device=param.device))
    finally:
        handle.remove()
        backbone.train(was_training)
    if len(captured) != 1 or captured[0] is not out or out.ndim != 4:
        return None
    return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])


def _weights(linear: nn.Linear, columns: int | None = None) -> np.ndarray:
    w = linear.weight.detach().to("cpu", torch.float32)
    return np.ascontiguousarray(w[:, :columns].numpy() if columns is not None else w.numpy())


def cam_head_of(model: nn.Module) -> CamHead | None:
    """The closed-form head of a cell classifier, or None where autograd is needed.

    Parameters
    ----------
    model
        A classifier of :mod:`cytoreview.models.classifiers` (others give None).

    Returns
    -------
    CamHead or None
        None for an unknown model class or head, or when layers follow the CAM layer inside
        the image backbone.
    """
    input_size = int(getattr(model, "config", {}).get("input_size", 64))
    # Exact classes: a subclass may change forward() and with it the gradient.
    if type(model) is ImageOnlyClassifier:
        # Pooled: any size shows the structure, and a small one keeps the check quick.
        if not isinstance(model.head, nn.Linear):
            return None
        if _image_feature_shape(model, min(input_size, 64)) is None:
            return None
        return CamHead("gap", _weights(model.head), None)
    if type(model) is FusionClassifier:
        seq = model.head
        if hidden_activation_layer(model) is None:
            return None
        flatten = model.fusion == "flatten"
        shape = _image_feature_shape(model, input_size if flatten else min(input_size, 64))
        if shape is None:
            return None
        c, h, w = shape
        image_columns = c * h * w if flatten else c
        return CamHead(model.fusion, _weights(seq[0], image_columns), _weights(seq[3]))
    return None


def feature_gradients(
    head: CamHead,
    features: np.ndarray,
    hidden: np.ndarray | None,
    targets: Sequence[int] | np.ndarray,
) -> np.ndarray:
    """Gradient of each image's target logit with respect to the CAM layer's activations.

    Parameters
    ----------
    head
        The model's :class:`CamHead`.
    features
        ``(N, C, h, w)`` activations of the CAM layer.
    hidden
        ``(N, H)`` hidden activations of a two-layer head (after its ReLU); ignored otherwise.
    targets
        ``N`` class indices.

    Returns
    -------
    np.ndarray
        ``(N, C, h, w)`` float64, what ``torch.autograd.grad`` of the logit gives.

    Raises
    ------
    ValueError
        For mismatched shapes, targets out of range or a missing ``hidden``.
    """
    n, c, h, w = features.shape
    t = np.asarray(targets, np.intp).reshape(-1)
    if t.size != n:
        raise ValueError(f"got {t.size} targets for a batch of {n} images")
    k = (head.w2 if head.w2 is not None else head.w1).shape[0]
    if t.size and (t.min() < 0 or t.max() >= k):
        raise ValueError(f"target classes {t.tolist()} out of range for a model with {k} classes")
    if head.w2 is None:
        d_pooled = head.w1[t]  # (N, D_image)
    else:
        if hidden is None or hidden.shape != (n, head.w2.shape[1]):
            shape = None if hidden is None else hidden.shape
            raise ValueError(f"expected ({n}, {head.w2.shape[1]}) hidden activations, got {shape}")
        # The ReLU passes the gradient where its output is positive (torch: output > 0).
        d_hidden = head.w2[t] * (np.asarray(hidden) > 0)
        # (N, D_image), float32 like autograd's. einsum, not `@`: a matrix-vector product is
        # memory-bound, and BLAS's thread pool made it 10-25 ms instead of 0.5 ms on 2 busy cores.
        d_pooled = np.einsum("nh,hd->nd", d_hidden, head.w1)
    width = c if head.reduce == "gap" else c * h * w
    if width != d_pooled.shape[1]:
        raise ValueError(f"a {c}x{h}x{w} map does not fit a head of {d_pooled.shape[1]} columns")
    d_image = d_pooled.astype(np.float64)
    if head.reduce == "gap":
        return np.broadcast_to((d_image / (h * w))[:, :, None, None], (n, c, h, w))
    return d_image.reshape(n, c, h, w)


def closed_form_cams(
    head: CamHead,
    features: np.ndarray,
    hidden: np.ndarray | None,
    targets: Sequence[int] | np.ndarray,
    method: str = "gradcam++",
) -> np.ndarray:
    """Grad-CAM or Grad-CAM++ maps from one forward pass's activations, without autograd.

    Parameters
    ----------
    head, features, hidden, targets
        As for :func:`feature_gradients`.
    method
        ``"gradcam"`` or ``"gradcam++"``.

    Returns
    -------
    np.ndarray
        ``(N, h, w)`` float32 maps in [0, 1], as
        :func:`~cytoreview.explain.cam.class_activation_maps` gives.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; valid: {', '.join(METHODS)}")
    acts = np.asarray(features, np.float64)
    grads = feature_gradients(head, acts, hidden, targets)
    return cam_from_gradients(acts, grads, method)
