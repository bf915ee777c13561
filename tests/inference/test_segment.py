"""Segmenting images of any size with a stand-in model (no training needed)."""

from __future__ import annotations

import numpy as np

from cytoreview.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cytoreview.inference.segment import SegmenterSpec, predict_probs, segment_images, with_flip_tta


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


def test_flip_tta_averages_flipped_predictions() -> None:
    def left_biased(batch: np.ndarray) -> np.ndarray:
        out = np.zeros((batch.shape[0], 2, *batch.shape[2:]), np.float32)
        out[:, 0, :, : batch.shape[3] // 2] = 1.0  # "class 0" on the left half, whatever the input
        out[:, 1] = 1.0 - out[:, 0]
        return out

    batch = np.zeros((1, 3, 4, 4), np.float32)
    averaged = with_flip_tta(left_biased)(batch)
    # identity: left = 1; h-flip flipped back: right = 1; v-flip: left = 1 -> left 2/3, right 1/3
    assert np.allclose(averaged[0, 0, :, :2], 2 / 3) and np.allclose(averaged[0, 0, :, 2:], 1 / 3)


def test_spec_from_config() -> None:
    spec = SegmenterSpec.from_config({"input_size": 96, "tile_threshold": 512})
    assert (spec.input_size, spec.tile_threshold, spec.mean, spec.std) == (
        96,
        512,
        IMAGENET_MEAN,
        IMAGENET_STD,
    )
    assert len(predict_probs([_cell(40, 40)], dark_is_nucleus, spec)) == 1
