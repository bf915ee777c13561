"""The classifier runtime: ONNX Runtime (closed-form or autograd maps) against torch eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cytoreview.data.cls_dataset import make_inputs
from cytoreview.data.synthetic import synth_dataset
from cytoreview.errors import ConfigError
from cytoreview.inference.classify import export_classifier_onnx
from cytoreview.models.classifiers import TINY_BACKBONE, build_classifier
from cytoreview.workflows.classification import LoadedClassifier
from cytoreview.workflows.cls_runtime import ClassifierRuntime, classifier_runtime

CLASSES = ["NILM", "LSIL", "HSIL"]
SIZE = 64


def loaded_model(arch: str, backbone: str, with_onnx: bool = True) -> LoadedClassifier:
    torch.manual_seed(2)
    config = {"arch": arch, "backbone": backbone, "mask_backbone": backbone,
              "class_names": CLASSES, "input_size": SIZE}  # fmt: skip
    model = build_classifier(config).eval()
    data = export_classifier_onnx(model, SIZE) if with_onnx else None
    return LoadedClassifier("m", "bethesda", config, model, CLASSES, SIZE, arch != "image-only",
                            onnx_bytes=data)  # fmt: skip


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    samples = [s for _, s in synth_dataset(5, seed=6, classes=CLASSES, size_range=(40, 90))]
    return make_inputs([s.image for s in samples], [s.mask for s in samples], SIZE)


@pytest.mark.parametrize(
    ("arch", "backbone", "closed_form"),
    [("image-only", TINY_BACKBONE, True), ("fusion-gap", "test_efficientnet", False)],
)
def test_onnx_runtime_explains_like_torch(
    arch: str, backbone: str, closed_form: bool, batch: np.ndarray
) -> None:
    loaded = loaded_model(arch, backbone)
    onnx_rt = ClassifierRuntime(loaded, "onnx", "cpu")
    torch_rt = ClassifierRuntime(loaded, "torch", "cpu")
    # EfficientNet: layers after the CAM layer, so autograd makes the maps of the ONNX call.
    assert onnx_rt.closed_form == closed_form and not torch_rt.closed_form
    for target in (None, 1, [0, 1, 2, 0, 1]):
        p1, cams1, t1 = onnx_rt.explain(batch, target)
        p2, cams2, t2 = torch_rt.explain(batch, target)
        assert (t1 == t2).all() and np.abs(p1 - p2).max() <= 1e-5
        assert np.abs(cams1 - cams2).max() <= 1e-4
    with pytest.raises(ValueError, match="out of range"):
        onnx_rt.explain(batch, 3)
    with pytest.raises(ValueError, match="targets"):
        onnx_rt.explain(batch, [0, 1])


def test_runtimes_are_kept_and_engines_checked(batch: np.ndarray) -> None:
    loaded = loaded_model("image-only", TINY_BACKBONE, with_onnx=False)
    runtime = classifier_runtime(loaded, "onnx", "cpu")  # no export loaded: made in memory
    assert classifier_runtime(loaded, "onnx", "cpu") is runtime
    assert runtime.session is not None and runtime.session.has_cam
    assert classifier_runtime(loaded, "torch", "cpu") is not runtime
    np.testing.assert_allclose(
        runtime.probs(batch), classifier_runtime(loaded, "torch", "cpu").probs(batch), atol=1e-5
    )
    with pytest.raises(ConfigError, match="unknown engine"):
        classifier_runtime(loaded, "tensorrt", "cpu")


@pytest.mark.parametrize(("arch", "backbone"), [("fusion-gap", TINY_BACKBONE),
                                                ("fusion-gap", "test_efficientnet")])  # fmt: skip
def test_explain_with_tta_gives_classifys_probabilities_and_the_plain_map(
    arch: str, backbone: str, batch: np.ndarray
) -> None:
    """The class explained is the 8-view mean's (what classify stores); the map is the image's."""
    from cytoreview.inference.classify import mean_over_views

    loaded = loaded_model(arch, backbone)
    for engine in ("onnx", "torch"):
        runtime = ClassifierRuntime(loaded, engine, "cpu")
        mean = mean_over_views(runtime.probs)(batch)
        probs, cams, targets = runtime.explain(batch, None, tta=True)
        np.testing.assert_allclose(probs, mean, atol=1e-5)
        assert (targets == mean.argmax(axis=1)).all()
        _, plain_cams, _ = runtime.explain(batch, targets)
        np.testing.assert_allclose(cams, plain_cams, atol=1e-5)
