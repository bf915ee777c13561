"""The automatic CPU precision: int8 built on first use, gated, stored, reused, or forced off."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cytoreview.cli.main import main
from cytoreview.errors import ConfigError
from cytoreview.inference import precision_gate
from cytoreview.inference.onnx_export import export_onnx
from cytoreview.inference.precision_gate import MaskAgreement
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.workflows import precision, segmentation
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.segmentation import load_predictor, segment_project
from tests.conftest import run_job
from tests.inference.int8_models import (
    GreyNet,
    add_grey_model,
    grey_net_onnx,
    write_grey_cells,
)

INT8 = "CPU (onnxruntime int8,"
FP32 = "CPU (onnxruntime fp32,"


@pytest.fixture(scope="module")
def grey_onnx() -> bytes:
    return grey_net_onnx()


@pytest.fixture
def grey_project(project: Project, tmp_path: Path, grey_onnx: bytes) -> tuple[Project, str]:
    run_job(import_images(project, write_grey_cells(tmp_path / "cells", 10, seed=5), actor="t"))
    return project, add_grey_model(project, grey_onnx)


def _no_rebuild(*_args, **_kwargs):
    raise AssertionError("the stored decision should have been reused")


def test_auto_builds_gates_stores_and_then_reuses(grey_project, monkeypatch) -> None:
    project, model_id = grey_project
    store = ModelStore(project)
    assert store.load_precision(model_id) is None
    _, predictor, _ = load_predictor(project, None)  # auto, CPU
    assert predictor.device.startswith(INT8) and predictor.precision == "int8"
    record = store.load_precision(model_id)
    assert record["decision"] == "int8" and record["gate"]["passed"]
    assert set(record["gate"]["dice_loss"]) == {"cytoplasm", "nucleus"}
    assert max(record["gate"]["dice_loss"].values()) <= precision_gate.MAX_DICE_LOSS
    calibration, held_out = record["calibration"]["images"], record["gate"]["images"]
    assert len(calibration) == 5 and len(held_out) == 5 and record["gate"]["held_out"]
    assert not set(calibration) & set(held_out)
    assert "bfloat16" in record["bf16"]["reason"] and store.int8_onnx_path(model_id).is_file()
    assert record["graph_rewrites"] == ["softmax_by_parts"]  # GreyNet upsamples by scales
    # A later run reads the decision: nothing is calibrated or measured again.
    monkeypatch.setattr(precision, "measure_int8", _no_rebuild)
    _, again, _ = load_predictor(project, model_id)
    assert again.device.startswith(INT8)
    _, report = run_job(segment_project(project, actor="bot"))
    assert report.device.startswith(INT8) and len(report.segmented) == 10


def test_a_failing_gate_keeps_fp32(grey_project, monkeypatch) -> None:
    project, model_id = grey_project
    big = {"cytoplasm": 0.2, "nucleus": 0.01}
    monkeypatch.setattr(precision_gate, "mask_agreement", lambda *_: MaskAgreement(big, big, big))
    _, predictor, _ = load_predictor(project, model_id)
    assert predictor.device.startswith(FP32) and predictor.precision == "fp32"
    record = ModelStore(project).load_precision(model_id)
    assert record["decision"] == "fp32" and not record["gate"]["passed"]
    assert record["gate"]["dice_loss"] == big and "above the 0.005 limit" in record["reason"]
    monkeypatch.setattr(precision, "measure_int8", _no_rebuild)
    _, still, _ = load_predictor(project, model_id)  # the failed gate is remembered too
    assert still.device.startswith(FP32)
    _, forced, _ = load_predictor(project, model_id, precision="int8")  # asked for: given
    assert forced.device.startswith(INT8)


def test_a_new_export_is_measured_again(grey_project, monkeypatch) -> None:
    project, model_id = grey_project
    store = ModelStore(project)
    load_predictor(project, model_id)
    first = store.load_precision(model_id)
    retrained = GreyNet()
    with torch.no_grad():
        retrained.head.bias += 0.1
    store.save_onnx(model_id, export_onnx(retrained.eval(), 64))  # e.g. a re-export
    calls = []
    original = precision.measure_int8
    monkeypatch.setattr(precision, "measure_int8", lambda *a: calls.append(1) or original(*a))
    load_predictor(project, model_id)
    assert calls == [1]
    assert store.load_precision(model_id)["fp32_sha256"] != first["fp32_sha256"]
    store.int8_onnx_path(model_id).write_bytes(b"damaged")  # a damaged int8 file: rebuilt
    _, predictor, _ = load_predictor(project, model_id)
    assert calls == [1, 1] and predictor.device.startswith(INT8)


def test_fp32_and_unusable_choices(grey_project) -> None:
    project, model_id = grey_project
    _, predictor, _ = load_predictor(project, model_id, precision="fp32")
    assert predictor.device.startswith(FP32)
    assert ModelStore(project).load_precision(model_id) is None  # nothing built or measured
    with pytest.raises(ConfigError, match="unknown precision"):
        load_predictor(project, model_id, precision="fp16")
    with pytest.raises(ConfigError, match="ONNX Runtime only"):
        load_predictor(project, model_id, engine="torch", precision="int8")


def test_cli_precision_flag(grey_project, capsys: pytest.CaptureFixture[str]) -> None:
    project, model_id = grey_project
    root = project.root
    project.close()  # the command opens the project itself
    assert main(["segment", str(root), "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "10 image(s) auto-segmented" in out and "onnxruntime fp32" in out
    with Project.open(root) as reopened:
        assert ModelStore(reopened).load_precision(model_id) is None
    assert main(["segment", str(root)]) == 0  # auto
    assert "onnxruntime int8" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["segment", str(root), "--precision", "bf16"])


def test_cuda_keeps_the_fp32_export(grey_project, monkeypatch) -> None:
    project, model_id = grey_project
    # As if ONNX Runtime had a working GPU: int8 (a CPU model) is refused, auto builds nothing.
    monkeypatch.setattr(
        segmentation, "onnx_providers", lambda device: ["CUDAExecutionProvider", "CPU"]
    )
    with pytest.raises(ConfigError, match="int8 is for the CPU"):
        load_predictor(project, model_id, precision="int8")
    _, predictor, _ = load_predictor(project, model_id, device="auto")
    assert predictor.precision == "fp32"
    assert ModelStore(project).load_precision(model_id) is None
