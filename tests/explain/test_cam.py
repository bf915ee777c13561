"""Grad-CAM / Grad-CAM++ on small hand-made CNNs: hand-checked values, geometry, no leftovers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

from cytoreview.data.transforms import letterbox_image, letterbox_mask, to_tensor_layout
from cytoreview.errors import ConfigError
from cytoreview.explain.cam import (
    class_activation_maps,
    explain_images,
    heatmap_overlay,
    heatmap_to_image,
    upsample_heatmap,
)

METHODS = ["gradcam", "gradcam++"]
S = 32


class QuadrantNet(nn.Module):
    """Fixed weights: class 1 = bright blob in the top-left quadrant, class 0 = bottom-right.

    ``features`` (the CAM layer) has two channels at 1/4 resolution: "bright" (used by the
    head) and "dark" (present on the whole background, used negatively by the head). A map
    that did not weight the channels by their gradients would light up the background (an
    unweighted channel sum puts only 0.33 of its mass on the square's quadrant).
    """

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor([[1.0, 1, 1], [-1, -1, -1]]).view(2, 3, 1, 1) / 3)
            conv.bias.copy_(torch.tensor([-1.0, -1.0]))
        self.features = nn.Sequential(conv, nn.ReLU(), nn.AvgPool2d(4))
        self.cam_layer = self.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x[:, :3])
        h, w = a.shape[-2] // 2, a.shape[-1] // 2
        bright, dark = a[:, 0], a[:, 1]
        tl = bright[:, :h, :w].mean((1, 2)) - 0.1 * dark.mean((1, 2))
        br = bright[:, h:, w:].mean((1, 2)) - 0.1 * dark.mean((1, 2))
        return 10 * torch.stack([br, tl], dim=1)


def make_input(rgb: np.ndarray, mask: np.ndarray, size: int = S):
    """The classifier layout (6, S, S) of one crop, and its letterbox."""
    boxed, box = letterbox_image(rgb, size)
    onehot = np.eye(3, dtype=np.float32)[letterbox_mask(mask, box)].transpose(2, 0, 1)
    return np.concatenate([to_tensor_layout(boxed), onehot]), box


def square_image(h: int, w: int, corner: str, seed: int = 0) -> np.ndarray:
    """Dark noisy crop with a bright square near one corner."""
    rng = np.random.default_rng(seed)
    rgb = rng.integers(20, 60, (h, w, 3)).astype(np.uint8)
    side = min(h, w) // 4
    r0 = 2 if corner[0] == "t" else h - 2 - side
    c0 = 2 if corner[1] == "l" else w - 2 - side
    rgb[r0 : r0 + side, c0 : c0 + side] = 240
    return rgb


def quadrant_share(heat: np.ndarray, corner: str) -> float:
    h, w = heat.shape
    rows = slice(0, h // 2) if corner[0] == "t" else slice(h // 2, h)
    cols = slice(0, w // 2) if corner[1] == "l" else slice(w // 2, w)
    return float(heat[rows, cols].sum() / heat.sum())


@pytest.mark.parametrize("method", METHODS)
def test_fixed_region_model_looks_at_the_evidence_and_follows_it(method):
    model = QuadrantNet()
    shares = {}
    for corner, expected_class in (("tl", 1), ("br", 0)):
        rgb = square_image(48, 64, corner)
        x, box = make_input(rgb, np.zeros(rgb.shape[:2], np.uint8))
        logits = model(torch.from_numpy(x[None]))
        assert int(logits.argmax()) == expected_class
        cam = class_activation_maps(model, model.cam_layer, x[None], method=method)
        assert cam.shape == (1, 8, 8)
        heat = heatmap_to_image(cam[0], box)
        assert heat.shape == (48, 64)
        shares[corner] = quadrant_share(heat, corner)
    # Measured: 1.0 for both corners and both methods (the dark channel gets no weight).
    assert shares["tl"] >= 0.95
    assert shares["br"] >= 0.95


class TinyCNN(nn.Module):
    """Two conv blocks, global average pooling and a linear head, as the timm classifiers."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.block = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    @property
    def cam_layer(self) -> nn.Module:
        return self.block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x[:, :3])))


CORNERS = ["tl", "tr", "bl", "br"]


def corner_batch(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Noise inputs with a 6x6 square in a random quadrant: class 1 = a white square, class 2
    = a red one, class 0 = no square. Returns inputs, labels and the quadrant of each square."""
    x = rng.normal(0, 0.5, (n, 6, S, S)).astype(np.float32)
    x[:, 3:] = 0
    y = rng.integers(0, 3, n)
    corners = []
    for i in range(n):
        corner = CORNERS[rng.integers(4)]
        corners.append(corner)
        r, c = rng.integers(1, S // 2 - 7, 2)
        r += 0 if corner[0] == "t" else S // 2
        c += 0 if corner[1] == "l" else S // 2
        if y[i]:
            x[i, :3, r : r + 6, c : c + 6] = (
                [[[2.5]], [[2.5]], [[2.5]]] if y[i] == 1 else [[[2.5]], [[-2.0]], [[-2.0]]]
            )
    return torch.from_numpy(x), torch.from_numpy(y), corners


@pytest.fixture(scope="module")
def trained_tiny_cnn() -> TinyCNN:
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    model = TinyCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        x, y, _ = corner_batch(16, rng)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


@pytest.mark.parametrize("method", METHODS)
def test_trained_tiny_cnn_looks_at_the_square_wherever_it_is(trained_tiny_cnn, method):
    model = trained_tiny_cnn
    x, y, corners = corner_batch(48, np.random.default_rng(123))
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() == 1.0
    keep = (y > 0).numpy()
    cams = class_activation_maps(model, model.cam_layer, x[keep], method=method)
    where = [c for c, k in zip(corners, keep, strict=True) if k]
    pairs = zip(cams, where, strict=True)
    shares = np.array([quadrant_share(upsample_heatmap(m, S), c) for m, c in pairs])
    assert set(where) == set(CORNERS)  # the heatmap has to follow the square to each corner
    # Measured (45 maps): min 0.90 / mean 0.97 (gradcam), min 0.83 / mean 0.92 (gradcam++,
    # more spread, as known); over training seeds 0-2 the minimum never fell below 0.72.
    assert shares.min() >= 0.7
    assert shares.mean() >= 0.8


def conv_gap_linear(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )


def hand_activations(model: nn.Sequential, x: np.ndarray) -> np.ndarray:
    """The conv layer's output computed in numpy (cross-correlation with zero padding)."""
    w = model[0].weight.detach().numpy().astype(np.float64)
    b = model[0].bias.detach().numpy().astype(np.float64)
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = sliding_window_view(padded, (3, 3), axis=(2, 3))  # (N, Cin, H, W, 3, 3)
    return np.einsum("nchwij,kcij->nkhw", win, w) + b[None, :, None, None]


@pytest.mark.parametrize("method", METHODS)
def test_conv_gap_linear_matches_hand_formula(method):
    model = conv_gap_linear()
    x = np.random.default_rng(1).normal(size=(3, 3, 7, 9)).astype(np.float32)
    targets = [0, 2, 1]
    cam = class_activation_maps(model, model[0], x, target=targets, method=method)
    acts = hand_activations(model, x)
    lin = model[3].weight.detach().numpy().astype(np.float64)
    expected = []
    for i, c in enumerate(targets):
        g = lin[c] / (7 * 9)  # d(mean_hw A_k)/dA_kij, the same at every position
        if method == "gradcam":
            weights = g
        else:
            alpha = g**2 / (2 * g**2 + acts[i].sum(axis=(1, 2)) * g**3)
            weights = 7 * 9 * alpha * np.maximum(g, 0)
        m = np.maximum(np.einsum("k,khw->hw", weights, acts[i]), 0)
        expected.append(m / m.max() if m.max() > 0 else m)
    assert cam.shape == (3, 7, 9)
    assert np.allclose(cam, np.array(expected), atol=1e-5)


def test_target_none_explains_the_predicted_class():
    model = conv_gap_linear(seed=3)
    x = torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    predicted = model(x).argmax(1).tolist()
    auto = class_activation_maps(model, model[0], x, method="gradcam")
    explicit = class_activation_maps(model, model[0], x, target=predicted, method="gradcam")
    assert np.array_equal(auto, explicit)
    other = [(p + 1) % 3 for p in predicted]
    assert not np.allclose(auto, class_activation_maps(model, model[0], x, other, "gradcam"))
    with pytest.raises(ValueError, match="out of range"):
        class_activation_maps(model, model[0], x, target=3)
    with pytest.raises(ValueError, match="2 targets for a batch of 4"):
        class_activation_maps(model, model[0], x, target=[0, 1])


@pytest.mark.parametrize("method", METHODS)
def test_zero_gradient_models_give_all_zero_maps(method):
    dead = conv_gap_linear()
    with torch.no_grad():
        dead[3].weight.zero_()  # logits are the bias only: zero gradient everywhere
    x = torch.randn(2, 3, 8, 8)
    cam = class_activation_maps(dead, dead[0], x, method=method)
    assert cam.shape == (2, 8, 8) and not np.isnan(cam).any() and not cam.any()

    class Unused(nn.Module):  # the layer runs, but the logits do not depend on it
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Conv2d(3, 2, 1)
            self.bias = nn.Parameter(torch.zeros(3))

        def forward(self, x):
            self.layer(x)
            return self.bias.expand(len(x), 3)

    unused = Unused()
    cam = class_activation_maps(unused, unused.layer, x, method=method)
    assert not np.isnan(cam).any() and not cam.any()


@pytest.mark.parametrize(("h", "w"), [(31, 47), (200, 90), (1, 5)])
def test_heatmap_to_image_has_the_image_shape(h, w):
    rgb = np.full((h, w, 3), 128, np.uint8)
    _, box = letterbox_image(rgb, 64)
    rng = np.random.default_rng(0)
    heat = heatmap_to_image(rng.random((8, 8)).astype(np.float32), box)
    assert heat.shape == (h, w) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    # A map that is 1 on the content and 0 on the padding maps to ~1 everywhere: the pad
    # is cropped, not squeezed into the image.
    content = np.zeros((64, 64), np.float32)
    nh, nw = box.new_shape
    content[box.top : box.top + nh, box.left : box.left + nw] = 1
    assert heatmap_to_image(content, box).min() >= 0.99
    # Left half of the input hot: only the left part of the original image is hot.
    if w > 40:
        half = np.zeros((8, 8), np.float32)
        half[:, :4] = 1
        out = heatmap_to_image(half, box)
        assert out[:, : w // 3].min() >= 0.99 and out[:, -w // 3 :].max() <= 0.01


def test_upsample_and_heatmap_to_image_never_return_nan():
    cam = np.array([[np.nan, 1.0], [0.5, 0.0]], np.float32)
    _, box = letterbox_image(np.zeros((31, 47, 3), np.uint8), 32)
    out = heatmap_to_image(cam, box)
    assert np.isfinite(out).all() and out.max() <= 1


class Exploding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2))
        self.head = nn.Linear(2, 2)
        self.explode = False

    def forward(self, x):
        a = self.layer(x).mean((2, 3))
        if self.explode:
            raise RuntimeError("boom")
        return self.head(a)


def assert_clean(model: Exploding, grads_before: list[bool]) -> None:
    assert len(model.layer._forward_hooks) == 0
    assert len(model.layer._backward_hooks) == 0
    assert len(model.layer._forward_pre_hooks) == 0
    assert all(m.training for m in model.modules())  # train mode restored everywhere
    assert [p.requires_grad for p in model.parameters()] == grads_before
    assert all(p.grad is None for p in model.parameters())


def test_hooks_removed_and_state_restored_even_on_exception():
    model = Exploding().train()
    model.head.weight.requires_grad_(False)
    before = [p.requires_grad for p in model.parameters()]
    running_mean = model.layer[1].running_mean.clone()
    x = torch.randn(3, 3, 8, 8)
    cam = class_activation_maps(model, model.layer, x)
    assert cam.shape == (3, 6, 6)
    assert_clean(model, before)
    assert torch.equal(model.layer[1].running_mean, running_mean)  # ran in eval mode
    model.explode = True
    with pytest.raises(RuntimeError, match="boom"):
        class_activation_maps(model, model.layer, x)
    assert_clean(model, before)
    model.explode = False
    with pytest.raises(ValueError, match="out of range"):  # raised after the forward pass
        class_activation_maps(model, model.layer, x, target=5)
    assert_clean(model, before)


def test_layer_errors_and_unknown_method():
    model = conv_gap_linear()
    x = torch.randn(1, 3, 6, 6)
    with pytest.raises(ConfigError, match=r"valid: gradcam, gradcam\+\+"):
        class_activation_maps(model, model[0], x, method="lrp")
    with pytest.raises(ConfigError, match="ran 0 times"):
        class_activation_maps(model, nn.Conv2d(3, 3, 1), x)
    with pytest.raises(ConfigError, match=r"\(N, C, h, w\)"):
        class_activation_maps(model, model[2], x)  # Flatten: not a feature map
    assert not model[2]._forward_hooks


def test_inplace_op_after_the_layer_changes_nothing():
    plain = conv_gap_linear(seed=4)
    plain.insert(1, nn.ReLU())
    inplace = conv_gap_linear(seed=4)
    inplace.insert(1, nn.ReLU(inplace=True))  # would break a module backward hook
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    for method in METHODS:
        ref = class_activation_maps(plain, plain[0], x, method=method)
        got = class_activation_maps(inplace, inplace[0], x, method=method)
        assert ref.max() == pytest.approx(1.0)
        assert np.array_equal(got, ref)


def test_runs_in_a_worker_thread_under_inference_mode():
    model = TinyCNN()
    x = torch.randn(2, 6, S, S, generator=torch.Generator().manual_seed(0))
    ref = class_activation_maps(model, model.cam_layer, x, method="gradcam++")
    assert ref.shape == (2, 16, 16) and ref.max() == pytest.approx(1.0)
    out: dict[str, np.ndarray] = {}

    def worker() -> None:
        with torch.inference_mode():
            out["cam"] = class_activation_maps(
                model, model.cam_layer, torch.as_tensor(x), method="gradcam++"
            )

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert np.array_equal(out["cam"], ref)


def test_explain_images_batches_and_maps_back_to_each_image():
    model = QuadrantNet()
    shapes = [(31, 47), (40, 40), (50, 23), (32, 64), (17, 33)]
    corners = ["tl", "br", "tl", "br", "tl"]
    items = [
        make_input(square_image(h, w, c, seed=i), np.zeros((h, w), np.uint8))
        for i, ((h, w), c) in enumerate(zip(shapes, corners, strict=True))
    ]
    inputs = np.stack([x for x, _ in items])
    boxes = [b for _, b in items]
    heats = explain_images(
        model, model.cam_layer, inputs, boxes, "gradcam", batch_size=2, device="cpu"
    )
    assert [h.shape for h in heats] == shapes
    for heat, (x, box) in zip(heats, items, strict=True):
        single = class_activation_maps(model, model.cam_layer, x[None], method="gradcam")[0]
        assert np.allclose(heat, heatmap_to_image(single, box), atol=1e-6)
    shares = [quadrant_share(h, c) for h, c in zip(heats, corners, strict=True)]
    assert min(shares) >= 0.9
    with pytest.raises(ValueError, match="letterboxes"):
        explain_images(model, model.cam_layer, inputs, boxes[:2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_explain_images_on_cuda_matches_cpu_and_gives_the_model_back():
    model = TinyCNN()
    x = torch.randn(3, 6, S, S, generator=torch.Generator().manual_seed(0))
    _, box = letterbox_image(np.zeros((20, 30, 3), np.uint8), S)
    cpu = explain_images(model, model.cam_layer, x, [box] * 3, device="cpu")
    gpu = explain_images(model, model.cam_layer, x, [box] * 3, device="cuda")
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(np.allclose(a, b, atol=1e-3) for a, b in zip(cpu, gpu, strict=True))


def test_heatmap_overlay_blends_rgb_colours():
    image = np.full((5, 7, 3), 100, np.uint8)
    heat = np.zeros((5, 7), np.float32)
    heat[0, 0] = 1.0
    assert np.array_equal(heatmap_overlay(image, heat, alpha=0.0), image)
    full = heatmap_overlay(image, heat, alpha=1.0, colormap="jet")
    assert full.dtype == np.uint8 and full.shape == (5, 7, 3)
    assert tuple(full[0, 0]) == (128, 0, 0)  # jet's top is dark red, in RGB order
    assert tuple(full[1, 1]) == (0, 0, 128)  # and its bottom dark blue
    half = heatmap_overlay(image, heat, alpha=0.5)
    assert tuple(half[0, 0]) == (114, 50, 50)
    assert heatmap_overlay(image, heat, colormap="inferno").shape == (5, 7, 3)
    with pytest.raises(ConfigError, match="valid: jet"):
        heatmap_overlay(image, heat, colormap="rainbow-unicorn")
    with pytest.raises(ValueError, match="does not match"):
        heatmap_overlay(image, heat[:, :3])
