"""The classifier panel: train the Bethesda / binary classifier, classify and explain all images.

Every job runs in one :class:`JobRunner`; the panel reacts to :class:`Progress` events on the
GUI thread (progress bar, ETA, live loss / accuracy curves), so the window stays responsive.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from cytoreview.defaults import CLS, RUN
from cytoreview.errors import ConfigError
from cytoreview.gui.help_texts import INTRO_STYLE, PANEL_HELP, TOOLTIPS
from cytoreview.gui.job_panel import JobPanel, form_grid
from cytoreview.gui.live_plot import TrainingPlot
from cytoreview.gui.progress_widgets import StatusLabel, compact
from cytoreview.gui.settings_form import SettingsForm, fill_methods
from cytoreview.gui.state import WorkbenchState
from cytoreview.gui.workers import format_duration
from cytoreview.models.classifier_blocks import TINY_BACKBONE
from cytoreview.models.devices import DEVICES
from cytoreview.plugin_api import find
from cytoreview.workflows.classification import (
    TASKS,
    ClsTrainReport,
    ClsTrainRequest,
    current_classifier_id,
    train_classification,
)
from cytoreview.workflows.executors import ExecutorSpec
from cytoreview.workflows.review_data import (
    ClassifyReport,
    ExplainReport,
    classify_project,
    explain_project,
)

log = logging.getLogger(__name__)

#: The backbones offered (the literature's usual ones), and a tiny one for a quick try.
BACKBONES: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet_b0",
    "xception41",
    TINY_BACKBONE,
)


class ClassifierPlot(TrainingPlot):
    """Train / validation loss and validation accuracy and macro-F1 per epoch."""

    def __init__(self) -> None:
        super().__init__((("val_accuracy", "accuracy"), ("val_macro_f1", "macro-F1")), "val")

    @property
    def acc_axes(self) -> Any:
        """The scores' axes."""
        return self.score_axes


class ClassifierPanel(JobPanel):
    """Classifier training, then classify and explain every image, with progress and ETA.

    Signals
    -------
    predictions_changed()
        Predictions or heatmaps were stored (the review panel refreshes).
    """

    predictions_changed = Signal()

    def __init__(
        self,
        state: WorkbenchState,
        parent: QWidget | None = None,
        *,
        compute: Callable[[], ExecutorSpec] = ExecutorSpec,
    ) -> None:
        super().__init__(state, "classifier", ("train", "classify", "explain"), parent)
        #: Where "Classify all" runs: the workbench's Compute setting (the Train dock's field).
        self.compute = compute
        self.last_report: object = None
        self._uses_mask = True  # whether the chosen method has a mask branch
        self._build()
        self.runner.succeeded.connect(self._on_succeeded)
        self.runner.failed.connect(self._on_failed)
        self.update_buttons()

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(4)
        intro = QLabel(PANEL_HELP["classifier"])
        intro.setWordWrap(True)
        intro.setStyleSheet(INTRO_STYLE)
        layout.addWidget(intro)
        self.task = compact(QComboBox())
        self.task.addItems(TASKS)
        # Every default from cytoreview.defaults, as the CLI's flags: the two cannot drift.
        self.task.setCurrentText(CLS.task)
        # The methods are the plugin catalog's; each one's settings form is built from its
        # settings dataclass, as its command-line flags are.
        self.arch = compact(QComboBox())
        fill_methods(self.arch, "classifier", CLS.arch)
        self.backbone = compact(QComboBox())
        self.backbone.addItems(BACKBONES)
        self.backbone.setCurrentText(CLS.backbone)
        self.mask_backbone = compact(QComboBox())
        # None: the one rule (cytoreview.defaults.ClsRecipe.mask_backbone_for), as for the CLI
        # without --mask-backbone.
        self.mask_backbone.addItem("as image", CLS.mask_backbone)
        for name in BACKBONES:
            self.mask_backbone.addItem(name, name)
        self.input_size = compact(QSpinBox())
        # 0 is "auto": the size the workflow chooses from the images (one rule, CLI and GUI).
        self.input_size.setRange(0, 1024)
        self.input_size.setSingleStep(32)
        self.input_size.setSpecialValueText("auto")
        self.input_size.setValue(0)
        self.input_size.setSuffix(" px")
        self.epochs = compact(QSpinBox())
        self.epochs.setRange(1, 2000)
        self.epochs.setValue(CLS.epochs)
        self.device = compact(QComboBox())
        self.device.addItems(DEVICES)
        self.device.setCurrentText(RUN.device)
        self.measurements = QCheckBox("size, N:C, shape")
        self.measurements.setChecked(CLS.measurements)
        fields = (
            ("Task", self.task, "cls_task"),
            ("Model", self.arch, "cls_arch"),
            ("Backbone", self.backbone, "cls_backbone"),
            ("Mask CNN", self.mask_backbone, "cls_mask_backbone"),
            ("Measures", self.measurements, "cls_measurements"),
            ("Input", self.input_size, "cls_input"),
            ("Epochs", self.epochs, "epochs"),
            ("Device", self.device, "device"),
        )
        layout.addLayout(form_grid(fields))
        self.arch_form = SettingsForm()
        layout.addWidget(self.arch_form)
        self.arch.currentTextChanged.connect(self._on_arch_changed)
        self._on_arch_changed(self.arch.currentText())
        row = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.start_button.setToolTip(TOOLTIPS["cls_start"])
        self.start_button.clicked.connect(lambda: self.start_training())
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip(TOOLTIPS["stop"])
        self.stop_button.clicked.connect(self.stop)
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        layout.addLayout(row)
        row = QHBoxLayout()
        self.classify_button = QPushButton("Classify all")
        self.classify_button.setToolTip(TOOLTIPS["classify_all"])
        self.classify_button.clicked.connect(lambda: self.classify_all())
        self.explain_button = QPushButton("Explain all")
        self.explain_button.setToolTip(TOOLTIPS["explain_all"])
        self.explain_button.clicked.connect(lambda: self.explain_all())
        row.addWidget(self.classify_button)
        row.addWidget(self.explain_button)
        layout.addLayout(row)
        self.model_label = StatusLabel("Classifier: —")
        layout.addWidget(self.model_label)
        self.add_job_widgets(layout, ClassifierPlot())
        layout.addStretch(1)

    def _on_arch_changed(self, name: str) -> None:
        """Show the method's own settings; a method without a mask branch has no mask CNN."""
        contribution = find("classifier", name) if name else None
        self.arch_form.set_contribution(contribution)
        self._uses_mask = uses_mask = contribution is None or contribution.uses_mask
        self.mask_backbone.setEnabled(uses_mask)
        self.mask_backbone.setToolTip(
            TOOLTIPS["cls_mask_backbone" if uses_mask else "cls_mask_unused"]
        )
        self.measurements.setEnabled(uses_mask)
        self.measurements.setToolTip(
            TOOLTIPS["cls_measurements" if uses_mask else "cls_measurements_unused"]
        )

    def update_buttons(self) -> None:
        """Training needs a project; classify and explain need a trained classifier."""
        project = self.state.project
        running = self.runner.is_running
        model_id = None if project is None else current_classifier_id(project, "bethesda")
        self.model_label.setText(f"Classifier: {model_id or 'none trained yet'}")
        self.start_button.setEnabled(project is not None and not running)
        self.stop_button.setEnabled(running)
        for button in (self.classify_button, self.explain_button):
            button.setEnabled(model_id is not None and not running)

    # -- jobs ----------------------------------------------------------------------------------
    def request(self) -> ClsTrainRequest:
        """The training request the form describes."""
        # A method without a mask branch gets none, as from the CLI without the flag.
        mask_backbone = self.mask_backbone.currentData() if self._uses_mask else CLS.mask_backbone
        return ClsTrainRequest(
            task=self.task.currentText(),
            arch=self.arch.currentText(),
            settings=self.arch_form.values(),
            backbone=self.backbone.currentText(),
            mask_backbone=mask_backbone,
            input_size=self.input_size.value() or None,
            epochs=self.epochs.value(),
            device=self.device.currentText(),
            measurements=self.measurements.isChecked() if self._uses_mask else CLS.measurements,
        )

    def start_training(self, request: ClsTrainRequest | None = None) -> bool:
        """Train a classifier in the background (the form's settings unless ``request``)."""
        project = self.state.project
        if project is None or self.runner.is_running:
            return False
        request = request or self.request()
        try:
            # Every setting the method will use, the defaults too: the log says what ran.
            settings = find("classifier", request.arch).settings_record(request.settings)
        except ConfigError as exc:
            self.log_view.appendPlainText(f"cannot train: {exc}")
            self.state.message.emit("error", str(exc))
            return False
        actor = self.state.actor
        described = "".join(f", {k} {v}" for k, v in settings.items())
        self.log_view.appendPlainText(
            f"training a {request.task} {request.arch} classifier ({request.backbone} "
            f"backbone{described})…"
        )
        self.begin_job(
            "train",
            lambda token: train_classification(project, request, actor=actor, cancel=token),
            new_curves=True,
            budget_s=request.time_budget_min * 60 if request.time_budget_min else None,
        )
        return True

    def classify_all(self, device: str | None = None) -> bool:
        """Predict every image with the current classifier."""
        project = self.state.project
        if project is None or self.runner.is_running:
            return False
        actor, device = self.state.actor, device or self.device.currentText()
        compute = self.compute()  # read here, on the GUI thread
        self.begin_job(
            "classify",
            lambda token: classify_project(
                project, actor=actor, device=device, compute=compute, cancel=token
            ),
        )
        return True

    def explain_all(self, device: str | None = None, flipping_steps: int = 10) -> bool:
        """Compute and store a Grad-CAM++ heatmap of every image."""
        project = self.state.project
        if project is None or self.runner.is_running:
            return False
        device = device or self.device.currentText()
        self.begin_job(
            "explain",
            lambda token: explain_project(
                project, flipping_steps=flipping_steps, device=device, cancel=token
            ),
        )
        return True

    # -- events (GUI thread) -------------------------------------------------------------------
    def _on_succeeded(self, report: object) -> None:
        self.last_report = report
        if isinstance(report, ClsTrainReport):
            text = (
                f"classifier {report.model_id}: {report.status} ({report.stop_reason}) after "
                f"{len(report.history)} epoch(s) on {report.device}, "
                f"{format_duration(report.seconds)}"
            )
            if report.best is not None:
                text += (
                    f"; best epoch {report.best.epoch}: accuracy "
                    f"{report.best.val_accuracy:.3f}. Press Classify all."
                )
        elif isinstance(report, ClassifyReport):
            counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
            views = ", 8 views averaged" if report.tta else ""
            text = f"{report.classified} image(s) classified ({counts}{views}) on {report.driver}"
            text += "".join(f"\nwarning: {s}" for s in report.skipped[:5])
            self.predictions_changed.emit()
        elif isinstance(report, ExplainReport):
            text = f"{report.explained} heatmap(s) stored ({report.method})"
            if report.flagged:
                text += f"; looking at background: {', '.join(report.flagged[:5])}"
            self.predictions_changed.emit()
        else:
            text = f"{self.job_kind} done"
        if getattr(report, "cancelled", False):
            text += " (stopped)"
        self.log_view.appendPlainText(text)
        self.state.message.emit("info", text.splitlines()[0])

    def _on_failed(self, error: BaseException) -> None:
        self.log_failure(error)
        if self.job_kind in ("classify", "explain"):
            self.predictions_changed.emit()  # what was stored before the error counts
