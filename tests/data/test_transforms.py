"""Tests of letterboxing, normalisation and augmentation: geometry, invariants, statistics."""

from __future__ import annotations

import dataclasses
import json
import math

import cv2
import numpy as np
import pytest

from cytoreview.data.synthetic import synth_cell
from cytoreview.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    NO_AUGMENT,
    AugmentConfig,
    augment_pair,
    colour_jitter,
    letterbox_image,
    letterbox_mask,
    random_affine,
    to_tensor_layout,
    unletterbox_probs,
)

SIZE = 256
PALETTE = np.array([[236, 232, 226], [120, 170, 175], [70, 50, 120]], np.uint8)  # bg, cyto, nuc
GEOMETRY_ONLY = dataclasses.replace(
    NO_AUGMENT, rotation_deg=10, zoom=0.15, shift=0.2, shear=0.15, hflip=True, vflip=True
)
COLOUR_ONLY = dataclasses.replace(
    AugmentConfig(), rotation_deg=0, zoom=0, shift=0, shear=0, hflip=False, vflip=False
)


def one_hot(mask: np.ndarray, classes: int = 3) -> np.ndarray:
    return (mask[None] == np.arange(classes)[:, None, None]).astype(np.float32)


def drawn_mask(h: int, w: int) -> np.ndarray:
    """A cell-like mask: an elliptic cytoplasm with a nucleus inside."""
    mask = np.zeros((h, w), np.uint8)
    centre = (w // 2, h // 2)
    cv2.ellipse(mask, centre, (max(1, w * 2 // 5), max(1, h // 3)), 20, 0, 360, 1, -1)
    cv2.ellipse(mask, centre, (max(1, w // 8), max(1, h // 9)), 0, 0, 360, 2, -1)
    return mask


def interior(region: np.ndarray) -> np.ndarray:
    """Pixels of ``region`` at least 2 px from its border and from the image border."""
    kernel = np.ones((5, 5), np.uint8)
    eroded = cv2.erode(
        region.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0
    )
    return eroded > 0


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())


# --- Letterbox --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(31, 47), (47, 31), (40, 40), (800, 600), (1, 5)])
def test_letterbox_geometry(shape):
    image = np.zeros((*shape, 3), np.uint8)
    padded, box = letterbox_image(image, SIZE)
    assert padded.shape == (SIZE, SIZE, 3) and padded.dtype == np.uint8
    assert box.orig_shape == shape and box.size == SIZE
    assert max(box.new_shape) == SIZE  # the longer side fills the input
    assert box.new_shape[0] / box.new_shape[1] == pytest.approx(shape[0] / shape[1], rel=0.05)
    # centred: the two margins differ by at most one pixel
    assert abs(2 * box.top + box.new_shape[0] - SIZE) <= 1
    assert abs(2 * box.left + box.new_shape[1] - SIZE) <= 1


@pytest.mark.parametrize("shape", [(31, 47), (47, 31), (40, 40), (800, 600), (1, 5)])
def test_letterbox_round_trip(shape):
    rng = np.random.default_rng(0)
    # enlargement: even independent random labels per pixel must come back exactly
    enlarged = max(shape) <= SIZE
    mask = rng.integers(0, 3, shape, dtype=np.uint8) if enlarged else drawn_mask(*shape)
    _, box = letterbox_image(np.zeros((*shape, 3), np.uint8), SIZE)
    boxed = letterbox_mask(mask, box)
    assert boxed.shape == (SIZE, SIZE) and set(np.unique(boxed)) <= {0, 1, 2}
    probs = unletterbox_probs(one_hot(boxed), box)
    assert probs.shape == (3, *shape) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=0), 1, atol=1e-5)
    back = probs.argmax(axis=0)
    if enlarged:
        np.testing.assert_array_equal(back, mask)
    else:
        for label in (1, 2):
            assert iou(back == label, mask == label) > 0.95
            # sub-pixel alignment: cv2's plain INTER_NEAREST would drift by half an input pixel
            drift = np.abs(np.argwhere(back == label).mean(0) - np.argwhere(mask == label).mean(0))
            assert drift.max() < 0.5


@pytest.mark.parametrize(("shape", "size"), [((37, 64), 64), ((40, 40), 40)])
def test_unletterbox_is_exact_without_resizing(shape, size):
    mask = np.random.default_rng(2).integers(0, 3, shape, dtype=np.uint8)
    _, box = letterbox_image(np.zeros((*shape, 3), np.uint8), size)
    assert box.new_shape == shape
    np.testing.assert_array_equal(
        unletterbox_probs(one_hot(letterbox_mask(mask, box)), box), one_hot(mask)
    )


def test_letterbox_mask_keeps_labels():
    mask = np.random.default_rng(3).choice(np.array([0, 2], np.uint8), (31, 47))
    _, box = letterbox_image(np.zeros((31, 47, 3), np.uint8), SIZE)
    boxed = letterbox_mask(mask, box)
    assert set(np.unique(boxed)) == {0, 2}  # nearest neighbour: no blended label 1 on edges
    full = letterbox_mask(np.full((31, 47), 2, np.uint8), box)
    assert (full[: box.top] == 0).all() and (full[box.top : box.top + box.new_shape[0]] == 2).all()


def test_letterbox_pads_with_border_median():
    rng = np.random.default_rng(1)
    image = np.empty((31, 47, 3), np.uint8)
    image[...] = (60, 30, 90)  # dark cell filling the middle
    image[0], image[-1] = rng.integers(200, 240, (2, 47, 3))
    image[:, 0], image[:, -1] = rng.integers(200, 240, (2, 31, 3))
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    expected = np.round(np.median(border, axis=0)).astype(np.uint8)
    padded, box = letterbox_image(image, 128)
    assert box.top > 0 and box.left == 0
    pad = np.concatenate([padded[: box.top].reshape(-1, 3), padded[-box.top :].reshape(-1, 3)])
    assert (pad == expected).all()
    assert expected.min() >= 200  # slide background, not black


def test_letterbox_shrinks_without_aliasing():
    checker = (np.indices((768, 768)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = np.repeat(checker[..., None], 3, axis=2)
    padded, _ = letterbox_image(image, SIZE)
    # area averaging turns a 1-px checkerboard into a near-uniform grey; point sampling would not
    assert padded.std() < 20 and 100 < padded.mean() < 155


def test_letterbox_mask_rejects_other_shape():
    _, box = letterbox_image(np.zeros((31, 47, 3), np.uint8), SIZE)
    with pytest.raises(ValueError):
        letterbox_mask(np.zeros((47, 31), np.uint8), box)


# --- Normalisation ----------------------------------------------------------------------------
def test_to_tensor_layout_values_and_shapes():
    image = np.zeros((4, 5, 3), np.uint8)
    image[1, 2] = (255, 0, 128)
    out = to_tensor_layout(image)
    assert out.shape == (3, 4, 5) and out.dtype == np.float32 and out.flags.c_contiguous
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    np.testing.assert_allclose(
        out[:, 1, 2], (np.array([255, 0, 128]) / 255 - mean) / std, rtol=1e-6
    )
    np.testing.assert_allclose(out[:, 0, 0], -mean / std, rtol=1e-6)
    batch = to_tensor_layout(np.stack([image, image[::-1]]))
    assert batch.shape == (2, 3, 4, 5)
    np.testing.assert_array_equal(batch[0], out)
    np.testing.assert_array_equal(batch[1], out[:, ::-1])
    custom = to_tensor_layout(image, mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_allclose(custom[:, 1, 2], [1, 0, 128 / 255], rtol=1e-6)


def test_to_tensor_layout_rejects_floats_and_bad_shapes():
    with pytest.raises(TypeError):
        to_tensor_layout(np.zeros((4, 5, 3), np.float32))
    with pytest.raises(ValueError):
        to_tensor_layout(np.zeros((4, 5), np.uint8))


# --- Config -----------------------------------------------------------------------------------
def test_config_round_trips_through_json():
    cfg = AugmentConfig(rotation_deg=20, blur_sigma=(0.5, 2.0), hflip=False)
    assert AugmentConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert AugmentConfig.from_dict({}) == AugmentConfig()


@pytest.mark.parametrize(
    "bad", [{"rotaton_deg": 5}, {"zoom": -0.1}, {"brightness": 1.0}, {"blur_prob": 2}]
)
def test_config_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        AugmentConfig.from_dict(bad)


# --- Geometry ---------------------------------------------------------------------------------
def test_no_augment_is_identity():
    sample = synth_cell("HSIL", 3, (90, 130))
    matrix = random_affine((90, 130), np.random.default_rng(0), NO_AUGMENT)
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 1, 0]])
    image, mask = augment_pair(sample.image, sample.mask, np.random.default_rng(0), NO_AUGMENT)
    np.testing.assert_array_equal(image, sample.image)
    np.testing.assert_array_equal(mask, sample.mask)
    assert image is not sample.image and mask is not sample.mask


@pytest.mark.parametrize("seed", range(6))
def test_augment_pair_keeps_types_and_labels(seed):
    sample = synth_cell("HSIL", seed, (120, 180))
    image, mask = augment_pair(
        sample.image, sample.mask, np.random.default_rng(seed), AugmentConfig()
    )
    assert image.shape == sample.image.shape and image.dtype == np.uint8
    assert mask.shape == sample.mask.shape and mask.dtype == sample.mask.dtype
    assert set(np.unique(mask)) <= {0, 1, 2}
    assert not np.array_equal(image, sample.image)


def test_augment_pair_is_deterministic():
    sample = synth_cell("LSIL", 5, 128)

    def run(seed):
        return augment_pair(sample.image, sample.mask, np.random.default_rng(seed), AugmentConfig())

    (a_img, a_mask), (b_img, b_mask), (c_img, _) = run(7), run(7), run(8)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_mask, b_mask)
    assert not np.array_equal(a_img, c_img)


@pytest.mark.parametrize("seed", range(8))
def test_same_geometry_on_image_and_mask(seed):
    mask = drawn_mask(150, 200)
    image = PALETTE[mask]  # the image is a pure function of the mask
    out_img, out_mask = augment_pair(image, mask, np.random.default_rng(seed), GEOMETRY_ONLY)
    for label in (0, 1, 2):
        # away from label borders bilinear and nearest sampling must agree on the label's colour
        inner = interior(out_mask == label)
        assert inner.sum() > 30
        assert np.abs(out_img[inner].astype(int) - PALETTE[label]).max() <= 1


@pytest.mark.parametrize("seed", range(6))
def test_nuclei_stay_dark_under_full_augmentation(seed):
    sample = synth_cell("HSIL", seed, 160)
    image, mask = augment_pair(
        sample.image, sample.mask, np.random.default_rng(seed), AugmentConfig()
    )
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    nucleus, background = interior(mask == 2), interior(mask == 0)
    assert nucleus.sum() > 50 and background.sum() > 50
    assert np.percentile(grey[nucleus], 95) < np.percentile(grey[background], 5)


def test_flips_are_exact_mirrors():
    sample = synth_cell("NILM", 2, (70, 90))
    cfg = dataclasses.replace(NO_AUGMENT, hflip=True)
    seen = set()
    for seed in range(12):
        image, mask = augment_pair(sample.image, sample.mask, np.random.default_rng(seed), cfg)
        flipped = np.array_equal(image, sample.image[:, ::-1])
        assert flipped or np.array_equal(image, sample.image)
        np.testing.assert_array_equal(mask, sample.mask[:, ::-1] if flipped else sample.mask)
        seen.add(flipped)
    assert seen == {True, False}


def centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_shift_stays_within_bounds():
    h, w = 193, 257  # odd: the disc centre is the exact image centre
    mask = np.zeros((h, w), np.uint8)
    cv2.circle(mask, (w // 2, h // 2), 25, 1, -1)
    image = PALETTE[mask]
    cfg = AugmentConfig()  # rotation, zoom, shear and flips act about the centre: no shift
    moves = []
    for seed in range(200):
        _, out = augment_pair(image, mask, np.random.default_rng(seed), cfg)
        moves.append(np.abs(centroid(out) - centroid(mask)))
    moves = np.array(moves)
    bound = cfg.shift * np.array([w, h])
    assert (moves <= bound + 1.0).all()
    assert (moves.max(axis=0) > 0.8 * bound).all()  # and the whole range is used


def test_rotation_stays_within_bounds():
    mask = np.zeros((201, 201), np.uint8)
    cv2.ellipse(mask, (100, 100), (70, 20), 0, 0, 360, 1, -1)
    cfg = dataclasses.replace(NO_AUGMENT, rotation_deg=10)
    angles = []
    for seed in range(100):
        _, out = augment_pair(PALETTE[mask], mask, np.random.default_rng(seed), cfg)
        m = cv2.moments(out, binaryImage=True)
        angles.append(math.degrees(0.5 * math.atan2(2 * m["mu11"], m["mu20"] - m["mu02"])))
    angles = np.abs(angles)
    assert angles.max() <= 10.5 and angles.max() > 8


def test_zoom_and_shear_stay_within_bounds():
    cfg = dataclasses.replace(NO_AUGMENT, zoom=0.15, shear=0.15, hflip=True, vflip=True)
    rng = np.random.default_rng(0)
    dets = np.array([np.linalg.det(random_affine((64, 64), rng, cfg)[:, :2]) for _ in range(500)])
    # area scale = zoom^2 * cos(shear); flips give the sign
    assert (np.abs(dets) >= 0.85**2 * math.cos(0.15) - 1e-9).all()
    assert (np.abs(dets) <= 1.15**2 + 1e-9).all()
    assert np.abs(dets).min() < 0.8 and np.abs(dets).max() > 1.25
    assert 0.35 < (dets < 0).mean() < 0.65


# --- Colour -----------------------------------------------------------------------------------
def test_colour_jitter_changes_colour_not_geometry():
    rng = np.random.default_rng(4)
    palette = rng.integers(30, 250, (20, 3), dtype=np.uint8)
    index = rng.integers(0, 20, (96, 96))
    image = palette[index]
    for seed in range(10):
        out = colour_jitter(image, np.random.default_rng(seed), AugmentConfig())
        assert out.shape == image.shape and out.dtype == np.uint8
        assert np.abs(out.astype(int) - image).mean() > 1
        # a per-pixel colour map: equal input colours give equal output colours everywhere
        for k in range(20):
            colours = out[index == k]
            assert (colours == colours[0]).all()


def test_stain_alone_changes_colour():
    image = synth_cell("HSIL", 1, 96).image
    cfg = dataclasses.replace(NO_AUGMENT, stain=0.05)
    out = colour_jitter(image, np.random.default_rng(0), cfg)
    assert 0.5 < np.abs(out.astype(int) - image).mean() < 20
    np.testing.assert_array_equal(colour_jitter(image, np.random.default_rng(0), NO_AUGMENT), image)


def test_hue_keeps_greys_grey():
    grey = np.repeat(np.arange(0, 256, 8, dtype=np.uint8)[:, None, None], 3, axis=2)
    cfg = dataclasses.replace(NO_AUGMENT, hue_deg=30, saturation=0.5)
    out = colour_jitter(grey, np.random.default_rng(0), cfg).astype(int)
    assert (out.max(axis=2) - out.min(axis=2)).max() <= 2


def test_colour_only_augmentation_keeps_mask():
    sample = synth_cell("ASC-US", 9, 128)
    image, mask = augment_pair(sample.image, sample.mask, np.random.default_rng(0), COLOUR_ONLY)
    np.testing.assert_array_equal(mask, sample.mask)
    assert not np.array_equal(image, sample.image)


def test_blur_smooths_the_image_only():
    sample = synth_cell("ASC-US", 9, 128)
    cfg = dataclasses.replace(NO_AUGMENT, blur_prob=1.0)
    image, mask = augment_pair(sample.image, sample.mask, np.random.default_rng(0), cfg)
    np.testing.assert_array_equal(mask, sample.mask)
    # less high-frequency energy than the input
    lap = [np.abs(cv2.Laplacian(cv2.cvtColor(i, cv2.COLOR_RGB2GRAY), cv2.CV_32F)).mean()
           for i in (sample.image, image)]  # fmt: skip
    assert lap[1] < lap[0]
