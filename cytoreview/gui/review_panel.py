"""The review panel: the queue (most uncertain first), the model's call, accept / edit / skip.

The panel shows, for the open image, the model's class probabilities and binary call, the
reviewer's own call (stored beside the model's), the cells' measurements and a heatmap layer.
It calls :mod:`cytoreview.workflows.review` for every decision and refreshes after each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator
from typing import Any

from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cytoreview.errors import CytoReviewError
from cytoreview.gui.autosave import Autosave
from cytoreview.gui.heatmap_layer import COLORMAPS, DEFAULT_OPACITY, HeatmapOverlay
from cytoreview.gui.help_texts import INTRO_STYLE, PANEL_HELP, TOOLTIPS
from cytoreview.gui.review_widgets import CellTable, ProbabilityBars
from cytoreview.gui.state import WorkbenchState
from cytoreview.gui.workers import JobFactory, JobRunner
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows.class_labels import adopt_expert_call
from cytoreview.workflows.review import (
    ReviewItem,
    approve_mask,
    disagreements,
    record_call,
    review_queue,
    skip,
)
from cytoreview.workflows.review_data import ImageDetails, image_details

log = logging.getLogger(__name__)

QUEUE_COLUMNS = ("Image", "Priority", "Mask", "Model", "Expert", "Why")
ID_ROLE = Qt.ItemDataRole.UserRole


def _details_job(project: Any, image_id: int) -> JobFactory:
    """The worker's job: the details of one image (:func:`image_details`), measured."""

    def job(token: CancelToken) -> Generator[Progress, Any, ImageDetails | None]:
        yield Progress("details", 0, 1)
        if token.cancelled:
            return None
        return image_details(project, image_id)

    return job


class ReviewPanel(QWidget):
    """Work through the review queue: look, accept, edit or skip; record your own call.

    Signals
    -------
    details_shown(int)
        The details of this image id are on screen (read on a worker thread).
    """

    details_shown = Signal(int)

    def __init__(
        self,
        viewer: Any,
        state: WorkbenchState,
        autosave: Autosave,
        show_annotate: Callable[[], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.state = state
        self.autosave = autosave
        self.show_annotate = show_annotate or (lambda: None)
        self.heatmap = HeatmapOverlay(viewer, state, self)
        self.items: list[ReviewItem] = []
        self.current: ReviewItem | None = None
        self._details_timer = QTimer(self)  # details after the image shows: switching stays fast
        self._details_timer.setSingleShot(True)
        self._details_timer.setInterval(0)
        self._details_timer.timeout.connect(self._show_details)
        self._refresh_timer = QTimer(self)  # many mask saves in a row refresh once
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(300)
        self._refresh_timer.timeout.connect(self.refresh)
        #: The details shown (None: none yet), and the image whose details are wanted.
        self.details: ImageDetails | None = None
        self._details_wanted: int | None = None
        self._details_project: Any = None  # the project the running job reads
        self._details_again = False
        self._details_runner = JobRunner("review details", self)
        state.track_job(self._details_runner)
        self._details_runner.succeeded.connect(self._on_details)
        self._details_runner.failed.connect(self._on_details_failed)
        self._details_runner.finished.connect(self._after_details)
        self._build()
        state.project_changed.connect(lambda _: self.refresh())
        state.images_changed.connect(self.refresh)
        state.masks_changed.connect(lambda _: self._refresh_timer.start())
        state.image_opened.connect(self._on_image_opened)
        state.classes_changed.connect(lambda _: self.refresh())
        self._details_stale = False
        self.heatmap.status.connect(self.heatmap_status.setText)
        self.refresh()

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(4)
        intro = QLabel(PANEL_HELP["review"])
        intro.setWordWrap(True)
        intro.setStyleSheet(INTRO_STYLE)
        layout.addWidget(intro)
        row = QHBoxLayout()
        self.count_label = QLabel("")
        self.include_done = QCheckBox("show done")
        self.include_done.setToolTip(TOOLTIPS["review_show_done"])
        self.include_done.toggled.connect(lambda _: self.refresh())
        row.addWidget(self.count_label, 1)
        row.addWidget(self.include_done)
        layout.addLayout(row)
        self.queue = QTableWidget(0, len(QUEUE_COLUMNS))
        self.queue.setHorizontalHeaderLabels(QUEUE_COLUMNS)
        self.queue.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.queue.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.queue.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.queue.verticalHeader().setVisible(False)
        self.queue.horizontalHeader().setStretchLastSection(True)
        self.queue.setWordWrap(False)  # one line per image; the whole "why" on hover
        self.queue.setMinimumHeight(140)
        self.queue.setToolTip(TOOLTIPS["review_queue"])
        self.queue.cellClicked.connect(lambda r, _c: self.open_row(r))
        layout.addWidget(self.queue, 2)

        box = QGroupBox("Current image")
        grid = QVBoxLayout(box)
        self.title = QLabel("Pick an image of the queue")
        self.title.setWordWrap(True)
        self.title.setStyleSheet("font-weight: bold")
        grid.addWidget(self.title)
        self.bars = ProbabilityBars()
        grid.addWidget(self.bars)
        self.model_label = QLabel("")  # which model gave the probabilities, and when
        self.model_label.setWordWrap(True)
        self.model_label.setStyleSheet("color: gray")
        grid.addWidget(self.model_label)
        self.binary_label = QLabel("Binary call: —")
        grid.addWidget(self.binary_label)
        buttons = QHBoxLayout()
        for attr, text, slot, tip in (
            ("accept_button", "Accept (Alt+A)", self.accept, "review_accept"),
            ("edit_button", "Edit (Alt+E)", self.edit, "review_edit"),
            ("skip_button", "Skip (Alt+S)", self.skip, "review_skip"),
        ):
            button = QPushButton(text)
            button.setToolTip(TOOLTIPS[tip])
            button.clicked.connect(lambda _=False, s=slot: s())
            setattr(self, attr, button)
            buttons.addWidget(button)
        grid.addLayout(buttons)
        calls = QHBoxLayout()
        self.call_combo = QComboBox()
        self.call_combo.setToolTip(TOOLTIPS["review_call"])
        self.call_button = QPushButton("Record my call")
        self.call_button.clicked.connect(lambda: self.record_call())
        self.adopt_button = QPushButton("Make it the label")
        self.adopt_button.setToolTip(TOOLTIPS["review_adopt"])
        self.adopt_button.clicked.connect(lambda: self.adopt_call())
        self.expert_label = QLabel("")
        calls.addWidget(self.call_combo, 1)
        calls.addWidget(self.call_button)
        calls.addWidget(self.adopt_button)
        grid.addLayout(calls)
        grid.addWidget(self.expert_label)
        layout.addWidget(box)

        hm = QGroupBox("Heatmap (Grad-CAM++)")
        hm_grid = QGridLayout(hm)
        self.heatmap_check = QCheckBox("show (Alt+M)")
        self.heatmap_check.setToolTip(TOOLTIPS["heatmap_toggle"])
        self.heatmap_check.toggled.connect(self.heatmap.set_enabled)
        self.colormap_combo = QComboBox()
        self.colormap_combo.addItems(COLORMAPS)
        self.colormap_combo.currentTextChanged.connect(self.heatmap.set_colormap)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(DEFAULT_OPACITY * 100))
        self.opacity_slider.setToolTip(TOOLTIPS["heatmap_opacity"])
        self.opacity_slider.valueChanged.connect(lambda v: self.heatmap.set_opacity(v / 100))
        self.heatmap_status = QLabel("")
        self.heatmap_status.setWordWrap(True)
        hm_grid.addWidget(self.heatmap_check, 0, 0)
        hm_grid.addWidget(self.colormap_combo, 0, 1)
        hm_grid.addWidget(QLabel("opacity"), 1, 0)
        hm_grid.addWidget(self.opacity_slider, 1, 1)
        hm_grid.addWidget(self.heatmap_status, 2, 0, 1, 2)
        layout.addWidget(hm)

        layout.addWidget(QLabel("Cells of the current mask"))
        self.cells = CellTable()
        layout.addWidget(self.cells)
        layout.addWidget(QLabel("Disagreements (model vs expert, surest first)"))
        self.disagreement_list = QListWidget()
        self.disagreement_list.setMaximumHeight(90)
        self.disagreement_list.itemActivated.connect(
            lambda item: self.state.open_image(int(item.data(ID_ROLE)))
        )
        self.disagreement_list.itemClicked.connect(
            lambda item: self.state.open_image(int(item.data(ID_ROLE)))
        )
        layout.addWidget(self.disagreement_list)

    # -- queue ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Re-read the queue, the disagreements and the current item from the project."""
        project = self.state.project
        self.items = (
            review_queue(project, include_done=self.include_done.isChecked()) if project else []
        )
        self.queue.setRowCount(len(self.items))
        for r, item in enumerate(self.items):
            values = (
                item.name + (" (skipped)" if item.skipped else ""),
                f"{item.priority:.2f}",
                item.mask_provenance or "none",
                "—"
                if item.pred_class is None
                else f"{item.pred_class} {100 * (item.pred_probability or 0):.0f}%",
                item.expert_call or item.true_class or "—",
                "; ".join(item.reasons),
            )
            for c, text in enumerate(values):
                cell = QTableWidgetItem(text)
                cell.setData(ID_ROLE, item.image_id)
                if c == len(values) - 1:
                    cell.setToolTip(text)
                self.queue.setItem(r, c, cell)
        self.queue.resizeColumnsToContents()
        self.count_label.setText(f"{len(self.items)} image(s) to review")
        self.disagreement_list.clear()
        for d in disagreements(project) if project else []:
            entry = QListWidgetItem(
                f"{d.name}: model {d.model} ({100 * d.model_probability:.0f}%), "
                f"expert {d.expert} ({d.expert_source})"
            )
            entry.setData(ID_ROLE, d.image_id)
            self.disagreement_list.addItem(entry)
        if project is not None:
            classes = list(project.scheme.classes)
            self.bars.set_classes(classes)
            if [self.call_combo.itemText(i) for i in range(self.call_combo.count())] != classes:
                self.call_combo.clear()
                self.call_combo.addItems(classes)
        self._show_details()

    def queue_names(self) -> list[str]:
        """Image names in queue order (as shown)."""
        return [it.name for it in self.items]

    def open_row(self, row: int) -> None:
        """Open the queue's item at ``row``."""
        if 0 <= row < len(self.items):
            self.state.open_image(self.items[row].image_id)

    def open_next(self) -> int | None:
        """Open the first queue item other than the current image (after accept / skip)."""
        current = self.state.current_image_id
        for item in self.items:
            if item.image_id != current:
                self.state.open_image(item.image_id)
                return item.image_id
        return None

    # -- decisions -----------------------------------------------------------------------------
    def _target(self) -> int | None:
        if self.state.project is None or self.state.current_image_id is None:
            return None
        return self.state.current_image_id

    def accept(self) -> int | None:
        """Approve the current mask (a new ``approved`` version); open the next item."""
        image_id = self._target()
        if image_id is None:
            return None
        # The strokes just painted are what is approved: saved first, or nothing is approved.
        reason = self.autosave.unsaved_reason(image_id)
        if reason is not None:
            self.state.message.emit("error", f"cannot accept: the edits are not saved ({reason})")
            return None
        try:
            # The Annotate dock's Approve goes through the same function: same records.
            approval = approve_mask(
                self.state.require_project(), image_id, reviewer=self.state.actor
            )
        except CytoReviewError as exc:
            self.state.message.emit("error", f"cannot accept: {exc}")
            return None
        if approval.empty:
            self.state.message.emit("warning", "an empty mask was approved (no cell on it)")
        self.state.notify_masks_changed([image_id])
        self.refresh()
        self.open_next()
        return approval.version.id

    def edit(self) -> None:
        """Correct the mask in the Annotate tab (edits are saved as ``corrected``)."""
        image_id = self._target()
        if image_id is None:
            return
        self.show_annotate()
        if "mask" in self.viewer.layers:
            self.viewer.layers.selection.active = self.viewer.layers["mask"]

    def skip(self) -> None:
        """Send the current image to the end of the queue and open the next item."""
        image_id = self._target()
        if image_id is None:
            return
        skip(self.state.require_project(), image_id, reviewer=self.state.actor)
        self.refresh()
        self.open_next()

    def record_call(self, class_call: str | None = None) -> None:
        """Store the reviewer's own class (the combo's unless given) beside the model's."""
        image_id = self._target()
        if image_id is None:
            return
        call = class_call or self.call_combo.currentText()
        try:
            record_call(self.state.require_project(), image_id, call, reviewer=self.state.actor)
        except CytoReviewError as exc:
            self.state.message.emit("error", f"call not recorded: {exc}")
            return
        self.state.message.emit("info", f"your call {call} is recorded")
        self.refresh()

    def adopt_call(self, class_call: str | None = None) -> str | None:
        """Make the reviewer's call (the combo's unless given) the image's class label.

        :func:`~cytoreview.workflows.class_labels.adopt_expert_call` records the call first
        when it is not the newest one on record. Returns the image's class afterwards (None:
        refused).
        """
        image_id = self._target()
        if image_id is None:
            return None
        project = self.state.require_project()
        call = class_call or self.call_combo.currentText()
        try:
            change = adopt_expert_call(project, image_id, actor=self.state.actor, call=call)
        except CytoReviewError as exc:
            self.state.message.emit("error", f"label not changed: {exc}")
            return None
        if change.changed:
            self.state.message.emit("info", f"class of {change.line()} (the expert's call)")
            self.state.notify_classes_changed([image_id])
        else:
            self.state.message.emit("info", f"{change.name} is labelled {change.new} already")
            self.refresh()
        return change.new

    # -- the current image ---------------------------------------------------------------------
    def _on_image_opened(self, _image_id: object) -> None:
        # Measuring and reading predictions cost tens of ms on a large image: do it only when
        # the panel can be seen, so paging through images in Annotate stays fast.
        # A window that is not shown at all (scripts, tests) gets its details at once.
        if self.isVisible() or not self.window().isVisible():
            self._details_timer.start()
        else:
            self._details_stale = True

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        """Bring the details up to date when the panel comes into view."""
        super().showEvent(event)
        if self._details_stale:
            self._details_stale = False
            self._details_timer.start()

    def _show_details(self) -> None:
        """Ask for the open image's details; they are shown when the worker has them."""
        project, image_id = self.state.project, self.state.current_image_id
        self._select_row(image_id)
        if project is None or image_id is None:
            self._details_wanted = None
            self.current = self.details = None
            self.title.setText("Pick an image of the queue")
            self.bars.show_probabilities({}, None)
            self.model_label.setText("")
            self.cells.show_measurements(None)
            return
        self._details_wanted = image_id
        if self.heatmap.enabled:
            self.heatmap.request(image_id)
        if self._details_runner.is_running:
            self._details_again = True  # asked again when the running job ends
            return
        # Reading predictions and measuring the cells cost tens of ms on a large image: on the
        # worker thread, with the workflow's one function (the GUI thread only fills widgets).
        self._details_project = project
        self._details_runner.start(_details_job(project, image_id))

    def _on_details(self, details: object) -> None:
        """Fill the widgets with an image's details (GUI thread)."""
        if (
            not isinstance(details, ImageDetails)
            or details.image_id != self._details_wanted
            or self._details_project is not self.state.project
        ):
            return  # the person moved on; the job for the image wanted now follows
        self.details = details
        self.current = next((it for it in self.items if it.image_id == details.image_id), None)
        pred = details.prediction
        self.bars.show_probabilities(
            {} if pred is None else pred.probabilities, None if pred is None else pred.pred_class
        )
        model = "no prediction yet" if pred is None else f"model: {pred.pred_class}"
        self.model_label.setText(details.prediction_source())
        reasons = "" if self.current is None else "; ".join(self.current.reasons)
        self.title.setText(f"{details.name}: {model}" + (f" ({reasons})" if reasons else ""))
        binary = details.binary
        if binary is None:
            self.binary_label.setText("Binary call: —")
        else:
            p = details.binary_probability or 0.0
            self.binary_label.setText(f"Binary call: {binary.pred_class} ({100 * p:.0f}%)")
        call = details.review
        label = details.class_label or "none"
        mine = "none yet" if call is None else f"{call.class_call} by {call.reviewer}"
        self.expert_label.setText(f"Expert call: {mine}; class label: {label}")
        if call is not None and call.class_call:
            self.call_combo.setCurrentText(call.class_call)
        elif pred is not None:
            self.call_combo.setCurrentText(pred.pred_class)
        if details.measure_problem is not None:
            log.warning("cannot measure %s", details.measure_problem)
        self.cells.show_measurements(details.measurements)
        if details.heatmap_note is not None:  # e.g. a classifier of hand-crafted features
            self.heatmap_status.setText(details.heatmap_note)
        self.details_shown.emit(details.image_id)

    def _on_details_failed(self, error: BaseException) -> None:
        log.warning("cannot show the details of image %s: %s", self._details_wanted, error)

    def _after_details(self) -> None:
        # Asked again while a job ran (another image, or new predictions or calls of this one):
        # the details shown may be stale, so they are read once more.
        if self._details_again:
            self._details_again = False
            self._show_details()

    def _select_row(self, image_id: int | None) -> None:
        for r, item in enumerate(self.items):
            if item.image_id == image_id:
                self.queue.blockSignals(True)
                self.queue.selectRow(r)
                self.queue.blockSignals(False)
                return
        self.queue.clearSelection()

    def toggle_heatmap(self) -> None:
        """Show or hide the heatmap layer (the keyboard shortcut)."""
        self.heatmap_check.setChecked(not self.heatmap_check.isChecked())
