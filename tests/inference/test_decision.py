"""Decision offsets: the shifted arg-max and their choice on validation images."""

from __future__ import annotations

import numpy as np
import pytest

from cytoreview.inference.decision import (
    MIN_CELLS,
    OffsetFit,
    argmax_classes,
    decide,
    fit_offsets,
)
from cytoreview.inference.segment import SegmenterSpec, segment_images


def ring_cell(size: int = 32, shy: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """A nucleus in a thin cytoplasm ring, and probabilities that call the ring background.

    Inside the ring the model gives cytoplasm ``shy`` and background the rest: the plain
    arg-max loses the ring when ``shy`` < 0.5, as an under-confident network does.
    """
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    truth = np.zeros((size, size), np.uint8)
    truth[r < 10] = 1
    truth[r < 7] = 2
    probs = np.zeros((3, size, size), np.float32)
    probs[0] = 0.9
    probs[1] = 0.1
    probs[:, truth == 1] = np.array([[1 - shy], [shy], [0.0]], np.float32)
    probs[:, truth == 2] = np.array([[0.05], [0.05], [0.9]], np.float32)
    return probs, truth


def test_zero_offsets_are_the_plain_arg_max() -> None:
    probs = np.random.default_rng(0).dirichlet((1, 1, 1), size=(9, 7)).transpose(2, 0, 1)
    assert np.array_equal(decide(probs), probs.argmax(0))
    assert np.array_equal(decide(probs, (0.0, 0.0, 0.0)), probs.argmax(0))
    # An offset of log(2) on class 1 makes it win wherever p1 > p0 / 2 and p1 > p2 / 2.
    shifted = decide(probs, (0.0, float(np.log(2.0)), 0.0))
    expected = (np.log(probs) + np.array([0, np.log(2.0), 0])[:, None, None]).argmax(0)
    assert np.array_equal(shifted, expected) and (shifted == 1).sum() > (probs.argmax(0) == 1).sum()


@pytest.mark.parametrize("classes", [1, 2, 3, 5])
def test_argmax_classes_is_numpys_arg_max_ties_included(classes: int) -> None:
    rng = np.random.default_rng(classes)
    # Coarse values make many ties (between 2 or more classes): the lower class wins them.
    scores = rng.integers(0, 4, size=(classes, 33, 17)).astype(np.float32)
    labels = argmax_classes(scores)
    assert labels.dtype == np.uint8 and labels.shape == (33, 17)
    assert np.array_equal(labels, scores.argmax(0))
    if classes > 1:  # probabilities: few ties, many distinct values
        smooth = rng.dirichlet(np.ones(classes), size=(8, 8)).transpose(2, 0, 1)
        assert np.array_equal(argmax_classes(smooth), smooth.argmax(0))
    with pytest.raises(ValueError, match="scores must be"):
        argmax_classes(scores[0])


def test_an_under_called_ring_gets_a_cytoplasm_offset_that_restores_it() -> None:
    cells = [ring_cell(shy=shy) for shy in (0.35, 0.4, 0.45, 0.4, 0.4) * 2]
    plain = [decide(p) for p, _ in cells]
    assert all((m == 1).sum() == 0 for m in plain)  # the ring is lost without offsets
    fit = fit_offsets([p for p, _ in cells], [t for _, t in cells], [True, True, True])
    # One offset for the cell against background: the nucleus-cytoplasm border stays.
    assert fit.offsets[0] == 0 and fit.offsets[1] == fit.offsets[2] > 0
    assert fit.after["cytoplasm"] > 0.99 and fit.before["cytoplasm"] < 0.5
    # Without its ring the nucleus is a lone blob, which the clean-up drops: scored as users
    # get the masks.
    assert fit.before["nucleus"] == 0 and fit.after["nucleus"] > 0.99
    # The smallest offset that does it: log((1 - 0.35) / 0.35) = 0.62, the grid's next is 0.8;
    # the background ring outside (p 0.9 against 0.1) must stay background.
    assert fit.offsets[1] == pytest.approx(0.8)
    assert "offset +0.8 on the cells" in fit.describe()
    assert OffsetFit.from_dict(fit.to_dict()) == fit


def test_no_offsets_without_a_gain_or_enough_images() -> None:
    right = [ring_cell(shy=0.8) for _ in range(MIN_CELLS)]
    fit = fit_offsets([p for p, _ in right], [t for _, t in right], [True, True, True])
    assert fit.offsets == (0.0, 0.0, 0.0) and "raised" in fit.reason
    few = [ring_cell(shy=0.4)] * (MIN_CELLS - 1)  # one cell each: one too few
    fit = fit_offsets([p for p, _ in few], [t for _, t in few], [True, True, True])
    assert fit.offsets == (0.0, 0.0, 0.0)
    assert f"{MIN_CELLS - 1} cell(s) in {MIN_CELLS - 1} validation image(s)" in fit.describe()
    # Cells, not images, count: one field with enough cells is enough.
    field_probs = np.concatenate([p for p, _ in few + few[:1]], axis=2)
    field_truth = np.concatenate([t for _, t in few + few[:1]], axis=1)
    fit = fit_offsets([field_probs], [field_truth], [True, True, True])
    assert fit.offsets[1] > 0 and fit.n_images == 1
    with pytest.raises(ValueError, match="probability maps"):
        fit_offsets([right[0][0]], [], [True, True, True])


def test_a_nucleus_only_project_shifts_only_the_nucleus() -> None:
    cells = []
    for shy in (0.3, 0.35, 0.4) * 4:
        probs, truth = ring_cell()
        truth = np.where(truth == 2, 2, 0).astype(np.uint8)
        probs[1] = 0.0  # the model never saw cytoplasm (dropped, as inference drops it)
        probs[0] = np.where(truth == 2, 1 - shy, 0.95)
        probs[2] = np.where(truth == 2, shy, 0.05)
        cells.append((probs, truth))
    fit = fit_offsets([p for p, _ in cells], [t for _, t in cells], [True, False, True])
    assert fit.offsets[1] == 0 and fit.offsets[2] > 0 and set(fit.after) == {"nucleus"}


def test_the_model_s_offsets_shape_its_masks() -> None:
    probs, truth = ring_cell(size=64, shy=0.4)
    image = np.zeros((64, 64, 3), np.uint8)

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.repeat(probs[None], len(batch), axis=0)

    plain = SegmenterSpec(input_size=64)
    shifted = SegmenterSpec.from_config({"input_size": 64, "class_offsets": [0.0, 0.8, 0.0]})
    assert shifted.offsets == (0.0, 0.8, 0.0) and plain.offsets == (0.0, 0.0, 0.0)
    without = segment_images([image], predict, plain)[0]
    with_offsets = segment_images([image], predict, shifted)[0]
    assert (without.mask == 1).sum() == 0
    assert np.array_equal(with_offsets.mask, truth)
    # The uncertainty is the network's own: the offsets change the labels only.
    assert with_offsets.uncertainty == pytest.approx(without.uncertainty, rel=0.5)
    assert np.array_equal(with_offsets.probs, without.probs)
