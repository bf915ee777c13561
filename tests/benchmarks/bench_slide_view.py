"""Showing a whole slide in the workbench: time to open it and memory while panning and zooming.

Opens the workbench (napari, under Xvfb) on a new project, registers the slide, and times the
Slides dock's "Show slide" until napari has drawn it; then zooms to full resolution at a few
places across the slide and back out, letting napari load the tiles on screen each time.
Prints JSON: open time, the time each view took to settle, and the process's memory (VmRSS now,
VmHWM peak) before the slide and after the tour, against the size of level 0 decoded.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tests/benchmarks/bench_slide_view.py \\
        --slide /tmp/slides20k/20000-synthetic.ome.tif
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def _mem_mb() -> dict[str, float]:
    out = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            key = line.split(":")[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(line.split()[1]) / 1024, 1)
    return out


def _settle(app: object, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slide", type=Path, required=True, help="a slide file")
    parser.add_argument("--views", type=int, default=6, help="places visited at full resolution")
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from cytoreview.gui.app import build_workbench
    from cytoreview.storage.project import Project
    from cytoreview.storage.slide_store import SlideStore

    root = Path(tempfile.mkdtemp(prefix="cytoreview-view-")) / "p"
    project = Project.init(root, actor="bench")
    slide = SlideStore(project).register(args.slide, actor="bench").record
    project.close()
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    workbench = build_workbench(viewer, root, actor="bench")
    panel = workbench.panels["slides"]
    _settle(app, 1.0)
    before = _mem_mb()
    start = time.perf_counter()
    panel.show_slide(slide.name)
    shown = time.perf_counter() - start
    app.processEvents()
    drawn = time.perf_counter() - start
    views = []
    h, w = slide.height, slide.width
    for i in range(args.views):
        y, x = (i + 0.5) / args.views * h, ((i * 7 % args.views) + 0.5) / args.views * w
        camera = getattr(viewer, "scene", viewer).camera  # napari 0.9 moved it
        t0 = time.perf_counter()
        camera.center = (y, x)
        camera.zoom = 1.0  # one screen pixel per level-0 pixel: level 0 is read
        app.processEvents()  # napari loads the tiles on screen here, on the GUI thread
        redraw = time.perf_counter() - t0
        _settle(app, 1.0)
        views.append({"center": [round(y), round(x)], "redraw_s": round(redraw, 3),
                      "rss_mb": _mem_mb()["VmRSS"]})  # fmt: skip
    viewer.reset_view()
    _settle(app, 1.0)
    after = _mem_mb()
    print(json.dumps({
        "slide": str(args.slide), "size": [h, w], "levels": len(slide.levels),
        "show_s": round(shown, 3), "first_draw_s": round(drawn, 3), "views": views,
        "memory_before_mb": before, "memory_after_mb": after,
        "level0_decoded_mb": round(h * w * 3 / 2**20, 1),
    }, indent=2))  # fmt: skip
    workbench.close()
    viewer.close()


if __name__ == "__main__":
    main()
