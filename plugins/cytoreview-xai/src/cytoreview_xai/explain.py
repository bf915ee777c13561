"""Relevance maps of the classifier's decision: Grad-CAM++ and LRP with the paper's rule sets.

Which score is explained: the **predicted class's logit**, as in the paper (its Table 7 shows
each image's heatmap for the class the model gave it; Grad-CAM++ and LRP both start from "the
target class score"). For an abnormal cell that is the evidence for "abnormal", for a normal
one the evidence for "normal": both are the cell's own nucleus and cytoplasm in the paper's
examples, which is what the masks need.

* **Grad-CAM++** is CytoReview's own (:func:`cytoreview.explain.cam.class_activation_maps`) on
  the network's ``cam_layer`` (the ReLU before the last max pool), upsampled bilinearly to the
  128 px input. Values in [0, 1].
* **LRP** is zennit's (a maintained LRP library) with the paper's Table 2 composites for VGG:

  =================  ==============================  ==================
  layers             rule set 1 (``lrp-1``)          rule set 2 (``lrp-2``)
  =================  ==============================  ==================
  conv1_1            z^B (ImageNet-normalised box)   z^B
  blocks 1-3         LRP-gamma (0.25)                LRP-gamma
  blocks 4-5         LRP-epsilon (0.25 x RMS of z)   LRP-gamma
  dense layers       LRP-0                           LRP-gamma
  max pools          as average pools (z rule)       as average pools
  =================  ==============================  ==================

  The paper's "changed layers" column replaces each max pool by an average pool for the
  relevance pass, as in Montavon et al.'s LRP tutorial: the forward pass keeps the max pool,
  and relevance is shared among the pooled inputs in proportion to their activations
  (:class:`AveragePoolRule`) instead of all going to the winner. The dense layers "as
  convolutions" (a 4x4 and two 1x1 convolutions) compute the same relevance as the dense
  layers themselves on a 128 px input, so the dense layers keep their rules directly. LRP-0 is
  zennit's epsilon rule with its 1e-6 stabiliser; LRP-epsilon's epsilon is 0.25 times the RMS
  of the layer's pre-activations (Montavon et al.'s choice; the paper gives no value); gamma is
  0.25 (theirs, and zennit's default). Relevance is summed over the colour channels, negatives
  (evidence against the class) set to 0 and divided by its maximum. Before grouping, LRP maps
  are log-scaled as the paper's formula 8 (``log(1 + 1000 r) / log(1000)``, the grouping's
  ``log_scale_factor``): LRP concentrates on the nucleus so much that without it cytoplasm and
  background cannot be told apart (the paper's Table 4 against 5).

Conservation: the input relevance of rule set 2 sums to the explained logit (within a relative
4e-5 on bias-free random networks; biases absorb their share, 1-6 % with N(0, 0.01) biases);
rule set 1's epsilon layers absorb part of it by design (0.2-0.9 of the logit reached the
input on those networks), so its sum is smaller than the logit, never larger.

Both give a ``(128, 128)`` float32 map in [0, 1] aligned with the letterboxed input.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.functional import avg_pool2d
from zennit.attribution import Gradient
from zennit.composites import NameMapComposite
from zennit.core import Hook, Stabilizer, stabilize
from zennit.rules import Epsilon, Gamma, ZBox

from cytoreview.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cytoreview.errors import ConfigError
from cytoreview.explain.cam import class_activation_maps, upsample_heatmap
from cytoreview_xai.networks import XaiVgg
from cytoreview_xai.settings import EXPLANATIONS

#: Explanations whose maps the grouping log-scales first (the paper's Algorithm 2), with the
#: paper's factor.
LOG_SCALED: dict[str, float] = {"lrp-1": 1000.0, "lrp-2": 1000.0}

__all__ = [
    "LOG_SCALED",
    "AveragePoolRule",
    "explain_batch",
    "gradcam_plus_plus",
    "lrp_composite",
    "lrp_relevance",
]

GAMMA = 0.25
EPSILON_RMS = 0.25
#: Blocks 1-3 take LRP-gamma in rule set 1; the deeper ones LRP-epsilon.
_GAMMA_BLOCKS = 3


class AveragePoolRule(Hook):
    """Relevance through a max pool as if it were an average pool (z rule).

    The relevance ``R_k`` of a pooled output is shared among its inputs ``x_i`` in proportion
    to their activation, ``R_i = sum_k x_i / (sum_j x_j) R_k``: relevance is conserved, and
    every active input under a pooling window keeps a share. (zennit's default for a max pool
    is its gradient, which gives everything to the winner.)
    """

    def forward(self, module: nn.Module, input: tuple[torch.Tensor, ...], output: object) -> None:
        """Keep the pool's input for the backward pass."""
        self.stored_tensors["input"] = input

    def backward(
        self,
        module: nn.Module,
        grad_input: tuple[torch.Tensor, ...],
        grad_output: tuple[torch.Tensor, ...],
    ) -> tuple[torch.Tensor, ...]:
        """The input relevance from the output relevance ``grad_output``."""
        x = self.stored_tensors["input"][0].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            z = avg_pool2d(x, module.kernel_size, module.stride, module.padding)
        (share,) = torch.autograd.grad(z, x, grad_outputs=grad_output[0] / stabilize(z))
        return (x.detach() * share,)

    def copy(self) -> AveragePoolRule:
        """A fresh hook for another module (zennit's contract)."""
        return AveragePoolRule()


def _input_box(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Lowest and highest ImageNet-normalised input values per channel (pixels 0 and 255)."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return (0.0 - mean) / std, (1.0 - mean) / std


def lrp_composite(
    model: XaiVgg, rule_set: int, epsilon_rms: float = EPSILON_RMS
) -> NameMapComposite:
    """The paper's rule set 1 or 2 (module docstring) for ``model``, by layer names.

    Parameters
    ----------
    model
        A :class:`~cytoreview_xai.networks.XaiVgg` (either architecture: blocks are counted
        by max pools, so the Simplified network's block 4 is its last).
    rule_set
        1 or 2.
    epsilon_rms
        Rule set 1's LRP-epsilon, as a multiple of the RMS of the layer's pre-activations
        (tests set it near 0 to check that the rest of the rule set conserves relevance).
    """
    if rule_set not in (1, 2):
        raise ConfigError(f"LRP rule set must be 1 or 2, got {rule_set}")
    low, high = _input_box(next(model.parameters()).device)
    name_map: list[tuple[tuple[str, ...], Hook]] = []
    block = 1
    first = True
    for index, module in enumerate(model.features):
        name = f"features.{index}"
        if isinstance(module, nn.Conv2d):
            if first:
                rule: Hook = ZBox(low=low, high=high)
                first = False
            elif rule_set == 2 or block <= _GAMMA_BLOCKS:
                rule = Gamma(gamma=GAMMA)
            else:
                rule = Epsilon(epsilon=Stabilizer(epsilon_rms, norm_scale=True))
            name_map.append(((name,), rule))
        elif isinstance(module, nn.MaxPool2d):
            name_map.append(((name,), AveragePoolRule()))
            block += 1
    for index, module in enumerate(model.classifier):
        if isinstance(module, nn.Linear):
            dense: Hook = Epsilon(epsilon=1e-6) if rule_set == 1 else Gamma(gamma=GAMMA)
            name_map.append(((f"classifier.{index}",), dense))
    return NameMapComposite(name_map=name_map)


def _targets(logits: torch.Tensor, target: int | Sequence[int] | None) -> torch.Tensor:
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, int):
        return torch.full((len(logits),), target, dtype=torch.long, device=logits.device)
    return torch.as_tensor(list(target), dtype=torch.long, device=logits.device)


def lrp_relevance(
    model: XaiVgg,
    x: torch.Tensor,
    rule_set: int,
    target: int | Sequence[int] | None = None,
    *,
    epsilon_rms: float = EPSILON_RMS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Input relevance of the explained logit, before any summing or scaling.

    Parameters
    ----------
    model
        The classifier (put in eval mode for the call, its mode restored afterwards).
    x
        ``(N, 3, S, S)`` normalised input.
    rule_set
        1 or 2 (:func:`lrp_composite`).
    target
        Class explained: one for all, one per image, or None for each image's prediction.
    epsilon_rms
        Rule set 1's epsilon (:func:`lrp_composite`).

    Returns
    -------
    relevance, logits : torch.Tensor
        ``(N, 3, S, S)`` relevance (its sum is the explained logit, up to what biases and
        stabilisers absorb) and the ``(N, 2)`` logits.
    """
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(x)
        chosen = _targets(logits, target)
        # The output relevance is the explained logit itself, in its one-hot position.
        start = torch.zeros_like(logits)
        start[torch.arange(len(x)), chosen] = logits[torch.arange(len(x)), chosen]
        composite = lrp_composite(model, rule_set, epsilon_rms)
        with Gradient(model=model, composite=composite) as attributor:
            _, relevance = attributor(x.detach().clone().requires_grad_(True), start)
    finally:
        model.train(training)
    return relevance.detach(), logits


def gradcam_plus_plus(
    model: XaiVgg, x: torch.Tensor, target: int | Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM++ maps at the input resolution, and the probabilities.

    Returns
    -------
    maps, probs : np.ndarray
        ``(N, S, S)`` float32 in [0, 1] and ``(N, 2)`` softmax probabilities.
    """
    with torch.no_grad():
        was = model.training
        model.eval()
        probs = torch.softmax(model(x), dim=1).cpu().numpy()
        model.train(was)
    chosen = probs.argmax(axis=1).tolist() if target is None else target
    cams = class_activation_maps(model, model.cam_layer, x, chosen, "gradcam++")
    side = x.shape[-1]
    return np.stack([upsample_heatmap(c, side) for c in cams]), probs


def explain_batch(
    model: XaiVgg,
    x: torch.Tensor,
    method: str,
    target: int | Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Relevance maps for grouping, by the ``explanation`` setting's method.

    Parameters
    ----------
    model
        The classifier.
    x
        ``(N, 3, S, S)`` normalised input on the model's device.
    method
        One of :data:`~cytoreview_xai.settings.EXPLANATIONS`.
    target
        Class explained (default each image's prediction, as the paper).

    Returns
    -------
    maps, probs : np.ndarray
        ``(N, S, S)`` float32 maps in [0, 1] (Grad-CAM++ as is; LRP summed over the colour
        channels, negatives set to 0 and divided by the maximum) and ``(N, 2)``
        probabilities. LRP maps are log-scaled by the grouping (:data:`LOG_SCALED`).
    """
    if method not in EXPLANATIONS:
        raise ConfigError(f"unknown explanation {method!r}; valid: {', '.join(EXPLANATIONS)}")
    if method == "gradcam++":
        return gradcam_plus_plus(model, x, target)
    relevance, logits = lrp_relevance(model, x, int(method[-1]), target)
    per_pixel = relevance.sum(dim=1).cpu().numpy()
    peak = np.maximum(per_pixel.max(axis=(1, 2), keepdims=True), 0.0)
    positive = np.maximum(per_pixel, 0.0)
    maps = np.divide(positive, peak, out=np.zeros_like(positive), where=peak > 0)
    return maps, torch.softmax(logits, dim=1).cpu().numpy()
