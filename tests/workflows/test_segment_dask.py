"""``segment`` on Dask workers: the same masks, bit for bit, as in this process.

A tiny project of drawn cells and a hand-set network (no training: see
``tests/inference/int8_models.py``); the precision gate and the 8-view averaging run as they do
by default. One image's file is deleted: the worker names it and the rest is segmented.
"""

from __future__ import annotations

import numpy as np
import pytest

from cytoreview.defaults import COMPUTE
from cytoreview.storage.project import Project
from cytoreview.workflows import executors
from cytoreview.workflows.executors import ExecutorSpec, LocalExecutor
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.segmentation import segment_project
from tests.conftest import run_job
from tests.inference.int8_models import add_grey_model, grey_net_onnx, write_grey_cells


def _masks(project: Project) -> dict[str, np.ndarray]:
    found = {}
    for image in project.images():
        current = project.current_mask(image.id)
        if current is not None:
            found[image.name] = current[1]
    return found


@pytest.mark.slow
def test_masks_are_identical_in_process_and_on_one_or_two_workers(
    project, tmp_path, monkeypatch
) -> None:
    run_job(import_images(project, write_grey_cells(tmp_path / "cells", 10, seed=7), actor="t"))
    model_id = add_grey_model(project, grey_net_onnx())
    gone = project.images()[3]
    project.image_path(gone).unlink()
    opened: list[int] = []

    class Recorded(LocalExecutor):
        def __init__(self, ahead: int = 1) -> None:
            opened.append(ahead)
            super().__init__(ahead)

    monkeypatch.setattr(executors, "LocalExecutor", Recorded)
    runs = {}
    for name, spec in [
        ("process", ExecutorSpec("none")),
        ("one batch at a time", LocalExecutor(ahead=1)),
        ("one worker", ExecutorSpec("local", 1)),
        ("two workers", ExecutorSpec("local", 2)),
    ]:
        events, report = run_job(segment_project(project, actor="bot", batch_size=3, compute=spec))
        runs[name] = (report, _masks(project), events)
    here, masks, events = runs["process"]
    assert here.driver == "this process" and here.tta and here.model_id == model_id
    assert len(here.segmented) == 9 and len(masks) == 9
    assert len(here.problems) == 1 and gone.name in here.problems[0]
    assert any(e.level == "warning" and gone.name in e.message for e in events)
    # In this process, segment computes the default number of batches at once.
    assert opened == [COMPUTE.segment_chunks_ahead] and COMPUTE.segment_chunks_ahead == 2
    for name in ("one batch at a time", "one worker", "two workers"):
        report, other, _ = runs[name]
        where = "this process" if name == "one batch at a time" else "LocalCluster: "
        assert report.driver.startswith(where), report.driver
        assert sorted(report.segmented) == sorted(here.segmented)
        assert report.problems == here.problems
        # The precision the gate chose in this process is the one the workers ran.
        assert here.device.split(",")[0] in report.device, (here.device, report.device)
        assert other.keys() == masks.keys()
        for image, mask in masks.items():
            assert np.array_equal(other[image], mask), (name, image)
            assert other[image].dtype == mask.dtype
        assert report.uncertainties == here.uncertainties
