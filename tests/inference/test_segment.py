"""Segmenting images of any size with a stand-in model (no training needed)."""

from __future__ import annotations

import numpy as np
import pytest

from cytoreview.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cytoreview.inference.segment import (
    TTA_VIEWS,
    SegmenterSpec,
    predict_probs,
    segment_images,
    with_tta,
)


def dark_is_nucleus(batch: np.ndarray) -> np.ndarray:
    """A per-pixel 'model': dark pixels nucleus, mid cytoplasm, bright background."""
    grey = batch.mean(axis=1)  # normalised intensity
    logits = np.stack([grey - 1.0, -2.0 * np.abs(grey), -grey - 1.0], axis=1) * 8
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _cell(h: int, w: int) -> np.ndarray:
    image = np.full((h, w, 3), 240, np.uint8)
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - h / 2, xx - w / 2)
    image[r < min(h, w) / 2.5] = 120
    image[r < min(h, w) / 7] = 20
    return image


def test_crops_and_fields_come_back_at_their_own_size() -> None:
    spec = SegmenterSpec(input_size=64, tile_threshold=200, tile_overlap=16)
    images = [_cell(31, 47), _cell(120, 90), _cell(300, 420)]  # the last one is tiled
    results = segment_images(images, dark_is_nucleus, spec)
    for image, result in zip(images, results, strict=True):
        assert result.mask.shape == image.shape[:2] and result.probs.shape[1:] == image.shape[:2]
        assert result.mask[image.shape[0] // 2, image.shape[1] // 2] == 2  # the dark centre
        assert result.mask[0, 0] == 0 and 0.0 <= result.uncertainty <= 1.0
        assert np.allclose(result.probs.sum(axis=0), 1.0, atol=1e-4)


def _corner_only(batch: np.ndarray) -> np.ndarray:
    """Class 1 at the top-left pixel only, whatever the input: not equivariant at all."""
    out = np.zeros((batch.shape[0], 2, *batch.shape[2:]), np.float32)
    out[:, 1, 0, 0] = 1.0
    out[:, 0] = 1.0 - out[:, 1]
    return out


def test_tta_averages_the_8_views_turned_back() -> None:
    seen: list[np.ndarray] = []

    def predict(batch: np.ndarray) -> np.ndarray:
        assert batch.flags.c_contiguous
        seen.append(batch.copy())
        return _corner_only(batch)

    batch = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    averaged = with_tta(predict)(batch)
    # On paper: each of the 8 views, turned back, puts the top-left pixel in one of the 4
    # corners; every corner twice -> 2/8 there, 0 elsewhere.
    expected = np.zeros((4, 4))
    expected[[0, 0, 3, 3], [0, 3, 0, 3]] = 0.25
    assert averaged.shape == (2, 2, 4, 4) and averaged.dtype == np.float32
    np.testing.assert_allclose(averaged[:, 1], np.broadcast_to(expected, (2, 4, 4)))
    np.testing.assert_allclose(averaged.sum(axis=1), 1.0)
    # The views are the 8 distinct symmetries of the square.
    assert len(seen) == len(TTA_VIEWS) == 8
    assert len({v.tobytes() for v in seen}) == 8
    np.testing.assert_array_equal(seen[0], batch)


def test_tta_leaves_an_orientation_free_model_unchanged() -> None:
    def by_brightness(batch: np.ndarray) -> np.ndarray:  # per pixel: equivariant
        p1 = batch.mean(axis=1) / batch.max()
        return np.stack([1 - p1, p1], axis=1).astype(np.float32)

    batch = np.random.default_rng(0).random((3, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(with_tta(by_brightness)(batch), by_brightness(batch), atol=1e-6)
    with pytest.raises(ValueError, match="square"):
        with_tta(by_brightness)(np.zeros((1, 3, 8, 6), np.float32))


def test_spec_from_config() -> None:
    spec = SegmenterSpec.from_config({"input_size": 96, "tile_threshold": 512})
    assert (spec.input_size, spec.tile_threshold, spec.mean, spec.std) == (
        96,
        512,
        IMAGENET_MEAN,
        IMAGENET_STD,
    )
    assert len(predict_probs([_cell(40, 40)], dark_is_nucleus, spec)) == 1


def test_absent_classes_are_never_predicted_and_fields_come_back_at_their_size() -> None:
    from cytoreview.inference.segment import SegmenterSpec, predict_probs, segment_images

    seen: list[tuple[int, ...]] = []

    def uniform(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.shape)
        probs = np.full((batch.shape[0], 3, *batch.shape[2:]), 1 / 3, np.float32)
        probs[:, 1] += 0.1  # cytoplasm would win everywhere...
        return probs / probs.sum(axis=1, keepdims=True)

    spec = SegmenterSpec(input_size=64, tile_threshold=0, tile_overlap=16, scale=0.5,
                         classes_present=(True, False, True))  # fmt: skip
    field = np.random.default_rng(0).integers(0, 255, (150, 210, 3), dtype=np.uint8)
    (probs,) = predict_probs([field], uniform, spec)
    assert probs.shape == (3, 150, 210)
    assert np.allclose(probs[1], 0.0) and np.allclose(probs.sum(axis=0), 1.0)
    assert all(shape[-2:] == (64, 64) for shape in seen)  # tiles of the half-size field
    assert sum(s[0] for s in seen) == 2 * 2  # 75 x 105 px at scale 0.5: 2 x 2 tiles
    (result,) = segment_images([field], uniform, spec)
    assert not (result.mask == 1).any()  # ...but the model never learned it
