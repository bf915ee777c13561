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
from cytoreview.models.classifiers import IMAGE_CHANNELS, FusionClassifier, ImageOnlyClassifier

__all__ = [
    "CamHead",
    "cam_head_of",
    "closed_form_cams",
    "feature_gradients",
]


@dataclass(frozen=True)
class CamHead:
    """The part of a classifier after its CAM layer, as float64 numpy weights.

    Attributes
    ----------
    reduce
        ``"gap"`` (global average pooling) or ``"flatten"``; the image branch's entries come
        first in the head's input (``C`` of them pooled, ``C * h * w`` flattened).
    w1
        ``(H, D)`` weights of the first linear layer (``(K, D)`` for a single-layer head).
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


def _cam_layer_is_backbone_output(model: ImageOnlyClassifier | FusionClassifier) -> bool:
    """Whether the CAM layer's output is, as an object, the image backbone's output.

    Any layer in between (EfficientNet's ``conv_head``, ConvNeXt's norm) would need its own
    gradient; a forward pass on a small input tells, whatever the backbone's class.
    """
    backbone, layer = model.image_backbone, model.cam_layer
    # The structure, not the size, is tested: a small input keeps the check quick.
    size = min(int(model.config.get("input_size", 64)), 64)
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
    return len(captured) == 1 and captured[0] is out


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
    # Exact classes: a subclass may change forward() and with it the gradient.
    if type(model) is ImageOnlyClassifier:
        head = model.head
        if not isinstance(head, nn.Linear):
            return None
        if not _cam_layer_is_backbone_output(model):
            return None
        w = head.weight.detach().to("cpu", torch.float64).numpy()
        return CamHead("gap", w, None)
    if type(model) is FusionClassifier:
        seq = model.head
        layers_ok = (
            isinstance(seq, nn.Sequential)
            and len(seq) == 4
            and isinstance(seq[0], nn.Linear)
            and isinstance(seq[1], nn.ReLU)
            and isinstance(seq[2], nn.Dropout)
            and isinstance(seq[3], nn.Linear)
        )
        if not layers_ok or not _cam_layer_is_backbone_output(model):
            return None
        w1 = seq[0].weight.detach().to("cpu", torch.float64).numpy()
        w2 = seq[3].weight.detach().to("cpu", torch.float64).numpy()
        return CamHead(model.fusion, w1, w2)
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
        d_pooled = head.w1[t]  # (N, D)
    else:
        if hidden is None or hidden.shape != (n, head.w2.shape[1]):
            shape = None if hidden is None else hidden.shape
            raise ValueError(f"expected ({n}, {head.w2.shape[1]}) hidden activations, got {shape}")
        # The ReLU passes the gradient where its output is positive (torch: output > 0).
        d_hidden = head.w2[t] * (np.asarray(hidden) > 0)
        d_pooled = d_hidden @ head.w1  # (N, D)
    width = c if head.reduce == "gap" else c * h * w
    if width > d_pooled.shape[1]:
        raise ValueError(f"a {c}x{h}x{w} map does not fit a head of {d_pooled.shape[1]} inputs")
    d_image = d_pooled[:, :width]
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
