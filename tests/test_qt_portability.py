"""The Qt code runs on whichever binding napari has (PySide6 or PyQt6), through qtpy.

As a napari plugin CytoReview uses the binding already installed. Two things broke or would
break under PyQt6: importing a binding directly, and ``QTimer.singleShot(msec, context, slot)``
(PySide6 only; the whole GUI suite failed at start-up under PyQt6 until it became
:func:`cytoreview.gui.throttle.call_soon`). The GUI suite itself was run under PyQt6 by hand.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cytoreview"
BINDINGS = {"PySide6", "PySide2", "PyQt6", "PyQt5"}


@cache
def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (str(path.relative_to(PACKAGE.parent)), ast.parse(path.read_text(encoding="utf-8")))
        for path in sorted(PACKAGE.rglob("*.py"))
    ]


def test_qt_comes_through_qtpy_only() -> None:
    found = []
    for name, tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            found += [f"{name}:{node.lineno} imports {r}" for r in roots if r in BINDINGS]
    assert not found, found


def test_no_single_shot_with_a_context_object() -> None:
    found = []
    for name, tree in _modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "singleShot"
                and len(node.args) == 3
            ):
                found.append(f"{name}:{node.lineno}")
    assert not found, f"QTimer.singleShot(msec, context, slot) is PySide-only: {found}"
