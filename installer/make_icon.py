"""Render resources/cytoreview.svg to resources/cytoreview.png (256 x 256), offline.

Qt's own SVG renderer (PySide6's QtSvg, already a dependency) draws it: no download and no
extra tool. Run after editing the SVG and commit both files:

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


if __name__ == "__main__":
    app = QGuiApplication(sys.argv[:1])
    render(RESOURCES / "cytoreview.svg", RESOURCES / "cytoreview.png")
    print(f"wrote {RESOURCES / 'cytoreview.png'}")
