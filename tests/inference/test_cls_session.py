"""The classifier's ONNX Runtime session: same calls as torch, CAM outputs, thread settings.

Measured on these tiny random models: ONNX and torch probabilities differ by at most 3e-8
(2e-7 on trained ones, see the workflow tests); the tests allow 1e-5 and demand the same
arg-max.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import pytest
import torch

from cytoreview.data.cls_dataset import make_inputs
from cytoreview.data.synthetic import synth_dataset
from cytoreview.inference.classify import (
    ClassifierSpec,
    export_classifier_onnx,
    has_cam_outputs,
    predict_class_probs,
)
from cytoreview.inference.cls_session import ClassifierSession, default_threads, session_options
from cytoreview.models.classifiers import TINY_BACKBONE, build_classifier

CLASSES = ["NILM", "ASC-US", "LSIL", "HSIL"]
SIZE = 64


@functools.cache
def model_and_export(arch: str) -> tuple[torch.nn.Module, bytes]:
    torch.manual_seed(5)
    config = {"arch": arch, "backbone": TINY_BACKBONE, "mask_backbone": TINY_BACKBONE,
              "class_names": CLASSES, "input_size": SIZE}  # fmt: skip
    model = build_classifier(config).eval()
    return model, export_classifier_onnx(model, SIZE)


@pytest.fixture(scope="module")
def crops():
    samples = [s for _, s in synth_dataset(9, seed=4, classes=CLASSES, size_range=(40, 90))]
    return [s.image for s in samples], [s.mask for s in samples]


@pytest.mark.parametrize("arch", ["image-only", "fusion-gap", "fusion-flatten"])
def test_session_matches_torch(arch: str, crops) -> None:
    model, data = model_and_export(arch)
    images, masks = crops
    spec = ClassifierSpec(SIZE, tuple(CLASSES), arch)
    session = ClassifierSession(data, device="cpu", threads=2)
    assert session.has_cam and session.device == "CPU (onnxruntime, 2 threads)"
    reference = predict_class_probs(model, images, masks, spec, batch_size=4, device="cpu")
    probs = predict_class_probs(session, images, masks, spec, batch_size=4)  # batches 4, 4, 1
    assert (probs.argmax(1) == reference.argmax(1)).all()
    assert np.abs(probs - reference).max() <= 1e-5
    fwd = session.run_with_cam(make_inputs(images, masks, SIZE))
    np.testing.assert_allclose(fwd.probs, probs, atol=1e-6)
    captured: list[torch.Tensor] = []
    hook = model.cam_layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
    with torch.no_grad():
        model(torch.from_numpy(make_inputs(images, masks, SIZE)))
    hook.remove()
    np.testing.assert_allclose(fwd.features, captured[0].numpy(), atol=1e-5)
    assert (fwd.hidden is None) == (arch == "image-only")
    if fwd.hidden is not None:
        assert fwd.hidden.shape == (len(images), 256) and fwd.hidden.min() >= 0  # after ReLU


def test_an_export_without_cam_outputs_is_recognised() -> None:
    # An export as made before the CAM outputs existed: probs only.
    _, data = model_and_export("image-only")
    assert has_cam_outputs(data)
    graph = onnx.load_from_string(data)
    kept = [o for o in graph.graph.output if o.name == "probs"]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    old = graph.SerializeToString()
    assert not has_cam_outputs(old)
    session = ClassifierSession(old, device="cpu", threads=1)
    assert not session.has_cam
    x = np.zeros((1, 6, SIZE, SIZE), np.float32)
    assert session(x).shape == (1, 4)
    with pytest.raises(ValueError, match="export it again"):
        session.run_with_cam(x)


def test_threads_and_spinning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CYTOREVIEW_CLS_THREADS", "1")
    assert default_threads() == 1
    monkeypatch.setenv("CYTOREVIEW_CLS_THREADS", "nonsense")
    assert default_threads() >= 1
    options = session_options(2)
    assert options.intra_op_num_threads == 2 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert (
        session_options(1, spinning=True).get_session_config_entry(
            "session.intra_op.allow_spinning"
        )
        == "1"
    )
    with pytest.raises(ValueError, match="threads"):
        session_options(0)
    _, data = model_and_export("image-only")
    with pytest.raises(TypeError, match="bytes"):
        ClassifierSession("model.onnx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="numpy array"):
        ClassifierSession(data, "cpu", 1)(np.zeros((6, SIZE, SIZE), np.float32))
