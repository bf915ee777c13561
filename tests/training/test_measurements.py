"""Fitting the measurement model: it learns, is reproducible and weighs classes equally."""

from __future__ import annotations

import numpy as np
import pytest

from cytoreview.training.measurements import fit_measurement_model

CLASSES = ("NILM", "LSIL", "HSIL")
NAMES = tuple(f"f{i}" for i in range(5))


def blobs(counts=(60, 60, 60), spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0, 0], [3, 0, 1, 0, 0], [0, 3, -1, 0, 0]], float)
    x = np.concatenate(
        [rng.normal(c, spread, size=(n, 5)) for c, n in zip(centres, counts, strict=False)]
    )
    y = np.repeat(np.arange(3), counts)
    return x * [1, 100, 0.01, 1, 1] + [0, 500, 0, 0, 0], y  # wildly different feature scales


def test_learns_separable_classes_whatever_the_feature_scales():
    x, y = blobs()
    model = fit_measurement_model(x, y, CLASSES, NAMES, seed=0, members=2)
    assert model.class_names == CLASSES and model.features == NAMES and len(model.members) == 2
    held_out, truth = blobs(seed=1)
    assert (model.probs(held_out).argmax(1) == truth).mean() > 0.9


def test_same_seed_same_model_other_seed_other_model():
    x, y = blobs()
    a, b = (fit_measurement_model(x, y, CLASSES, NAMES, seed=3, members=2) for _ in range(2))
    np.testing.assert_array_equal(a.probs(x), b.probs(x))
    c = fit_measurement_model(x, y, CLASSES, NAMES, seed=4, members=2)
    assert not np.array_equal(a.probs(x), c.probs(x))


def test_a_rare_class_is_not_drowned_and_constant_features_are_harmless():
    x, y = blobs(counts=(150, 12, 150), spread=1.2)
    x[:, 4] = 7.0  # a feature that never changes
    model = fit_measurement_model(x, y, CLASSES, NAMES, seed=0, members=2)
    held_out, truth = blobs(counts=(100, 100, 100), spread=1.2, seed=5)
    held_out[:, 4] = 7.0
    predicted = model.probs(held_out).argmax(1)
    assert np.isfinite(model.probs(held_out)).all()
    assert (predicted[truth == 1] == 1).mean() > 0.7  # the rare class's recall


def test_bad_inputs_are_refused():
    x, y = blobs()
    with pytest.raises(ValueError, match="do not fit"):
        fit_measurement_model(x[:-1], y, CLASSES, NAMES)
    with pytest.raises(ValueError, match="do not fit"):
        fit_measurement_model(x, y, CLASSES, NAMES[:-1])
    with pytest.raises(ValueError, match="out of range"):
        fit_measurement_model(x, y + 1, CLASSES, NAMES)
