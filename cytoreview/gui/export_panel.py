"""The Export dock: masks, the predictions table, the HTML report, scores, pixel size, audit.

What the command line's ``export``, ``report``, ``evaluate-cls``, ``evaluate-seg``,
``pixel-size`` and ``audit`` do, from the window: the long ones run in the background
(progress, Stop) so the window never freezes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt, QUrl, Signal
from qtpy.QtGui import QDesktopServices, QFontDatabase
from qtpy.QtWidgets import (
    QDialog,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cytoreview.defaults import PIXEL_SIZE_UM_RANGE
from cytoreview.errors import CytoReviewError
from cytoreview.gui.progress_widgets import SmoothProgressBar, StatusLabel
from cytoreview.gui.state import WorkbenchState
from cytoreview.gui.workers import JobRunner
from cytoreview.types import Progress
from cytoreview.workflows.evaluate_cls import ClsEvaluation, evaluate_classification
from cytoreview.workflows.export import ExportReport, PredictionsExport, export_masks
from cytoreview.workflows.export import export_predictions as predictions_job
from cytoreview.workflows.report import ReportResult, write_report
from cytoreview.workflows.segmentation import SegEvaluation, evaluate_segmentation

log = logging.getLogger(__name__)

_HELP = (
    "Write the current masks as label PNGs, the predictions with the cell measurements as a "
    "CSV table, or the HTML report (one self-contained page). Scores compare the classifier's "
    "calls with the test split or a CSV of expert classes, and the masks with a folder of "
    "true masks."
)
#: How many audit entries the log window shows (newest first; the CLI shows them all).
AUDIT_LINES = 500


class ExportPanel(QWidget):
    """Exports, report, classification scores and the pixel size of the open project."""

    #: Emitted with the path of every file or folder written.
    written = Signal(str)

    def __init__(self, state: WorkbenchState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.runner = JobRunner("export", self)
        state.track_job(self.runner)
        self.last_output: Path | None = None
        self.last_job: str | None = None  # "file" (something written) or "scores"
        self._build()
        self.runner.progress.connect(self._on_progress)
        self.runner.succeeded.connect(self._on_succeeded)
        self.runner.failed.connect(self._on_failed)
        self.runner.finished.connect(self._update_buttons)
        self.runner.started.connect(self._update_buttons)
        state.project_changed.connect(lambda _: self._on_project())
        self._on_project()

    # -- layout ----------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        intro = QLabel(_HELP)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        files = QGroupBox("Write")
        grid = QGridLayout(files)
        self.masks_button = QPushButton("Masks…")
        self.masks_button.setToolTip("Every current mask as <image>.png (0 background, "
                                     "1 cytoplasm, 2 nucleus) into a folder")  # fmt: skip
        self.csv_button = QPushButton("Predictions CSV…")
        self.csv_button.setToolTip("One row per image: class probabilities, the needs-review "
                                   "call and the cell measurements")  # fmt: skip
        self.report_button = QPushButton("HTML report…")
        self.report_button.setToolTip("Metrics, curves, confusion matrices, a gallery with mask "
                                      "and heatmap overlays, the measurements")  # fmt: skip
        self.open_button = QPushButton("Open last")
        self.open_button.setToolTip("Open the last written report or folder")
        self.masks_button.clicked.connect(lambda: self._ask_folder(self.export_masks))
        self.csv_button.clicked.connect(self._ask_csv)
        self.report_button.clicked.connect(lambda: self._ask_folder(self.write_report))
        self.open_button.clicked.connect(self._open_last)
        for i, button in enumerate(
            (self.masks_button, self.csv_button, self.report_button, self.open_button)
        ):
            grid.addWidget(button, i // 2, i % 2)
        layout.addWidget(files)
        row = QHBoxLayout()
        self.progress = SmoothProgressBar()
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.runner.cancel)
        row.addWidget(self.progress, 1)
        row.addWidget(self.stop_button)
        layout.addLayout(row)
        scores = QGroupBox("Classifier scores")
        box = QVBoxLayout(scores)
        buttons = QHBoxLayout()
        self.score_button = QPushButton("Score on the test split")
        self.score_csv_button = QPushButton("Score against a CSV…")
        self.score_button.clicked.connect(lambda: self.evaluate(None))
        self.score_csv_button.clicked.connect(self._ask_truth)
        buttons.addWidget(self.score_button)
        buttons.addWidget(self.score_csv_button)
        box.addLayout(buttons)
        self.scores_label = QLabel("")
        self.scores_label.setWordWrap(True)
        box.addWidget(self.scores_label)
        layout.addWidget(scores)
        mask_scores = QGroupBox("Mask scores")
        box = QVBoxLayout(mask_scores)
        self.seg_score_button = QPushButton("Score the masks against a folder of true masks…")
        self.seg_score_button.setToolTip(
            "Dice, IoU, precision and recall of cytoplasm, nucleus and whole cell, for all "
            "current masks and per kind (manual, auto, corrected, approved); true masks are "
            "label PNGs named like the images"
        )
        self.seg_score_button.clicked.connect(self._ask_truth_masks)
        box.addWidget(self.seg_score_button)
        self.mask_scores_label = QLabel("")
        self.mask_scores_label.setWordWrap(True)
        self.mask_scores_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.addWidget(self.mask_scores_label)
        layout.addWidget(mask_scores)
        size = QGroupBox("Pixel size (for measurements in µm)")
        srow = QHBoxLayout(size)
        self.pixel_size = QDoubleSpinBox()
        # 0 shows "unknown" (clears it); the top is the one rule's, so no implausible size can
        # be typed (the bottom is checked when it is set: the box cannot skip 0..0.01).
        self.pixel_size.setRange(0.0, PIXEL_SIZE_UM_RANGE[1])
        self.pixel_size.setDecimals(4)
        self.pixel_size.setSingleStep(0.05)
        self.pixel_size.setSuffix(" µm/px")
        self.pixel_size.setSpecialValueText("unknown")
        self.pixel_size.setToolTip("Project default; TIFFs with a microscopy resolution tag keep "
                                   "their own. 0 = unknown (measurements in pixels).")  # fmt: skip
        self.pixel_button = QPushButton("Set")
        self.pixel_button.clicked.connect(lambda: self.set_pixel_size(self.pixel_size.value()))
        srow.addWidget(self.pixel_size, 1)
        srow.addWidget(self.pixel_button)
        layout.addWidget(size)
        self.audit_button = QPushButton("Audit log…")
        self.audit_button.setToolTip("Who changed what, when: every import, mask, model, "
                                     "prediction and review of this project")  # fmt: skip
        self.audit_button.clicked.connect(self.show_audit)
        layout.addWidget(self.audit_button)
        self.status = StatusLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addStretch(1)

    # -- actions (also called by tests) ----------------------------------------------------------
    def export_masks(self, folder: str | Path) -> bool:
        """Write every current mask into ``folder`` in the background."""
        return self._start(lambda p, token: export_masks(p, folder, cancel=token), Path(folder))

    def export_predictions(self, path: str | Path) -> bool:
        """Write the predictions and measurements table to ``path`` in the background."""
        return self._start(lambda p, token: predictions_job(p, path, cancel=token), Path(path))

    def write_report(self, folder: str | Path) -> bool:
        """Write the HTML report into ``folder`` in the background."""
        target = Path(folder) / "report.html"
        return self._start(lambda p, token: write_report(p, folder, cancel=token), target)

    def evaluate(self, truth_csv: str | Path | None) -> ClsEvaluation | None:
        """Score the stored predictions (quick: no model runs) and show the result."""
        project = self.state.project
        if project is None:
            return None
        try:
            result = evaluate_classification(project, truth_csv)
        except (CytoReviewError, OSError) as exc:
            self.scores_label.setText(f"Not scored: {exc}")
            return None
        self.scores_label.setText(_describe(result))
        return result

    def evaluate_masks(self, truth_dir: str | Path) -> bool:
        """Score the current masks against the label images in ``truth_dir`` (background)."""
        started = self._start(
            lambda p, token: evaluate_segmentation(p, truth_dir, cancel=token), None
        )
        if started:
            self.mask_scores_label.setText("scoring…")
        return started

    def audit_text(self) -> str:
        """The newest audit entries, one line each, newest first."""
        project = self.state.project
        if project is None:
            return ""
        entries = project.audit_entries(limit=AUDIT_LINES)
        return "\n".join(entry.line() for entry in reversed(entries))

    def show_audit(self) -> QDialog | None:
        """Open a window with the audit log (read-only, selectable text)."""
        if self.state.project is None:
            return None
        dialog = QDialog(self)
        dialog.setWindowTitle(f"Audit log: {self.state.project.root.name}")
        dialog.resize(900, 500)
        view = QPlainTextEdit(self.audit_text() or "(empty)")
        view.setReadOnly(True)
        view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        QVBoxLayout(dialog).addWidget(view)
        dialog.show()
        return dialog

    def set_pixel_size(self, value: float) -> None:
        """Set the project's default micrometres per pixel (0 clears it)."""
        project = self.state.project
        if project is None:
            return
        try:
            project.set_pixel_size(value or None, actor=self.state.actor)
        except CytoReviewError as exc:
            self.status.setText(str(exc))
            return
        self.status.setText(f"Pixel size set to {value:g} µm/px" if value else "Pixel size cleared")

    # -- plumbing --------------------------------------------------------------------------------
    def _start(self, job: Any, target: Path | None) -> bool:
        project = self.state.project
        if project is None or self.runner.is_running:
            return False
        # Scores write nothing: "Open last" keeps the last file written.
        self.last_job = "scores" if target is None else "file"
        if target is not None:
            self.last_output = target
        self.progress.setValue(0)
        self.status.setText("working…")
        self.runner.start(lambda token: job(project, token))
        return True

    def _on_progress(self, event: Progress) -> None:
        self.progress.setMaximum(max(event.total, 1))
        self.progress.setValue(min(event.step, max(event.total, 1)))

    def _on_succeeded(self, result: object) -> None:
        where = self.last_output
        if isinstance(result, ReportResult):
            text = f"Report written: {where} ({', '.join(result.sections)})"
        elif isinstance(result, PredictionsExport):
            text = (f"{result.rows} rows written to {where}" if not result.cancelled
                    else "Stopped: nothing written")  # fmt: skip
        elif isinstance(result, ExportReport):
            text = f"{result.written} mask(s) written to {where}"
        elif isinstance(result, SegEvaluation):
            self.mask_scores_label.setText(_describe_masks(result))
            text = "masks scored"
        else:
            text = "done"
        self.status.setText(text)
        self.progress.setValue(self.progress.maximum())
        if where is not None:
            self.written.emit(str(where))

    def _on_failed(self, error: object) -> None:
        self.status.setText(f"Failed: {error}")
        if self.last_job == "scores":
            self.mask_scores_label.setText(f"Not scored: {error}")

    def _on_project(self) -> None:
        project = self.state.project
        if project is not None:
            value = project.catalog.get_meta("pixel_size_um")
            self.pixel_size.setValue(float(value) if value else 0.0)
        self._update_buttons()

    def _update_buttons(self) -> None:
        ready = self.state.project is not None and not self.runner.is_running
        for button in (self.masks_button, self.csv_button, self.report_button,
                       self.score_button, self.score_csv_button, self.pixel_button,
                       self.seg_score_button):  # fmt: skip
            button.setEnabled(ready)
        self.audit_button.setEnabled(self.state.project is not None)
        self.stop_button.setEnabled(self.runner.is_running)
        self.open_button.setEnabled(self.last_output is not None and not self.runner.is_running)

    def _ask_folder(self, action: Any) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a folder")
        if folder:
            action(folder)

    def _ask_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Predictions table", "predictions.csv",
                                              "CSV (*.csv)")  # fmt: skip
        if path:
            self.export_predictions(path)

    def _ask_truth(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Expert classes", "", "CSV (*.csv)")
        if path:
            self.evaluate(path)

    def _ask_truth_masks(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of true masks (0/1/2 PNGs)")
        if folder:
            self.evaluate_masks(folder)

    def _open_last(self) -> None:
        if self.last_output is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.last_output)))


def _describe(result: ClsEvaluation) -> str:
    lines = [f"{result.n_matched} image(s) scored against {result.source}."]
    m = result.multiclass
    if m is not None:
        lines.append(f"Accuracy {m.accuracy:.3f}, macro F1 {m.macro_f1:.3f}.")
    b = result.binary
    if b is not None:
        lines.append(
            f"Needs review: F1 {b.f1:.3f}, sensitivity {b.sensitivity:.3f}, specificity "
            f"{b.specificity:.3f}."
        )
    if result.on_training_images:
        lines.append(f"{result.on_training_images} of them were used in training: optimistic.")
    return " ".join(lines)


def _describe_masks(result: SegEvaluation) -> str:
    """Mean Dice / IoU per class, for all masks and per provenance, plus what was not scored."""
    lines = []
    for name, report in [("all masks", result.report), *result.by_provenance.items()]:
        scores = ", ".join(
            f"{cls} Dice {report.mean[cls].dice:.3f} (IoU {report.mean[cls].iou:.3f})"
            for cls in ("cytoplasm", "nucleus", "cell")
        )
        lines.append(f"{name} ({len(report.per_image)}): {scores}")
    if result.missing_truth:
        lines.append(f"{len(result.missing_truth)} image(s) without a true mask, not scored")
    lines += [f"warning: {problem}" for problem in result.problems[:5]]
    return "\n".join(lines)
