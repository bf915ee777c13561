"""Tests of tiled prediction: coverage, seamless blending, batching and cancellation."""

from __future__ import annotations

import numpy as np
import pytest

from cytoreview.inference.tiling import WINDOW_FLOOR, blend_window, predict_tiled, tile_origins

TILE = 256
#: A fixed per-pixel "model": softmax of a linear map of the colour.
WEIGHTS = np.array([[2.0, -1.0, 0.5], [-1.5, 2.5, 0.0], [0.3, 0.2, -2.0]], np.float32)


def pixelwise_probs(images: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) probabilities; position-equivariant by design."""
    logits = np.einsum("...hwc,kc->...khw", images.astype(np.float32) / 255, WEIGHTS)
    e = np.exp(logits - logits.max(axis=-3, keepdims=True))
    return e / e.sum(axis=-3, keepdims=True)


class Recorder:
    """A predict_batch that records the batches it was given."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.dtypes: list[np.dtype] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.shapes.append(batch.shape)
        self.dtypes.append(batch.dtype)
        return pixelwise_probs(batch)


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --- Tile origins -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("length", "expected"),
    [(1, [0]), (100, [0]), (256, [0]), (257, [0, 1]), (448, [0, 192]), (700, [0, 148, 296, 444])],
)
def test_tile_origins_examples(length, expected):
    assert tile_origins(length, TILE, 64) == expected


@pytest.mark.parametrize("overlap", [0, 1, 32, 64, 255])
def test_tile_origins_cover_with_enough_overlap(overlap):
    for length in range(TILE, 2000, 37):
        origins = tile_origins(length, TILE, overlap)
        assert origins[0] == 0 and origins[-1] == length - TILE
        gaps = np.diff(origins)
        assert (gaps > 0).all() and (gaps <= TILE - overlap).all()  # no hole, overlap kept
        covered = np.zeros(length, bool)
        for start in origins:
            covered[start : start + TILE] = True
        assert covered.all()


@pytest.mark.parametrize(("tile", "overlap"), [(256, 256), (256, -1), (0, 0)])
def test_tile_origins_rejects_bad_overlap(tile, overlap):
    with pytest.raises(ValueError):
        tile_origins(1000, tile, overlap)


# --- Window -----------------------------------------------------------------------------------
def test_blend_window_shape_and_ramp():
    window = blend_window(TILE, 64)
    assert window.shape == (TILE, TILE) and window.dtype == np.float32
    assert window.min() >= WINDOW_FLOOR and window.min() < 0.01  # positive, yet fades out
    np.testing.assert_array_equal(window, window.T)
    np.testing.assert_array_equal(window, window[::-1, ::-1])
    assert (window[64:-64, 64:-64] == 1).all()
    row = window[TILE // 2]
    assert (np.diff(row[:65]) > 0).all()  # rises over the overlap, then stays at 1
    assert (blend_window(TILE, 0) == 1).all()


# --- Tiled prediction -------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(700, 1000), (513, 257), (100, 60), (256, 256), (1, 300)])
def test_equivariant_model_gives_whole_image_result(shape):
    image = random_image(*shape)
    probs = predict_tiled(image, pixelwise_probs, TILE, overlap=64, batch_size=8)
    assert probs is not None
    assert probs.shape == (3, *shape) and probs.dtype == np.float32
    assert np.isfinite(probs).all()  # every pixel is covered by some tile
    np.testing.assert_allclose(probs, pixelwise_probs(image), atol=1e-5)
    np.testing.assert_allclose(probs.sum(axis=0), 1, atol=1e-5)


def test_blends_tiles_with_window_weights():
    # a model that calls each tile by its own constant: seams must be gradual, not steps
    constants: list[float] = []

    def per_tile(batch: np.ndarray) -> np.ndarray:
        values = np.random.default_rng(len(constants)).uniform(0.1, 0.9, len(batch))
        constants.extend(values)
        out = np.empty((len(batch), 2, TILE, TILE), np.float32)
        out[:, 0] = values[:, None, None]
        out[:, 1] = 1 - out[:, 0]
        return out

    probs = predict_tiled(random_image(256, 448), per_tile, TILE, overlap=64)
    assert probs is not None and len(constants) == 2  # origins 0 and 192
    row = probs[0, 128]
    np.testing.assert_allclose(row[:150], constants[0], atol=1e-6)  # only tile 0 counts here
    np.testing.assert_allclose(row[300:], constants[1], atol=1e-6)
    seam = row[180:270]
    lo, hi = sorted(constants)
    assert (seam >= lo - 1e-6).all() and (seam <= hi + 1e-6).all()
    assert np.abs(np.diff(row)).max() < 0.5 * abs(constants[1] - constants[0])


def test_batches_and_calls():
    recorder = Recorder()
    predict_tiled(random_image(700, 1000), recorder, TILE, overlap=64, batch_size=8)
    # 4 rows x 5 columns of tiles = 20 tiles in batches of 8
    assert [s[0] for s in recorder.shapes] == [8, 8, 4]
    assert all(s[1:] == (TILE, TILE, 3) for s in recorder.shapes)
    assert all(d == np.uint8 for d in recorder.dtypes)
    small = Recorder()
    predict_tiled(random_image(100, 60), small, TILE, batch_size=8)
    assert small.shapes == [(1, TILE, TILE, 3)]


def test_small_image_is_centred_in_its_tile():
    image = random_image(100, 60)
    recorder = Recorder()
    tiles: list[np.ndarray] = []

    def keep(batch: np.ndarray) -> np.ndarray:
        tiles.append(batch.copy())
        return recorder(batch)

    predict_tiled(image, keep, TILE)
    top, left = (TILE - 100) // 2, (TILE - 60) // 2
    np.testing.assert_array_equal(tiles[0][0, top : top + 100, left : left + 60], image)
    np.testing.assert_array_equal(
        tiles[0][0, top - 1, left : left + 60], image[1]
    )  # reflected, edge not doubled


def test_cancel_returns_none():
    recorder = Recorder()
    assert predict_tiled(random_image(700, 1000), recorder, TILE, cancel=lambda: True) is None
    assert recorder.shapes == []  # polled before the first batch
    calls = iter([False, True])
    result = predict_tiled(random_image(700, 1000), recorder, TILE, batch_size=8,
                           cancel=lambda: next(calls))  # fmt: skip
    assert result is None and len(recorder.shapes) == 1


def test_rejects_wrong_output_shape():
    def bad(batch: np.ndarray) -> np.ndarray:
        return np.ones((len(batch), 3, TILE // 2, TILE // 2), np.float32)

    with pytest.raises(ValueError, match="predict_batch returned"):
        predict_tiled(random_image(300, 300), bad, TILE)
