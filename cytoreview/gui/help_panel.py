"""The help dock: every shortcut of the workbench, and the system check (``cytoreview doctor``).

The shortcuts come from the shared tables; the system check runs the same checks as the command
line (:func:`cytoreview.workflows.doctor.run_doctor`) in the background and shows the same
report, read-only, so a person can copy it into a support request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qtpy.QtGui import QFontDatabase
from qtpy.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cytoreview.gui.help_texts import INTRO_STYLE, PANEL_HELP, TOOLTIPS
from cytoreview.gui.shortcuts import SHORTCUT_GROUPS, Shortcut
from cytoreview.gui.workers import JobRunner
from cytoreview.types import Progress
from cytoreview.workflows.doctor import DoctorReport, format_report, run_doctor


def help_rows() -> list[tuple[str, str, str]]:
    """(group, keys, what they do) for every shortcut, in the help's order."""
    rows = []
    for title, group in SHORTCUT_GROUPS:
        for shortcut in group:
            rows.append((title, " / ".join(shortcut.keys), shortcut.description))
    return rows


class HelpPanel(QWidget):
    """A table of all keyboard shortcuts (group, keys, action), and the system check.

    Parameters
    ----------
    extra
        More shortcuts to list under "Other".
    folder
        The project folder the system check looks at (None: the current folder), asked each
        time the check starts.
    """

    def __init__(
        self,
        extra: tuple[Shortcut, ...] = (),
        parent: QWidget | None = None,
        *,
        folder: Callable[[], Path | None] = lambda: None,
    ) -> None:
        super().__init__(parent)
        self._folder = folder
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
        layout.addWidget(self.table, stretch=3)

        self.check_button = QPushButton("System check")
        self.check_button.setToolTip(TOOLTIPS["system_check"])
        self.check_button.clicked.connect(self.start_check)
        layout.addWidget(self.check_button)
        self.report_view = QPlainTextEdit()
        self.report_view.setReadOnly(True)
        self.report_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.report_view.setPlaceholderText(TOOLTIPS["system_check"])
        layout.addWidget(self.report_view, stretch=2)
        #: The last finished report (None before the first check).
        self.report: DoctorReport | None = None
        self._runner = JobRunner("system check", self)
        self._runner.progress.connect(self._on_progress)
        self._runner.succeeded.connect(self._on_report)
        self._runner.failed.connect(self._on_failed)
        self._runner.finished.connect(lambda: self.check_button.setEnabled(True))

    @property
    def runner(self) -> JobRunner:
        """The background runner of the system check (tests wait on it)."""
        return self._runner

    def start_check(self) -> None:
        """Run the system check in the background (the button is off until it ends)."""
        if self._runner.is_running:
            return
        folder = self._folder()
        self.check_button.setEnabled(False)
        self.report_view.setPlainText("")
        self._runner.start(lambda token: run_doctor(folder, token))

    def _on_progress(self, event: Progress) -> None:
        if event.step < event.total:
            self.report_view.setPlainText(f"{event.message} ({event.step + 1}/{event.total})")

    def _on_report(self, report: DoctorReport) -> None:
        self.report = report
        self.report_view.setPlainText(format_report(report))

    def _on_failed(self, error: BaseException) -> None:
        self.report_view.setPlainText(f"The system check stopped: {error}")
