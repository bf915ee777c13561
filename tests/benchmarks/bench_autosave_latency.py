"""Does autosave make painting stutter? Stroke time and event-loop stalls while saves run.

The workbench paints strokes (``--strokes`` of them, one every ``--interval`` seconds, each a line
of brush dabs as napari's brush makes them) on a ``--size`` x ``--size`` image with the product's
autosave timings, so that the maximum wait saves while strokes keep coming. Measured, for saves
written on the worker thread (the product) and, for comparison, on the GUI thread:

* the time of one stroke (napari's paint and the workbench's paint-event handler, which only
  schedules the save), split by whether a save was being written at that moment;
* the event loop's stalls: the lateness of a 5 ms timer (what a person sees as stutter);
* how long the saves took.

One JSON object. Run e.g. ``nice -n 19 xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python
tests/benchmarks/bench_autosave_latency.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def pct(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 2)

    return {"n": len(values), "median": round(statistics.median(values), 2), "p95": pct(0.95),
            "p99": pct(0.99), "max": round(ordered[-1], 2)}  # fmt: skip


def measure(project_root: Path, background: bool, delay_ms: int, args: argparse.Namespace) -> dict:
    import napari
    from qtpy.QtCore import QElapsedTimer, QTimer
    from qtpy.QtWidgets import QApplication

    from cytoreview.gui.annotate_panel import MASK_LAYER
    from cytoreview.gui.app import build_workbench

    viewer = napari.Viewer(show=True)
    wb = build_workbench(viewer, project_root, actor="bench", autosave_delay_ms=delay_ms)
    wb.autosave.background = background
    labels = viewer.layers[MASK_LAYER]
    labels.brush_size = 20
    save_ms: list[float] = []
    wb.autosave.saved.connect(lambda *_: save_ms.append(wb.autosave.last_save_ms))
    strokes: list[tuple[float, bool]] = []
    gaps: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = {"t": clock.nsecsElapsed()}

    def tick() -> None:
        now = clock.nsecsElapsed()
        gaps.append((now - last["t"]) / 1e6 - 5.0)  # lateness against the 5 ms interval
        last["t"] = now

    def paint(i: int) -> None:
        saving = wb.autosave._inflight is not None  # a save being written on the worker
        row = 100 + (i * 37) % (args.size - 200)
        start = time.perf_counter()
        labels.selected_label = 1 + i % 2
        with labels.block_history():
            for col in range(100, min(args.size - 100, 100 + 20 * 12), 12):
                labels.paint((row, col), 1 + i % 2)
        strokes.append(((time.perf_counter() - start) * 1000, saving))

    monitor = QTimer()
    monitor.setInterval(5)
    monitor.timeout.connect(tick)
    monitor.start()
    app = QApplication.instance()
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:  # settle: the window is drawn, napari warmed up
        app.processEvents()
    paint(0)
    strokes.clear()
    gaps.clear()
    for i in range(1, args.strokes + 1):
        due = time.perf_counter() + args.interval
        paint(i)
        while time.perf_counter() < due:
            app.processEvents()
            time.sleep(0.001)
    monitor.stop()
    wb.autosave.flush()
    image_id = wb.annotate_panel.image_id
    versions = wb.state.project.mask_versions(image_id)
    mask_bytes = sum((project_root / v.path).stat().st_size for v in versions)
    result = {
        "delay_ms": delay_ms,
        "saves": len(save_ms),
        # The history a person's painting leaves: one version per save, each a whole PNG.
        "versions": len(versions),
        "mask_kib_per_stroke": round(mask_bytes / 1024 / max(len(strokes), 1), 1),
        "save_ms": _stats(save_ms),
        "stroke_ms_while_saving": _stats([ms for ms, s in strokes if s]),
        "stroke_ms_not_saving": _stats([ms for ms, s in strokes if not s]),
        "event_loop_lateness_ms": _stats(gaps),
    }
    wb.close()
    viewer.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048, help="image side in pixels")
    parser.add_argument("--strokes", type=int, default=60)
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between strokes")
    parser.add_argument("--delays", type=int, nargs="+", default=None,
                        help="autosave pauses (ms) to compare on the worker thread "
                             "(default: the product's)")  # fmt: skip
    args = parser.parse_args()

    from cytoreview.gui.autosave import DEFAULT_DELAY_MS, DEFAULT_MAX_WAIT_MS
    from cytoreview.storage.project import Project
    from cytoreview.workflows.importing import import_images
    from tests.conftest import run_job, write_rgb_png

    root = Path(tempfile.mkdtemp(prefix="autosave-latency-"))
    rgb = np.random.default_rng(0).integers(0, 255, (args.size, args.size, 3), dtype=np.uint8)
    write_rgb_png(root / "src" / "NILM" / "field.png", rgb)
    out = {"size": args.size, "strokes": args.strokes, "interval_s": args.interval,
           "delay_ms": DEFAULT_DELAY_MS, "max_wait_ms": DEFAULT_MAX_WAIT_MS}  # fmt: skip
    modes = [(f"worker_thread_delay_{d}", True, d) for d in args.delays or [DEFAULT_DELAY_MS]]
    modes.append(("gui_thread", False, DEFAULT_DELAY_MS))
    for mode, background, delay in modes:
        with Project.init(root / mode, actor="bench") as project:
            run_job(import_images(project, root / "src", actor="bench"))
        out[mode] = measure(root / mode, background, delay, args)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
