"""The keyboard-help dock: every shortcut of the workbench, from the shared tables."""

from __future__ import annotations

from qtpy.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cytoreview.gui.help_texts import INTRO_STYLE, PANEL_HELP
from cytoreview.gui.shortcuts import SHORTCUT_GROUPS, Shortcut


def help_rows() -> list[tuple[str, str, str]]:
    """(group, keys, what they do) for every shortcut, in the help's order."""
    rows = []
    for title, group in SHORTCUT_GROUPS:
        for shortcut in group:
            rows.append((title, " / ".join(shortcut.keys), shortcut.description))
    return rows


class HelpPanel(QWidget):
    """A table of all keyboard shortcuts (group, keys, action)."""

    def __init__(self, extra: tuple[Shortcut, ...] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        intro = QLabel(PANEL_HELP["help"])
        intro.setStyleSheet(INTRO_STYLE)
        layout.addWidget(intro)
        rows = help_rows() + [("Other", " / ".join(s.keys), s.description) for s in extra]
        self.table = QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(("Where", "Keys", "Does"))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        for r, values in enumerate(rows):
            for c, text in enumerate(values):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        layout.addWidget(self.table)
