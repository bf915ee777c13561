"""Grad-CAM(++) without autograd equals the autograd implementation, for every architecture.

Tolerances, measured (random and trained tiny models; resnet18 at 128 px, random and briefly
trained on Herlev): the closed-form maps differ from autograd's by at most 1.3e-6 for Grad-CAM++
and 2e-5 for Grad-CAM (whose channel weights are signed means, so cancellations amplify the
float32 rounding), from torch's or from ONNX Runtime's activations alike. The tests allow 1e-4.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from cytoreview.data.cls_dataset import make_inputs
from cytoreview.data.synthetic import synth_dataset
from cytoreview.errors import ConfigError
from cytoreview.explain.cam import class_activation_maps
from cytoreview.explain.cam_closed_form import cam_head_of, closed_form_cams, feature_gradients
from cytoreview.inference.classify import export_classifier_onnx
from cytoreview.inference.cls_session import ClassifierSession
from cytoreview.models.classifiers import TINY_BACKBONE, build_classifier

CLASSES = ["NILM", "ASC-US", "LSIL", "HSIL"]
SIZE = 64
ARCHS = ["image-only", "fusion-gap", "fusion-flatten"]
TOL = 1e-4


def make_model(arch: str, backbone: str = TINY_BACKBONE) -> torch.nn.Module:
    torch.manual_seed(3)
    config = {"arch": arch, "backbone": backbone, "mask_backbone": backbone,
              "class_names": CLASSES, "input_size": SIZE}  # fmt: skip
    return build_classifier(config).eval()


@functools.cache
def exported(arch: str) -> ClassifierSession:
    """One ONNX session per architecture for the whole module (an export takes ~1 s)."""
    return ClassifierSession(export_classifier_onnx(make_model(arch), SIZE), "cpu", threads=1)


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    samples = [s for _, s in synth_dataset(6, seed=8, classes=CLASSES, size_range=(40, 90))]
    return make_inputs([s.image for s in samples], [s.mask for s in samples], SIZE)


def torch_activations(model: torch.nn.Module, x: np.ndarray):
    """The CAM layer's and the hidden layer's activations, and the logits, from torch."""
    captured: dict[str, torch.Tensor] = {}
    hooks = [model.cam_layer.register_forward_hook(lambda _m, _i, o: captured.update(a=o))]
    if hasattr(model, "fusion"):
        hooks.append(model.head[1].register_forward_hook(lambda _m, _i, o: captured.update(h=o)))
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    for hook in hooks:
        hook.remove()
    hidden = captured["h"].numpy() if "h" in captured else None
    return captured["a"].numpy(), hidden, logits


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_equal_autograd(arch: str, inputs: np.ndarray) -> None:
    model = make_model(arch)
    head = cam_head_of(model)
    assert head is not None and head.needs_hidden == (arch != "image-only")
    acts, hidden, logits = torch_activations(model, inputs)
    targets = logits.argmax(1)
    leaf: list[torch.Tensor] = []

    def swap(_m, _i, out):
        leaf.append(out.detach().requires_grad_(True))
        return leaf[0]

    handle = model.cam_layer.register_forward_hook(swap)
    score = model(torch.from_numpy(inputs)).gather(1, torch.from_numpy(targets)[:, None]).sum()
    handle.remove()
    (expected,) = torch.autograd.grad(score, leaf[0])
    got = feature_gradients(head, acts, hidden, targets)
    scale = np.abs(expected.numpy()).max()
    assert scale > 0 and np.abs(got - expected.numpy()).max() <= 1e-5 * scale


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["gradcam++", "gradcam"])
def test_maps_from_torch_and_onnx_activations_equal_autograd(
    arch: str, method: str, inputs: np.ndarray
) -> None:
    model = make_model(arch)
    head = cam_head_of(model)
    assert head is not None
    acts, hidden, logits = torch_activations(model, inputs)
    fwd = exported(arch).run_with_cam(inputs)
    assert (fwd.probs.argmax(1) == logits.argmax(1)).all()
    peaks = []
    for target in (None, 2):
        reference = class_activation_maps(model, model.cam_layer, inputs, target, method)
        targets = logits.argmax(1) if target is None else [target] * len(inputs)
        from_torch = closed_form_cams(head, acts, hidden, targets, method)
        from_onnx = closed_form_cams(head, fwd.features, fwd.hidden, targets, method)
        peaks.append(reference.max())
        assert np.abs(from_torch - reference).max() <= TOL
        assert np.abs(from_onnx - reference).max() <= TOL
        assert from_onnx.dtype == np.float32 and from_onnx.shape == reference.shape
    assert max(peaks) == pytest.approx(1.0)  # real maps were compared, not only empty ones


def test_heads_without_a_closed_form_are_left_to_autograd() -> None:
    # EfficientNet has a conv_head after its last stage (the CAM layer): no closed form.
    assert cam_head_of(make_model("fusion-gap", "test_efficientnet")) is None
    assert cam_head_of(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 1))) is None


def test_bad_arguments_are_clear(inputs: np.ndarray) -> None:
    model = make_model("fusion-gap")
    head = cam_head_of(model)
    acts, hidden, _ = torch_activations(model, inputs)
    with pytest.raises(ValueError, match="out of range"):
        feature_gradients(head, acts, hidden, [7] * len(inputs))
    with pytest.raises(ValueError, match="targets"):
        feature_gradients(head, acts, hidden, [0])
    with pytest.raises(ValueError, match="hidden"):
        feature_gradients(head, acts, None, [0] * len(inputs))
    with pytest.raises(ValueError, match="does not fit"):
        feature_gradients(head, np.zeros((1, 5, 2, 2)), hidden[:1], [0])  # 5 channels, not 96
    flat = make_model("fusion-flatten")
    flat_acts, flat_hidden, _ = torch_activations(flat, inputs[:1])
    with pytest.raises(ValueError, match="does not fit"):  # another input size: another width
        feature_gradients(cam_head_of(flat), np.tile(flat_acts, (1, 1, 2, 2)), flat_hidden, [0])
    with pytest.raises(ConfigError, match="unknown explanation method"):
        closed_form_cams(head, acts, hidden, [0] * len(inputs), "lrp")
