"""Timings of the workbench's GUI-thread operations (a script, not a test): one JSON object.

These were wall-clock assertions in the GUI tests, which then failed on slow or busy machines;
the tests now check what the operations do, and this script measures how long they take.

1. Autosave of a 1000 x 1000 mask (one stroke, then ``flush``), median and max of ``--saves``
   saves. Budget: 50 ms on the GUI thread.
2. The project table with 2000 images: load + sort + two filters, and 100 single-row status
   updates (what autosaves do). Budgets: 1 s and 0.2 s.

Run with e.g. ``QT_QPA_PLATFORM=offscreen .venv/bin/python tests/benchmarks/bench_gui_ops.py``
(no OpenGL canvas is needed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conftest import run_job, write_rgb_png


def bench_mask_saves(root: Path, saves: int) -> dict:
    from cytoreview.gui.autosave import Autosave
    from cytoreview.gui.state import WorkbenchState
    from cytoreview.storage.project import Project
    from cytoreview.types import Provenance
    from cytoreview.workflows.importing import import_images

    rgb = np.random.default_rng(0).integers(0, 255, (1000, 1000, 3), dtype=np.uint8)
    write_rgb_png(root / "src" / "NILM" / "field.png", rgb)
    Project.init(root / "big", actor="bench").close()
    state = WorkbenchState("bench")
    project = state.open_project(root / "big")
    run_job(import_images(project, root / "src", actor="bench"))
    image_id = project.image("field").id
    autosave = Autosave(state, delay_ms=10_000)
    mask = np.zeros((1000, 1000), np.uint8)
    cv2.circle(mask, (500, 500), 300, 1, -1)
    cv2.circle(mask, (500, 500), 80, 2, -1)
    times = []
    for i in range(saves):
        mask[(i * 7) % 990 : (i * 7) % 990 + 5] = 1 + i % 2  # a stroke
        autosave.mark_dirty(image_id, mask, Provenance.MANUAL)
        autosave.flush()
        times.append(autosave.last_save_ms)
    state.close_project()
    return {
        "saves": saves,
        "median_ms": round(statistics.median(times), 1),
        "max_ms": round(max(times), 1),
        "budget_ms": 50,
    }


def bench_table(n: int) -> dict:
    from qtpy.QtCore import Qt

    from cytoreview.gui.image_table import ImageFilterProxy, ImageRow, ImageTableModel

    model, proxy = ImageTableModel(), ImageFilterProxy()
    proxy.setSourceModel(model)
    classes = ["NILM", "ASC-US", "LSIL", "HSIL"]
    rows = [ImageRow(i, f"img_{i:05d}", classes[i % 4], "none", i % 10 == 0) for i in range(n)]
    start = time.perf_counter()
    model.set_rows(rows)
    proxy.sort(0, Qt.SortOrder.DescendingOrder)
    proxy.set_filter(class_label="HSIL")
    proxy.set_filter(class_label=None, seeds_only=True)
    proxy.set_filter(seeds_only=False)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(0, n, max(1, n // 100)):
        model.set_status({i: "manual"})
    update_s = time.perf_counter() - start
    return {
        "images": n,
        "load_sort_filter_s": round(load_s, 3),
        "status_updates_100_s": round(update_s, 3),
        "budget_s": {"load": 1.0, "updates": 0.2},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--saves", type=int, default=20)
    parser.add_argument("--rows", type=int, default=2000)
    args = parser.parse_args()
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "mask_save_1000px": bench_mask_saves(Path(tmp), args.saves),
            "project_table": bench_table(args.rows),
        }
    del app
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
