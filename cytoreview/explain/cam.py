"""Class activation maps: where a classifier looked (Grad-CAM and Grad-CAM++).

Works on any ``nn.Module`` together with its target layer (a classifier's ``cam_layer``: a
module whose forward output is an ``(N, C, h, w)`` feature map that the logits depend on).

* Grad-CAM (Selvaraju et al., 2017): channel weights are the spatial mean of the gradient of
  the class score with respect to the feature map.
* Grad-CAM++ (Chattopadhay et al., 2018): pixel-wise weights
  ``alpha = g² / (2 g² + Σ_ab A_ab g³)`` and channel weights ``Σ alpha · ReLU(g)``, the
  closed form for an exponential of the score, in which the higher-order derivatives are
  powers of the first one (as in the authors' code and pytorch-grad-cam).

Grad-CAM++'s derivation assumes non-negative activations (a layer ending in a ReLU-like
activation, as the last block of the usual encoders). On a layer with strongly negative
activations ``Σ A`` can make the denominator negative and the weights flip sign; the formula
is kept as published rather than patched.

Either way the map is the ReLU of the weighted channel sum, divided by its maximum per image:
values lie in [0, 1], a map without positive evidence stays all zero, and no NaN comes out.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from torch import nn

from cytoreview.data.transforms import Letterbox
from cytoreview.errors import ConfigError
from cytoreview.models.devices import pick_torch_device

METHODS: tuple[str, ...] = ("gradcam", "gradcam++")
COLORMAPS: dict[str, int] = {
    "jet": cv2.COLORMAP_JET,
    "turbo": cv2.COLORMAP_TURBO,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "viridis": cv2.COLORMAP_VIRIDIS,
    "hot": cv2.COLORMAP_HOT,
    "bone": cv2.COLORMAP_BONE,
}

# One lock per model: two threads explaining the same model must not interleave the
# eval/train switch and its restore, nor move it between devices under each other.
_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _model_lock(model: nn.Module) -> threading.RLock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return fallback


def _model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the weights (a half-precision model needs half inputs)."""
    for tensor in model.parameters():
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def _resolve_targets(target: int | Sequence[int] | None, logits: torch.Tensor) -> torch.Tensor:
    n, k = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, int | np.integer):
        targets = [int(target)] * n
    else:
        targets = [int(t) for t in target]
        if len(targets) != n:
            raise ValueError(f"got {len(targets)} targets for a batch of {n} images")
    if bad := [t for t in targets if not 0 <= t < k]:
        raise ValueError(f"target classes {bad} out of range for a model with {k} classes")
    return torch.tensor(targets, dtype=torch.long, device=logits.device)


def cam_from_gradients(acts: np.ndarray, grads: np.ndarray, method: str) -> np.ndarray:
    """``(N, h, w)`` maps from ``(N, C, h, w)`` activations and gradients (float64).

    The one implementation of both formulas: :func:`class_activation_maps` feeds it autograd's
    gradients, :mod:`cytoreview.explain.cam_closed_form` the closed-form ones.
    """
    if method == "gradcam":
        weights = grads.mean(axis=(2, 3))
    else:
        g2 = grads * grads
        g3 = g2 * grads
        sum_a = acts.sum(axis=(2, 3), keepdims=True)
        denom = 2.0 * g2 + sum_a * g3
        # Where the denominator vanishes alpha is undefined; the authors' code sets it to 0
        # there (as where g == 0, which contributes nothing through ReLU(g) anyway).
        safe = np.where(denom != 0.0, denom, 1.0)
        alpha = np.where((grads != 0.0) & (denom != 0.0), g2 / safe, 0.0)
        weights = (alpha * np.maximum(grads, 0.0)).sum(axis=(2, 3))
    cam = np.einsum("nc,nchw->nhw", weights, acts)
    cam = np.maximum(np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    peak = cam.max(axis=(1, 2), keepdims=True)
    # Divide only where there is positive evidence: an all-zero map stays zero, never NaN.
    return np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0).astype(np.float32)


def class_activation_maps(
    model: nn.Module,
    layer: nn.Module,
    x: np.ndarray | torch.Tensor,
    target: int | Sequence[int] | None = None,
    method: str = "gradcam++",
) -> np.ndarray:
    """Grad-CAM or Grad-CAM++ maps of a batch at the resolution of ``layer``'s feature map.

    Parameters
    ----------
    model
        Any classifier returning logits ``(N, K)``; it runs in eval mode for the call.
    layer
        A submodule of ``model`` whose output is the ``(N, C, h, w)`` feature map to explain
        (a classifier's ``cam_layer``). It must run exactly once per forward pass.
    x
        ``(N, ...)`` model input, e.g. the ``(N, 6, S, S)`` classifier layout.
    target
        Class explained: one index for all images, one per image, or None for each image's
        predicted class. The score is the logit (pre-softmax), as in the papers.
    method
        ``"gradcam"`` or ``"gradcam++"``.

    Returns
    -------
    np.ndarray
        ``(N, h, w)`` float32 maps in [0, 1]; all zero where no position has positive evidence.

    Raises
    ------
    ConfigError
        For an unknown method, or a layer that does not yield one 4-D feature map per pass.
    ValueError
        For targets out of range or a target list of the wrong length.

    Notes
    -----
    The call leaves no state behind: the hook is removed and every submodule's train/eval
    flag restored in ``finally``, parameters' ``requires_grad`` and ``.grad`` are untouched.
    The feature map is detached into a fresh leaf inside the forward hook and the gradient
    taken with :func:`torch.autograd.grad` on that leaf: nothing flows into the backbone and
    no parameter gradient is accumulated. This replaces a module backward hook, which breaks
    when the next op is in-place (``ReLU(inplace=True)``, common in timm models). The hook
    acts only in the calling thread, and calls on one model are serialised by a lock, so it
    may run in a worker thread, also under ``torch.no_grad()`` or ``inference_mode``.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; valid: {', '.join(METHODS)}")
    x_t = torch.as_tensor(x)
    with _model_lock(model), torch.inference_mode(False), torch.enable_grad():
        device = _model_device(model, x_t.device)
        x_t = x_t.to(device=device, dtype=_model_dtype(model))
        if x_t.is_inference():  # made under inference_mode: autograd cannot record on it
            x_t = x_t.clone()
        captured: list[torch.Tensor] = []
        caller = threading.get_ident()

        def forward_hook(_module: nn.Module, _inputs: object, output: object) -> object:
            if threading.get_ident() != caller:  # another thread's forward: not ours
                return None
            if not isinstance(output, torch.Tensor) or output.ndim != 4:
                kind = getattr(output, "shape", type(output).__name__)
                raise ConfigError(f"the CAM layer must output an (N, C, h, w) tensor, got {kind}")
            leaf = output.detach().requires_grad_(True)
            captured.append(leaf)
            return leaf.clone()  # downstream in-place ops must not touch the leaf

        modes = [(m, m.training) for m in model.modules()]
        handle = layer.register_forward_hook(forward_hook)
        try:
            model.eval()
            logits = model(x_t)
            if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
                raise ConfigError(f"the model must return (N, K) logits, got {type(logits)}")
            if len(captured) != 1:
                raise ConfigError(
                    f"the CAM layer ran {len(captured)} times in one forward pass; "
                    "choose a layer of the model that runs exactly once"
                )
            acts = captured[0]
            targets = _resolve_targets(target, logits)
            score = logits.gather(1, targets[:, None]).sum()
            grads = None
            if score.requires_grad:
                (grads,) = torch.autograd.grad(score, acts, allow_unused=True)
            grads = torch.zeros_like(acts) if grads is None else grads
            a_np = acts.detach().to("cpu", torch.float64).numpy()
            g_np = grads.detach().to("cpu", torch.float64).numpy()
        finally:
            handle.remove()
            for module, training in modes:
                module.training = training
    return cam_from_gradients(a_np, g_np, method)


def upsample_heatmap(cam: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upsampling of a low-resolution ``(h, w)`` map to the ``(size, size)`` input.

    Returns
    -------
    np.ndarray
        ``(size, size)`` float32 in [0, 1] (NaN read as 0).
    """
    cam = np.asarray(cam, np.float32)
    if cam.ndim != 2 or cam.size == 0:
        raise ValueError(f"expected a 2-D (h, w) map, got shape {cam.shape}")
    cam = np.nan_to_num(cam, nan=0.0, posinf=1.0, neginf=0.0)
    out = cv2.resize(cam, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def heatmap_to_image(cam: np.ndarray, box: Letterbox) -> np.ndarray:
    """Map a low-resolution CAM onto the pixels of the original (un-letterboxed) image.

    Parameters
    ----------
    cam
        ``(h, w)`` map, e.g. one row of :func:`class_activation_maps`.
    box
        The :class:`~cytoreview.data.transforms.Letterbox` of the image's model input.

    Returns
    -------
    np.ndarray
        ``(H, W)`` float32 in [0, 1], ``(H, W) == box.orig_shape``: the map is upsampled to
        the letterboxed input (bilinear), the padding cropped, and the rest resized to the
        original shape (bilinear when enlarging, area when shrinking).
    """
    full = upsample_heatmap(cam, box.size)
    nh, nw = box.new_shape
    crop = full[box.top : box.top + nh, box.left : box.left + nw]
    h, w = box.orig_shape
    interp = cv2.INTER_AREA if h < nh and w < nw else cv2.INTER_LINEAR
    out = crop if crop.shape == (h, w) else cv2.resize(crop, (w, h), interpolation=interp)
    return np.clip(out.reshape(h, w), 0.0, 1.0).astype(np.float32, copy=False)


def explain_images(
    model: nn.Module,
    layer: nn.Module,
    inputs: np.ndarray | torch.Tensor,
    boxes: Sequence[Letterbox],
    method: str = "gradcam++",
    target: int | Sequence[int] | None = None,
    batch_size: int = 8,
    device: str = "auto",
) -> list[np.ndarray]:
    """Heatmaps of a set of letterboxed inputs, each at its original image's shape.

    Parameters
    ----------
    model, layer, method
        As for :func:`class_activation_maps`.
    inputs
        ``(N, 6, S, S)`` model inputs (numpy or torch).
    boxes
        The ``N`` letterbox geometries of the inputs.
    target
        One class for all, one per image, or None for each image's predicted class.
    batch_size
        Images per forward/backward pass.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``; the model is moved there for the call and
        moved back to where it was afterwards.

    Returns
    -------
    list of np.ndarray
        ``N`` float32 maps in [0, 1], map ``i`` of shape ``boxes[i].orig_shape``.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; valid: {', '.join(METHODS)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(inputs)
    if len(boxes) != n:
        raise ValueError(f"got {len(boxes)} letterboxes for {n} inputs")
    targets: list[int | None]
    if target is None or isinstance(target, int | np.integer):
        targets = [None if target is None else int(target)] * n
    else:
        targets = [int(t) for t in target]
        if len(targets) != n:
            raise ValueError(f"got {len(targets)} targets for {n} inputs")
    dev = pick_torch_device(device)
    with _model_lock(model):
        home = _model_device(model, dev)
        model.to(dev)
        try:
            maps: list[np.ndarray] = []
            for start in range(0, n, batch_size):
                stop = min(n, start + batch_size)
                chunk = targets[start:stop]
                tgt = None if chunk[0] is None else chunk
                maps.extend(class_activation_maps(model, layer, inputs[start:stop], tgt, method))
        finally:
            model.to(home)
    return [heatmap_to_image(m, b) for m, b in zip(maps, boxes, strict=True)]


def heatmap_overlay(
    image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, colormap: str = "jet"
) -> np.ndarray:
    """Blend a coloured heatmap over an RGB image.

    Parameters
    ----------
    image
        ``(H, W, 3)`` uint8 RGB.
    heatmap
        ``(H, W)`` values in [0, 1] (clipped; NaN read as 0).
    alpha
        Weight of the colour layer, in [0, 1]: 0 gives the image, 1 the colour map alone.
    colormap
        An OpenCV colour map name: one of :data:`COLORMAPS`.

    Returns
    -------
    np.ndarray
        A new ``(H, W, 3)`` uint8 RGB image.
    """
    if colormap not in COLORMAPS:
        raise ConfigError(f"unknown colormap {colormap!r}; valid: {', '.join(COLORMAPS)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    image = np.asarray(image)
    heatmap = np.asarray(heatmap, np.float32)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    if heatmap.shape != image.shape[:2]:
        raise ValueError(f"heatmap {heatmap.shape} does not match the image {image.shape[:2]}")
    level = np.clip(np.nan_to_num(heatmap, nan=0.0), 0.0, 1.0)
    level8 = np.round(level * 255).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(level8, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)
    blend = (1.0 - alpha) * image.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(np.round(blend), 0, 255).astype(np.uint8)
