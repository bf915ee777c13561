"""The measurement model's call, how it joins the network's, and its plain-list form."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cytoreview.models.measurement_model import MeasurementModel, Perceptron, combine_probs


def model(classes=("NILM", "LSIL", "HSIL"), n_features=4, members=2, seed=0) -> MeasurementModel:
    rng = np.random.default_rng(seed)
    k = len(classes)
    return MeasurementModel(
        features=tuple(f"f{i}" for i in range(n_features)),
        class_names=tuple(classes),
        mean=rng.normal(size=n_features),
        scale=rng.uniform(0.5, 2, n_features),
        members=tuple(
            Perceptron(rng.normal(size=(n_features, 3)), rng.normal(size=3),
                       rng.normal(size=(3, k)), rng.normal(size=k))
            for _ in range(members)
        ),
    )  # fmt: skip


def test_probabilities_are_the_members_mean_of_a_relu_perceptron():
    m = model()
    x = np.random.default_rng(1).normal(size=(5, 4))
    p = m.probs(x)
    assert p.shape == (5, 3) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-6)
    z = (x - m.mean) / m.scale
    by_hand = []
    for member in m.members:
        logits = np.maximum(z @ member.w1 + member.b1, 0) @ member.w2 + member.b2
        by_hand.append(np.exp(logits) / np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_allclose(p, np.mean(by_hand, axis=0), atol=1e-6)
    with pytest.raises(ValueError, match=r"expected \(N, 4\) features"):
        m.probs(np.zeros((2, 3)))


def test_plain_form_round_trips_through_json_and_configs():
    m = model()
    again = MeasurementModel.from_dict(json.loads(json.dumps(m.to_dict())))
    x = np.random.default_rng(2).normal(size=(6, 4))
    np.testing.assert_array_equal(again.probs(x), m.probs(x))
    config = {"class_names": ["NILM", "LSIL", "HSIL"], "measurements": m.to_dict()}
    assert MeasurementModel.from_config(config).class_names == m.class_names
    assert MeasurementModel.from_config({"class_names": ["a", "b"]}) is None
    assert MeasurementModel.from_config({"measurements": True}) is None  # a run's setting
    with pytest.raises(ValueError, match="the image network"):
        MeasurementModel.from_config({**config, "class_names": ["NILM", "HSIL", "LSIL"]})


def test_the_call_is_the_normalised_geometric_mean():
    a = np.array([[0.9, 0.1], [0.5, 0.5], [0.3, 0.7]], np.float32)
    b = np.array([[0.5, 0.5], [0.5, 0.5], [1e-9, 1 - 1e-9]], np.float32)
    out = combine_probs(a, b)
    np.testing.assert_allclose(out.sum(1), 1, atol=1e-6)
    g = np.sqrt([0.45, 0.05])
    np.testing.assert_allclose(out[0], g / g.sum(), atol=1e-6)
    np.testing.assert_allclose(combine_probs(a, a), a, atol=1e-6)  # agreement: unchanged
    assert out[2, 1] > 0.999  # a model sure against a class vetoes it
    with pytest.raises(ValueError, match="different shapes"):
        combine_probs(a, b[:2])
