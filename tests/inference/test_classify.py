"""Classifying crops with torch and with the ONNX export: same layout, same probabilities."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from cytoreview.data.cls_dataset import make_inputs
from cytoreview.data.synthetic import synth_dataset
from cytoreview.errors import ConfigError
from cytoreview.inference.classify import (
    ClassifierSpec,
    export_classifier_onnx,
    predict_class_probs,
)
from cytoreview.inference.predictors import OnnxPredictor
from cytoreview.metrics.classification import derive_binary
from cytoreview.models.classifiers import TINY_BACKBONE, build_classifier

CLASSES = ["NILM", "ASC-US", "LSIL", "HSIL"]
SIZE = 64


def make_model(arch: str) -> torch.nn.Module:
    torch.manual_seed(1)
    config = {
        "arch": arch,
        "backbone": TINY_BACKBONE,
        "mask_backbone": TINY_BACKBONE,
        "class_names": CLASSES,
        "input_size": SIZE,
    }
    return build_classifier(config).eval(), ClassifierSpec.from_config(config)


@pytest.fixture(scope="module")
def crops():
    samples = [s for _, s in synth_dataset(7, seed=21, classes=CLASSES, size_range=(40, 90))]
    return [s.image for s in samples], [s.mask for s in samples]


def test_spec_from_config() -> None:
    spec = ClassifierSpec.from_config({"input_size": 96, "class_names": ["a", "b"]})
    assert spec == ClassifierSpec(96, ("a", "b"), "fusion-gap") and spec.uses_mask
    assert not ClassifierSpec(64, ("a", "b"), "image-only").uses_mask
    with pytest.raises(ConfigError, match="input_size"):
        ClassifierSpec.from_config({"class_names": ["a", "b"]})


@pytest.mark.parametrize("arch", ["image-only", "fusion-gap"])
def test_torch_probabilities_match_the_model(arch: str, crops) -> None:
    model, spec = make_model(arch)
    images, masks = crops
    with torch.no_grad():
        expected = torch.softmax(model(torch.from_numpy(make_inputs(images, masks, SIZE))), 1)
    probs = predict_class_probs(model, images, masks, spec, batch_size=3, device="cpu")
    assert probs.shape == (7, 4) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, expected.numpy(), atol=1e-5)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-5)
    one_by_one = predict_class_probs(model, images, masks, spec, batch_size=1, device="cpu")
    np.testing.assert_allclose(one_by_one, probs, atol=1e-5)
    assert predict_class_probs(model, [], [], spec, device="cpu").shape == (0, 4)


def test_masks_are_required_by_fusion_models_only(crops) -> None:
    images, masks = crops
    fusion, spec = make_model("fusion-gap")
    with pytest.raises(ValueError, match="needs a mask"):
        predict_class_probs(fusion, images, None, spec, device="cpu")
    image_only, spec = make_model("image-only")
    without = predict_class_probs(image_only, images, None, spec, device="cpu")
    with_masks = predict_class_probs(image_only, images, masks, spec, device="cpu")
    np.testing.assert_array_equal(without, with_masks)
    with pytest.raises(ValueError, match="expected"):
        predict_class_probs(lambda b: np.zeros((len(b), 3)), images, masks, spec)


@pytest.mark.parametrize("arch", ["image-only", "fusion-flatten", "fusion-gap"])
def test_onnx_agrees_with_torch(arch: str, crops) -> None:
    model, spec = make_model(arch)
    data = export_classifier_onnx(model, SIZE)
    graph = onnx.load_from_string(data).graph
    # probs first; then what the closed-form Grad-CAM++ needs (see test_cls_session.py)
    hidden = ["head_hidden"] if arch != "image-only" else []
    assert [i.name for i in graph.input] == ["image"]
    assert [o.name for o in graph.output] == ["probs", "cam_features", *hidden]
    onnx_model = OnnxPredictor(data, device="cpu", threads=1)
    images, masks = crops
    reference = predict_class_probs(model, images, masks, spec, batch_size=4, device="cpu")
    # batches of 4 and 3: the batch axis is dynamic
    probs = predict_class_probs(onnx_model, images, masks, spec, batch_size=4)
    assert probs.shape == (7, 4)
    assert np.abs(probs - reference).max() < 1e-4
    assert not np.allclose(reference, reference[0])  # not a constant output


def test_export_leaves_the_model_alone() -> None:
    model, _ = make_model("fusion-gap")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_classifier_onnx(model, SIZE)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_needs_review_probability() -> None:
    probs = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]], np.float32)
    review = derive_binary(probs, CLASSES, {"NILM"})  # the one derivation, in metrics
    np.testing.assert_allclose(review, [0.3, 0.9], atol=1e-6)


def test_tta_is_the_mean_of_the_eight_turned_and_mirrored_crops(crops) -> None:
    """Each view is the crop and its mask turned (and mirrored) together, then letterboxed."""
    model, spec = make_model("fusion-gap")
    images, masks = crops
    views = []
    for turns in range(4):
        for mirrored in (False, True):

            def turn(a: np.ndarray, t: int = turns, m: bool = mirrored) -> np.ndarray:
                a = np.rot90(a, t)
                return np.ascontiguousarray(a[:, ::-1] if m else a)

            views.append(
                predict_class_probs(
                    model, [turn(i) for i in images], [turn(m) for m in masks], spec, device="cpu"
                )
            )
    expected = np.mean(views, axis=0)
    plain = predict_class_probs(model, images, masks, spec, device="cpu")
    probs = predict_class_probs(model, images, masks, spec, batch_size=3, device="cpu", tta=True)
    assert probs.shape == plain.shape and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    # An untrained network is not symmetric: the views disagree, so the mean is no single one.
    assert np.abs(probs - plain).max() > 1e-4


def test_tta_changes_nothing_for_a_symmetric_model(crops) -> None:
    """A predictor that only counts mask pixels gives the same answer on every view."""
    images, masks = crops
    spec = ClassifierSpec(SIZE, ("a", "b"), "fusion-gap")

    def nucleus_share(batch: np.ndarray) -> np.ndarray:
        share = batch[:, 5].mean(axis=(1, 2)).astype(np.float32)
        return np.stack([1 - share, share], axis=1)

    plain = predict_class_probs(nucleus_share, images, masks, spec)
    np.testing.assert_allclose(
        predict_class_probs(nucleus_share, images, masks, spec, tta=True), plain, atol=1e-6
    )


def test_a_measurement_model_joins_the_networks_call(crops) -> None:
    from dataclasses import replace

    from cytoreview.models.measurement_model import combine_probs
    from cytoreview.morphometry.features import FEATURE_NAMES, feature_matrix
    from cytoreview.training.measurements import fit_measurement_model

    model, plain = make_model("fusion-gap")
    images, masks = crops
    features = feature_matrix(images, masks)
    measured = fit_measurement_model(features, [0, 1, 2, 3, 0, 1, 2], CLASSES, FEATURE_NAMES,
                                     members=2)  # fmt: skip
    spec = ClassifierSpec.from_config(
        {"input_size": SIZE, "class_names": CLASSES, "measurements": measured.to_dict()}
    )
    assert spec == plain and spec.measurements is not None  # the same network's spec
    network = predict_class_probs(model, images, masks, plain, device="cpu")
    joined = predict_class_probs(model, images, masks, spec, batch_size=3, device="cpu")
    np.testing.assert_allclose(joined, combine_probs(network, measured.probs(features)), atol=1e-6)
    assert not np.allclose(joined, network, atol=1e-3)
    views = predict_class_probs(model, images, masks, spec, device="cpu", tta=True)
    network_views = predict_class_probs(model, images, masks, plain, device="cpu", tta=True)
    np.testing.assert_allclose(
        views, combine_probs(network_views, measured.probs(features)), atol=1e-6
    )
    with pytest.raises(ValueError, match="needs a mask for every crop"):
        predict_class_probs(model, images, None, replace(spec, arch="image-only"), device="cpu")


def test_a_measurement_model_from_before_new_features_reads_its_own(crops) -> None:
    """A classifier saved with the 27 measurements of 2026-12-06 keeps working unchanged."""
    from cytoreview.models.measurement_model import combine_probs
    from cytoreview.morphometry.features import FEATURE_NAMES, feature_matrix
    from cytoreview.training.measurements import fit_measurement_model

    model, plain = make_model("fusion-gap")
    images, masks = crops
    older = FEATURE_NAMES[:27]
    features = feature_matrix(images, masks)[:, :27]
    measured = fit_measurement_model(features, [0, 1, 2, 3, 0, 1, 2], CLASSES, older, members=2)
    spec = ClassifierSpec.from_config(
        {"input_size": SIZE, "class_names": CLASSES, "measurements": measured.to_dict()}
    )
    network = predict_class_probs(model, images, masks, plain, device="cpu")
    joined = predict_class_probs(model, images, masks, spec, device="cpu")
    np.testing.assert_allclose(joined, combine_probs(network, measured.probs(features)), atol=1e-6)
