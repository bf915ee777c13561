"""Screenshots of a slide in the workbench: the Slides dock, the slide, its segmentation.

Opens the workbench on a project that has a registered slide (segmented or not), shows the
slide from the Slides dock with its label pyramid over it when there is one, and saves the
window twice: the whole slide, and zoomed to full resolution on a region with cells. Needs a
display::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tests/tools/shoot_slide.py \
        --project PROJECT --out screenshots
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _settle(app: object, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--slide", help="slide name (default: the first)")
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--size", default="1600x1000", help="window size WxH")
    args = parser.parse_args()

    import napari
    from qtpy.QtWidgets import QApplication

    from cytoreview.gui.app import build_workbench

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    workbench = build_workbench(viewer, args.project, actor="screenshots")
    width, height = (int(v) for v in args.size.split("x"))
    workbench.window.resize(width, height)
    panel = workbench.panels["slides"]
    workbench.docks["slides"].raise_()
    name = args.slide or panel.selected_name()
    if name is None:
        print(f"{args.project}: no slide registered", file=sys.stderr)
        return 1
    panel.show_slide(name)
    panel.show_segmentation()
    _settle(app, 2.0)
    args.out.mkdir(parents=True, exist_ok=True)
    workbench.window.grab().save(str(args.out / "gui-slide-overview.png"))
    camera = getattr(viewer, "scene", viewer).camera
    view = panel.views[name]
    h, w = view.levels[0].shape[:2]
    camera.center = (h * 0.3, w * 0.3)
    camera.zoom = 1.0
    _settle(app, 2.0)
    workbench.window.grab().save(str(args.out / "gui-slide-zoomed.png"))
    print(f"wrote {args.out / 'gui-slide-overview.png'} and gui-slide-zoomed.png")
    workbench.close()
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
