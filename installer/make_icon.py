"""Render resources/cytoreview.svg to cytoreview.png (256 x 256) and cytoreview.ico, offline.

Qt's own SVG renderer (PySide6's QtSvg, already a dependency) draws it: no download and no
extra tool. Pillow (already a dependency) packs the PNG into a Windows .ico (16-256 px), the
icon of the Start-menu shortcut that installer/offline/install.ps1 makes. Run after editing
the SVG and commit the three files:

    QT_QPA_PLATFORM=offscreen .venv/bin/python installer/make_icon.py
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # no display needed

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
SIZE = 256


def render(svg: Path, png: Path, size: int = SIZE) -> None:
    """Draw ``svg`` into a transparent ``size`` x ``size`` PNG at ``png``."""
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    if not image.save(str(png), "PNG"):
        raise SystemExit(f"{png}: could not be written")


def windows_icon(png: Path, ico: Path) -> None:
    """Pack ``png`` into a multi-size Windows icon at ``ico`` (16, 24, 32, 48, 64, 128, 256 px)."""
    from PIL import Image

    sizes = [(s, s) for s in (16, 24, 32, 48, 64, 128, 256)]
    with Image.open(png) as image:
        image.save(ico, format="ICO", sizes=sizes)


if __name__ == "__main__":
    app = QGuiApplication(sys.argv[:1])
    render(RESOURCES / "cytoreview.svg", RESOURCES / "cytoreview.png")
    windows_icon(RESOURCES / "cytoreview.png", RESOURCES / "cytoreview.ico")
    print(f"wrote {RESOURCES / 'cytoreview.png'} and {RESOURCES / 'cytoreview.ico'}")
