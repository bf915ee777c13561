"""The Train dock's "Compute" setting: Auto-segment runs here or on the Dask scheduler named."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cytoreview.storage.project import Project
from cytoreview.workflows import executors
from cytoreview.workflows.executors import ExecutorSpec
from cytoreview.workflows.importing import import_images
from tests.conftest import PATIENCE_MS, run_job
from tests.inference.int8_models import add_grey_model, grey_net_onnx, write_grey_cells

pytestmark = pytest.mark.gui


@pytest.fixture
def grey_workbench(make_napari_viewer, tmp_path: Path):
    from cytoreview.gui.app import build_workbench

    project = Project.init(tmp_path / "proj", actor="t")
    run_job(import_images(project, write_grey_cells(tmp_path / "cells", 3, seed=4), actor="t"))
    add_grey_model(project, grey_net_onnx())
    project.close()
    wb = build_workbench(make_napari_viewer(), tmp_path / "proj", actor="tester")
    yield wb
    wb.close()


def test_the_compute_field_reaches_segment(grey_workbench, qtbot, monkeypatch) -> None:
    panel = grey_workbench.train_panel
    assert panel.compute_spec() == ExecutorSpec()  # empty: the command line's rule
    monkeypatch.setattr(executors, "COMPUTE", replace(executors.COMPUTE, connect_timeout_s=2.0))
    panel.compute.setText(" 127.0.0.1:9 ")
    assert panel.compute_spec() == ExecutorSpec("127.0.0.1:9")
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.start_segmentation(device="cpu")
    level, text = grey_workbench.messages[-1]
    assert level == "error" and "Dask scheduler tcp://127.0.0.1:9 does not answer" in text
    assert panel.start_button.isEnabled()  # the failure ended the job; the dock is usable
    panel.compute.setText("none")
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.start_segmentation(device="cpu")
    report = panel.last_segmentation
    assert report is not None and len(report.segmented) == 3
    assert report.driver == "this process" and "(this process)" in panel.log_view.toPlainText()
