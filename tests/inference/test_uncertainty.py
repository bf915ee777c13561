"""Pixel entropy, image uncertainty with a region, and flip test-time augmentation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cytoreview.inference.uncertainty import (
    foreground_region,
    image_uncertainty,
    pixel_entropy,
)


def one_hot(labels: np.ndarray, n_classes: int = 3) -> np.ndarray:
    return (np.arange(n_classes)[:, None, None] == labels[None]).astype(np.float32)


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_uniform_is_one(n_classes: int) -> None:
    probs = np.full((n_classes, 4, 6), 1.0 / n_classes, np.float32)
    ent = pixel_entropy(probs)
    assert ent.shape == (4, 6)
    np.testing.assert_allclose(ent, 1.0, atol=1e-6)
    assert image_uncertainty(probs) == pytest.approx(1.0, abs=1e-6)


def test_one_hot_is_exactly_zero_without_warnings() -> None:
    labels = np.array([[0, 1, 2], [2, 1, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no log(0) warning
        ent = pixel_entropy(one_hot(labels))
        score = image_uncertainty(one_hot(labels))
    assert (ent == 0.0).all()
    assert score == 0.0


def test_two_class_value_by_hand() -> None:
    # p = (1/4, 3/4): H = 1/4 * log2(4) + 3/4 * log2(4/3) = 0.5 + 0.311278... bits; log(C) = 1 bit
    probs = np.array([[[0.25]], [[0.75]]])
    assert pixel_entropy(probs)[0, 0] == pytest.approx(0.8112781244591328, abs=1e-12)
    assert pixel_entropy(probs).dtype == np.float64
    assert pixel_entropy(probs.astype(np.float32)).dtype == np.float32


def test_three_class_value_by_hand() -> None:
    # p = (1/2, 1/4, 1/4): H = 1.5 bits; log2(3) = 1.5849625007 bits -> 0.9463946303571861
    probs = np.array([[[0.5]], [[0.25]], [[0.25]]])
    assert pixel_entropy(probs)[0, 0] == pytest.approx(0.9463946303571861, abs=1e-12)


def test_rounding_noise_is_tolerated() -> None:
    probs = np.array([[[1.0 + 1e-6]], [[-1e-6]]])  # a softmax in low precision
    assert pixel_entropy(probs)[0, 0] == 0.0


def test_region_restricts_the_mean() -> None:
    # Left half uncertain (uniform), right half certain: whole image 0.5.
    probs = np.zeros((2, 4, 4))
    probs[:, :, :2] = 0.5
    probs[0, :, 2:] = 1.0
    region = np.zeros((4, 4), bool)
    region[:, 1:3] = True  # one uncertain and one certain column -> 0.5
    assert image_uncertainty(probs) == pytest.approx(0.5)
    assert image_uncertainty(probs, region) == pytest.approx(0.5)
    region[:, 2] = False  # only an uncertain column left
    assert image_uncertainty(probs, region) == pytest.approx(1.0)
    region[:] = False
    region[0, 3] = True  # a single certain pixel
    assert image_uncertainty(probs, region) == 0.0


def test_empty_region_falls_back_to_whole_image() -> None:
    probs = np.zeros((2, 2, 2))
    probs[:, 0, :] = 0.5
    probs[1, 1, :] = 1.0
    assert image_uncertainty(probs, np.zeros((2, 2), bool)) == pytest.approx(0.5)


def test_foreground_region_grows_the_cells() -> None:
    labels = np.zeros((21, 21), np.uint8)
    labels[10, 10] = 2
    region = foreground_region(labels, margin_px=3)
    assert region.dtype == bool and region.shape == labels.shape
    assert region[10, 13] and region[7, 10] and not region[10, 14] and not region[6, 10]
    assert region.sum() > 1 and foreground_region(labels, 0).sum() == 1


def test_input_errors() -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        pixel_entropy(np.ones((4, 4)))
    with pytest.raises(ValueError, match="C >= 2"):
        pixel_entropy(np.ones((1, 4, 4)))
    with pytest.raises(ValueError, match="sum to 1"):
        pixel_entropy(np.full((3, 2, 2), 2.0))  # logits, not probabilities
    with pytest.raises(ValueError, match="region shape"):
        image_uncertainty(np.full((2, 2, 2), 0.5), np.ones((3, 3), bool))
