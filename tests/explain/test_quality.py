"""Heatmap quality figures: entropy, region shares, pixel flipping on a hand-made model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cytoreview.errors import ConfigError
from cytoreview.explain.cam import class_activation_maps, upsample_heatmap
from cytoreview.explain.quality import (
    HeatmapQuality,
    area_by_region,
    flipping_auc,
    heatmap_entropy,
    heatmap_quality,
    looks_at_background,
    mass_by_region,
    pixel_flipping_curve,
    random_flipping_curve,
)

S = 32


def test_entropy_uniform_delta_and_in_between():
    assert heatmap_entropy(np.full((7, 9), 0.3)) == pytest.approx(1.0)
    delta = np.zeros((7, 9))
    delta[3, 4] = 0.8
    assert heatmap_entropy(delta) == 0.0
    two = np.zeros((8, 8))
    two[0, :2] = 1.0
    assert heatmap_entropy(two) == pytest.approx(np.log(2) / np.log(64))
    assert heatmap_entropy(np.zeros((4, 4))) == 1.0  # points nowhere: no focus (documented)
    assert heatmap_entropy(np.ones((1, 1))) == 0.0
    with pytest.raises(ValueError, match="NaN"):
        heatmap_entropy(np.full((3, 3), np.nan))


def drawn_cell() -> np.ndarray:
    """10x10 mask: a 6x6 cytoplasm square with a 2x2 nucleus in the middle."""
    mask = np.zeros((10, 10), np.uint8)
    mask[2:8, 2:8] = 1
    mask[4:6, 4:6] = 2
    return mask


def test_mass_by_region_matches_hand_shares():
    mask = drawn_cell()
    heat = np.where(mask == 2, 1.0, np.where(mask == 1, 0.5, 0.1))
    shares = mass_by_region(heat, mask)
    total = 4 * 1.0 + 32 * 0.5 + 64 * 0.1  # 4 nucleus, 32 cytoplasm, 64 background pixels
    assert shares["nucleus"] == pytest.approx(4 / total)
    assert shares["cytoplasm"] == pytest.approx(16 / total)
    assert shares["background"] == pytest.approx(6.4 / total)
    assert sum(shares.values()) == pytest.approx(1.0)
    assert not looks_at_background(shares)  # 0.24 of the mass on the background
    assert mass_by_region(np.zeros((10, 10)), mask) == {
        "nucleus": 0.0,
        "cytoplasm": 0.0,
        "background": 0.0,
    }
    with pytest.raises(ValueError, match="mask values"):
        mass_by_region(heat, mask + 1)
    with pytest.raises(ValueError, match="does not match"):
        mass_by_region(heat[:5], mask)


def test_looks_at_background_flags_background_heatmaps():
    mask = drawn_cell()
    heat = (mask == 0).astype(float)
    heat[4, 4] = 1.0
    shares = mass_by_region(heat, mask)
    assert shares["background"] == pytest.approx(64 / 65)
    assert looks_at_background(shares)
    assert not looks_at_background({"background": 0.5})  # "mostly" means more than half
    assert looks_at_background({"background": 0.3}, threshold=0.25)
    quality = heatmap_quality(heat, mask, flipping_auc=0.2, random_flipping_auc=0.6)
    assert isinstance(quality, HeatmapQuality) and quality.looks_at_background
    data = json.loads(json.dumps(quality.to_dict()))
    assert data["shares"]["background"] == pytest.approx(64 / 65)
    assert data["entropy"] == pytest.approx(np.log(65) / np.log(100))
    assert data["flipping_auc"] == 0.2 and data["random_flipping_auc"] == 0.6


def test_flipping_auc_by_hand():
    f = np.linspace(0, 1, 11)
    assert flipping_auc(f, np.ones(11)) == pytest.approx(1.0)
    assert flipping_auc(f, 1 - f) == pytest.approx(0.5)
    assert flipping_auc([0.0, 0.5], [1.0, 0.0]) == pytest.approx(0.5)  # divided by the span
    with pytest.raises(ValueError, match="increase"):
        flipping_auc(f[::-1], np.ones(11))


class QuadrantNet(nn.Module):
    """Fixed weights: logit 1 = mean brightness above a threshold in the top-left quadrant."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            conv.weight.fill_(1 / 3)
            conv.bias.fill_(-1.0)
        self.features = nn.Sequential(conv, nn.ReLU())  # the CAM layer, post-ReLU as usual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.features(x[:, :3])[:, 0]
        tl = a[:, : S // 2, : S // 2].mean((1, 2))
        return 20 * torch.stack([torch.zeros_like(tl), tl], dim=1)


def square_input(seed: int = 0) -> np.ndarray:
    """(6, S, S): dark noise, an 8x8 bright square in the top-left quadrant, a drawn mask."""
    rng = np.random.default_rng(seed)
    x = np.zeros((6, S, S), np.float32)
    x[:3] = rng.normal(-1.5, 0.3, (3, S, S))
    x[:3, 3:11, 4:12] = 2.0
    x[3] = 1
    x[3, 10:20, 10:20], x[4, 10:20, 10:20] = 0, 1  # a "cell" in the mask channels
    return x


@pytest.fixture
def region_setup():
    model = QuadrantNet().eval()
    calls: list[np.ndarray] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(batch.copy())
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(batch)), 1).numpy()

    x = square_input()
    cam = class_activation_maps(model, model.features, x[None], target=1, method="gradcam++")
    return predict, x, upsample_heatmap(cam[0], S), calls


def test_pixel_flipping_true_heatmap_beats_random_and_inverted(region_setup):
    predict, x, heat, calls = region_setup
    assert heat[3:11, 4:12].sum() / heat.sum() == pytest.approx(1.0)
    f, conf = pixel_flipping_curve(predict, x, heat, target=1, steps=10)
    assert np.allclose(f, np.linspace(0, 1, 11), atol=1 / S**2)  # whole pixels: 102/1024...
    assert conf[0] == pytest.approx(predict(x[None])[0, 1])
    assert conf[0] > 0.99 and conf[1] == pytest.approx(0.5)  # the square is gone after 10%
    _, rand = random_flipping_curve(predict, x, target=1, steps=10, repeats=3)
    _, inverted = pixel_flipping_curve(predict, x, heat.max() - heat, target=1, steps=10)
    auc, auc_rand, auc_inv = (flipping_auc(f, c) for c in (conf, rand, inverted))
    # Measured: 0.525 (heatmap) < 0.859 (random order) < 0.969 (least relevant first).
    assert auc < 0.55
    assert auc + 0.15 < auc_rand < auc_inv - 0.1
    for batch in calls[1:]:  # the mask channels are never flipped
        assert np.array_equal(batch[:, 3:], np.broadcast_to(x[3:], batch[:, 3:].shape))


@pytest.mark.parametrize("baseline", ["mean", "zero", "blur"])
def test_flipping_baselines_replace_the_image_channels(region_setup, baseline):
    predict, x, heat, calls = region_setup
    calls.clear()
    _, conf = pixel_flipping_curve(predict, x, heat, 1, steps=4, baseline=baseline)
    batch = np.concatenate(calls)
    assert batch.shape == (5, 6, S, S) and np.array_equal(batch[0], x)
    last = batch[-1, :3]  # every pixel flipped
    if baseline == "zero":
        assert not last.any()
    elif baseline == "mean":
        assert np.allclose(last, x[:3].mean(axis=(1, 2), keepdims=True))
    else:
        assert np.allclose(last.mean(axis=(1, 2)), x[:3].mean(axis=(1, 2)), atol=0.05)
        texture = np.abs(np.diff(last, axis=-1)).mean() / np.abs(np.diff(x[:3], axis=-1)).mean()
        assert texture < 0.2  # pixel noise and the square's sharp edges are gone
    assert (batch[2, :3] != x[:3]).any(axis=0).sum() == S * S // 2  # half the pixels
    if baseline == "blur":  # a blurred square keeps some of its brightness
        assert 0.5 < conf[-1] < conf[0] - 0.3
    else:
        assert conf[-1] == pytest.approx(0.5)  # no bright square left


def test_flipping_input_checks(region_setup):
    predict, x, heat, _ = region_setup
    with pytest.raises(ConfigError, match="valid: mean, zero, blur"):
        pixel_flipping_curve(predict, x, heat, 1, baseline="noise")
    with pytest.raises(ValueError, match="does not match"):
        pixel_flipping_curve(predict, x, heat[:-1, :-1], 1)
    with pytest.raises(ValueError, match="out of range"):
        pixel_flipping_curve(predict, x, heat, 2)
    with pytest.raises(ValueError, match="probabilities"):
        pixel_flipping_curve(lambda b: np.full((len(b), 2), 3.0), x, heat, 1)


def test_a_coarse_uniform_heatmap_on_a_mostly_empty_crop_is_not_flagged():
    # A 10x10 crop whose cell covers 36 pixels: 64 % of it is slide.
    mask = drawn_cell()
    areas = area_by_region(mask)
    assert sum(areas.values()) == pytest.approx(1.0)
    uniform = np.ones(mask.shape)
    shares = mass_by_region(uniform, mask)
    assert shares["background"] == pytest.approx(areas["background"])
    # As much on the slide as a blind guess: coarse, not drawn to the background.
    assert not looks_at_background(shares, areas=areas)
    assert not heatmap_quality(uniform, mask).looks_at_background
    # Drawn to the background: more of the mass there than of the area.
    heat = (mask == 0).astype(float)
    assert looks_at_background(mass_by_region(heat, mask), areas=areas)
