"""Screenshots of the workbench on a project, one per dock, to look at as a pathologist would.

Opens the workbench on a project (by default the demo's, ``demo-output/project``), brings each
dock to the front with a realistic state (the Review dock on the most uncertain image with its
heatmap, the Annotate dock on an auto mask, the Teach dock with a question asked) and saves one
PNG of the window per dock. Needs a display: run under Xvfb, e.g.::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python tests/tools/shoot_workbench.py \
        --out resources/screenshots

The project is copied first, so nothing a screenshot session does (a review opened, a teach
session started) lands in it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: The docks shot, in order, with the file each goes to (the Project dock is in every shot).
SHOTS = {
    "annotate": "gui-annotate.png",
    "train": "gui-train.png",
    "classifier": "gui-classifier.png",
    "review": "gui-review.png",
    "export": "gui-export.png",
    "teach": "gui-teach.png",  # last: a teach session hides the other docks
}


def _settle(app: object, seconds: float) -> None:
    """Let the event loop run (background jobs, napari's redraws) for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", type=Path, default=REPO / "demo-output" / "project")
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    parser.add_argument("--docks", nargs="+", default=list(SHOTS), choices=list(SHOTS))
    parser.add_argument("--size", default="1600x1000", help="window size WxH")
    args = parser.parse_args()
    if not (args.project / "cytoreview.sqlite").exists():
        parser.error(f"{args.project}: not a project (run `make demo` first for the default)")

    import napari
    from qtpy.QtWidgets import QApplication

    from cytoreview.gui.app import build_workbench

    work = Path(tempfile.mkdtemp(prefix="shots-"))
    project = work / "project"
    shutil.copytree(args.project, project)
    args.out.mkdir(parents=True, exist_ok=True)
    width, height = (int(v) for v in args.size.split("x"))

    viewer = napari.Viewer(show=True)
    window = viewer.window._qt_window
    window.resize(width, height)
    wb = build_workbench(viewer, project, actor="screenshots")
    app = QApplication.instance()
    _settle(app, 2.0)
    for key in args.docks:
        dock = wb.docks[key]
        dock.raise_()
        panel = wb.panels.get(key)
        if key == "review" and panel is not None:
            panel.refresh()
            panel.open_row(0)  # the most uncertain image
            panel.heatmap_check.setChecked(True)  # off by default; Alt+M shows it
        elif key == "annotate":
            auto = [im for im in wb.state.project.images() if _mask_kind(wb, im.id) == "auto"]
            if auto:
                wb.state.open_image(auto[0].id)
        elif key == "teach" and panel is not None:
            panel.start("trainee")
        _settle(app, 3.0)
        path = args.out / SHOTS[key]
        if not window.grab().save(str(path)):
            print(f"could not write {path}", file=sys.stderr)
            return 1
        print(path)
    wb.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _mask_kind(wb: object, image_id: int) -> str | None:
    """The provenance of an image's current mask, or None without one."""
    versions = wb.state.project.mask_versions(image_id)  # type: ignore[attr-defined]
    return versions[-1].provenance.value if versions else None


if __name__ == "__main__":
    sys.exit(main())
