"""The train panel: train the U-Net on the painted masks, watch it learn, auto-segment the rest.

Both jobs run through one :class:`JobRunner` (one at a time); the panel only reacts to their
:class:`Progress` events, on the GUI thread, so the window stays responsive during training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from cytoreview.choices import DEFAULT_ENCODER, TTA_CHOICES
from cytoreview.defaults import RUN, SEG
from cytoreview.gui.help_texts import INTRO_STYLE, PANEL_HELP, TOOLTIPS
from cytoreview.gui.job_panel import JobPanel, form_grid
from cytoreview.gui.live_plot import TrainingPlot
from cytoreview.gui.progress_widgets import StatusLabel, compact
from cytoreview.gui.state import WorkbenchState
from cytoreview.gui.workers import format_duration
from cytoreview.models.devices import DEVICES
from cytoreview.models.segmenters import SEG_ENCODERS, SIZE_MULTIPLE
from cytoreview.storage.model_store import ModelStore
from cytoreview.types import Progress
from cytoreview.workflows.segmentation import (
    KIND,
    SegmentReport,
    SegTrainReport,
    SegTrainRequest,
    segment_project,
    train_segmentation,
)

log = logging.getLogger(__name__)


class SegmentationPlot(TrainingPlot):
    """Loss and per-class IoU per epoch."""

    @property
    def iou_axes(self) -> Any:
        """The IoU axes."""
        return self.score_axes


class TrainPanel(JobPanel):
    """Segmentation training and auto-segmentation, with progress, ETA and live curves."""

    def __init__(
        self,
        state: WorkbenchState,
        selection: Callable[[], list[int]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(state, "segmentation", ("train", "segment"), parent)
        #: The image ids selected in the project table (for "only the selected images").
        self.selection = selection or (lambda: [])
        self.last_training: SegTrainReport | None = None
        self.last_segmentation: SegmentReport | None = None
        self._build()
        self.runner.succeeded.connect(self._on_succeeded)
        self.runner.failed.connect(self._on_failed)
        self.update_buttons()

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(4)
        intro = QLabel(PANEL_HELP["train"])
        intro.setWordWrap(True)
        intro.setStyleSheet(INTRO_STYLE)
        layout.addWidget(intro)
        self.encoder = compact(QComboBox())
        self.encoder.addItems(SEG_ENCODERS)
        # Every default from cytoreview.defaults, as the CLI's flags: the two cannot drift.
        self.encoder.setCurrentText(DEFAULT_ENCODER)
        self.epochs = compact(QSpinBox())
        self.epochs.setRange(1, 2000)
        self.epochs.setValue(SEG.epochs)
        self.time_budget = compact(QDoubleSpinBox())
        self.time_budget.setRange(0, 24 * 60)
        self.time_budget.setDecimals(1)
        self.time_budget.setSuffix(" min")
        self.time_budget.setSpecialValueText("no limit")
        self.device = compact(QComboBox())
        self.device.addItems(DEVICES)
        self.device.setCurrentText(RUN.device)
        self.input_size = compact(QSpinBox())
        self.input_size.setRange(0, 2048)
        self.input_size.setSingleStep(SIZE_MULTIPLE)
        self.input_size.setSpecialValueText("auto")
        self.input_size.setSuffix(" px")
        form = form_grid(
            (
                ("Encoder", self.encoder, "encoder"),
                ("Device", self.device, "device"),
                ("Epochs", self.epochs, "epochs"),
                ("Budget", self.time_budget, "time_budget"),
                ("Input", self.input_size, "input_size"),
            )
        )
        layout.addLayout(form)
        row = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.start_button.setToolTip(TOOLTIPS["start_training"])
        self.start_button.clicked.connect(lambda: self.start_training())
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip(TOOLTIPS["stop"])
        self.stop_button.clicked.connect(self.stop)
        self.segment_button = QPushButton("Auto-segment now")
        self.segment_button.setToolTip(TOOLTIPS["auto_segment"])
        self.segment_button.clicked.connect(lambda: self.start_segmentation())
        for button in (self.start_button, self.stop_button, self.segment_button):
            row.addWidget(button)
        layout.addLayout(row)
        row = QHBoxLayout()  # how Auto-segment runs (details in the tooltips)
        self.selected_only = QCheckBox("Selected images only")
        self.selected_only.setToolTip(TOOLTIPS["selected_only"])
        # auto / on / off: "auto" is the recipe's rule (crops yes, fields no), decided by the
        # workflow from the model, not here.
        self.tta_choice = compact(QComboBox())
        self.tta_choice.addItems(list(TTA_CHOICES))
        self.tta_choice.setToolTip(TOOLTIPS["tta"])
        row.addWidget(self.selected_only)
        row.addWidget(QLabel("Average 8 views:"))
        row.addWidget(self.tta_choice)
        row.addStretch(1)
        layout.addLayout(row)
        # One line each: side by side, the ETA at the end of the line was clipped.
        self.device_label = StatusLabel("Device: —")
        layout.addWidget(self.device_label)
        self.add_job_widgets(layout, SegmentationPlot())
        layout.addStretch(1)

    def update_buttons(self) -> None:
        """Start needs a project, auto-segment a model; nothing starts while a job runs."""
        project = self.state.project
        running = self.runner.is_running
        self.start_button.setEnabled(project is not None and not running)
        self.stop_button.setEnabled(running)
        has_model = project is not None and ModelStore(project).current_model(KIND) is not None
        self.segment_button.setEnabled(has_model and not running)

    # -- jobs ----------------------------------------------------------------------------------
    def request(self) -> SegTrainRequest:
        """The training request the form describes."""
        budget = self.time_budget.value()
        return SegTrainRequest(
            settings={"encoder": self.encoder.currentText()},
            epochs=self.epochs.value(),
            time_budget_min=budget if budget > 0 else None,
            device=self.device.currentText(),
            input_size=self.input_size.value() or None,
        )

    def start_training(self, request: SegTrainRequest | None = None) -> bool:
        """Train in the background (the form's settings unless ``request`` is given)."""
        project = self.state.project
        if project is None or self.runner.is_running:
            return False
        request = request or self.request()
        actor = self.state.actor
        self.log_view.appendPlainText(
            f"training a {request.arch} ({dict(request.settings)}, up to {request.epochs} epochs)…"
        )
        self.device_label.setText(f"Device: {request.device} (starting…)")
        self.begin_job(
            "train",
            lambda token: train_segmentation(project, request, actor=actor, cancel=token),
            new_curves=True,
            budget_s=request.time_budget_min * 60 if request.time_budget_min else None,
        )
        return True

    def start_segmentation(
        self,
        device: str | None = None,
        tta: bool | None = None,
        image_ids: list[int] | None = None,
    ) -> bool:
        """Auto-segment the images without a person's mask, with the newest model.

        Parameters
        ----------
        device, tta
            Where to run and whether to average the 8 views; default: the panel's settings.
        image_ids
            Only these images; default: the table's selection if "only the selected images"
            is checked, else every image. Images with a person's mask are always left alone.
        """
        project = self.state.project
        if project is None or self.runner.is_running:
            return False
        actor, device = self.state.actor, device or self.device.currentText()
        tta = TTA_CHOICES[self.tta_choice.currentText()] if tta is None else tta
        if image_ids is None and self.selected_only.isChecked():
            image_ids = self.selection()
            if not image_ids:
                self.state.message.emit("warning", "auto-segment: no image selected in the table")
                return False
        names = None if image_ids is None else [project.image(i).name for i in image_ids]
        which = "the" if names is None else f"{len(names)} selected"
        self.log_view.appendPlainText(
            f"auto-segmenting {which} image(s) without a person's mask"
            + {True: " (8 views each)…", False: "…", None: " (8 views for a crops model)…"}[tta]
        )
        self.begin_job(
            "segment",
            lambda token: segment_project(
                project, actor=actor, device=device, tta=tta, names=names, cancel=token
            ),
        )
        return True

    # -- events (GUI thread) -------------------------------------------------------------------
    def on_progress(self, event: Progress) -> None:
        """The common handling, plus the device in use and the export stage."""
        if event.device is not None:  # the workflow says where it runs (never parsed from text)
            self.device_label.setText(f"Device: {event.device}")
        super().on_progress(event)
        if event.stage == "export" and not self.runner.cancel_requested:
            self.eta_label.setText(event.message)

    def _on_succeeded(self, report: object) -> None:
        if isinstance(report, SegTrainReport):
            self.last_training = report
            self.device_label.setText(f"Device: {report.device}")
            text = (
                f"model {report.model_id}: {report.status} ({report.stop_reason}) after "
                f"{len(report.history)} epoch(s), {format_duration(report.seconds)}"
            )
            if report.best is not None:
                s = report.best.scores
                text += (
                    f"; best epoch {report.best.epoch}: IoU cytoplasm "
                    f"{s['iou_cytoplasm']:.3f}, nucleus {s['iou_nucleus']:.3f}. "
                    "Press Auto-segment now to mask the other images."
                )
            self.log_view.appendPlainText(text)
            self.state.message.emit("info", text)
        elif isinstance(report, SegmentReport):
            self.last_segmentation = report
            text = (
                f"{len(report.segmented)} image(s) auto-segmented on {report.device} in "
                f"{format_duration(report.seconds)}; {len(report.skipped_human)} with a "
                "person's mask left alone" + (" (stopped)" if report.cancelled else "")
            )
            self.log_view.appendPlainText(text)
            for problem in report.problems:
                self.log_view.appendPlainText(f"warning: {problem}")
            self.state.notify_masks_changed(None)
            self.state.message.emit("info", text)

    def _on_failed(self, error: BaseException) -> None:
        self.log_failure(error)
        if self.job_kind == "segment":
            self.state.notify_masks_changed(None)  # the batches done before the error count
