"""The train panel: train a segmenter on the painted masks, watch it learn, auto-segment the rest.

The methods (the built-in U-Net or a plugin's), their presets and the mask generators are the
plugin catalog's; each method's settings form is built from its settings dataclass
(:mod:`cytoreview.gui.settings_form`), so nothing here is particular to one method.

Its jobs run through one :class:`JobRunner` (one at a time); the panel only reacts to their
:class:`Progress` events, on the GUI thread, so the window stays responsive during training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from cytoreview.choices import TTA_CHOICES
from cytoreview.defaults import RUN, SEG
from cytoreview.errors import ConfigError
from cytoreview.gui.compare_dialog import encoder_choices
from cytoreview.gui.generate_dialog import GenerateDialog
from cytoreview.gui.help_texts import INTRO_STYLE, PANEL_HELP, TOOLTIPS
from cytoreview.gui.job_panel import JobPanel, form_grid
from cytoreview.gui.live_plot import TrainingPlot
from cytoreview.gui.progress_widgets import StatusLabel, compact
from cytoreview.gui.settings_form import SettingsForm, fill_methods
from cytoreview.gui.state import WorkbenchState
from cytoreview.gui.train_jobs import MaskJobs
from cytoreview.gui.workers import format_duration
from cytoreview.models.devices import DEVICES
from cytoreview.models.segmenters import SIZE_MULTIPLE
from cytoreview.plugin_api import catalog, find
from cytoreview.settings import SCHEDULER_ENV
from cytoreview.storage.model_store import ModelStore
from cytoreview.types import Progress
from cytoreview.workflows.compare import EncoderComparison
from cytoreview.workflows.executors import ExecutorSpec
from cytoreview.workflows.mask_generation import GenerateReport
from cytoreview.workflows.segmentation import (
    KIND,
    SegmentReport,
    SegTrainReport,
    SegTrainRequest,
    find_preset,
    seg_request,
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


class TrainPanel(MaskJobs, JobPanel):
    """Segmentation training and auto-segmentation, with progress, ETA and live curves."""

    def __init__(
        self,
        state: WorkbenchState,
        selection: Callable[[], list[int]] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(state, "segmentation", ("train", "segment", "generate", "compare"), parent)
        #: The image ids selected in the project table (for "only the selected images").
        self.selection = selection or (lambda: [])
        self.last_training: SegTrainReport | None = None
        self.last_segmentation: SegmentReport | None = None
        self.last_generation: GenerateReport | None = None
        self.last_comparison: EncoderComparison | None = None
        #: Request fields and method settings the chosen preset filled (reset when unchosen).
        self._preset_filled: tuple[set[str], set[str]] = (set(), set())
        #: What the form showed after the last method or preset choice (see :meth:`request`).
        self._baseline: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
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
        # The methods and their settings come from the plugin catalog; every default from
        # cytoreview.defaults or the method's settings dataclass, as the CLI's flags.
        self.method = compact(QComboBox())
        fill_methods(self.method, "segmenter", SEG.arch)
        self.preset = compact(QComboBox())
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
        self.include_generated = QCheckBox("Also learn from generated masks")
        self.include_generated.setToolTip(TOOLTIPS["include_generated"])
        self.semi = QCheckBox("Also learn from unpainted images (slower)")
        self.semi.setToolTip(TOOLTIPS["semi"])
        self.semi.setChecked(SEG.semi)
        layout.addLayout(
            form_grid(
                (("Method", self.method, "seg_method"), ("Preset", self.preset, "seg_preset"))
            )
        )
        self.method_form = SettingsForm()
        layout.addWidget(self.method_form)
        self.preset_note = QLabel()
        self.preset_note.setWordWrap(True)
        self.preset_note.setStyleSheet(INTRO_STYLE)
        layout.addWidget(self.preset_note)
        form = form_grid(
            (
                ("Device", self.device, "device"),
                ("Epochs", self.epochs, "epochs"),
                ("Budget", self.time_budget, "time_budget"),
                ("Input", self.input_size, "input_size"),
            )
        )
        layout.addLayout(form)
        layout.addWidget(self.include_generated)
        layout.addWidget(self.semi)
        self.method.currentTextChanged.connect(self._on_method_changed)
        self.preset.currentIndexChanged.connect(lambda _: self._on_preset_changed())
        self._on_method_changed(self.method.currentText())
        row = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.start_button.setToolTip(TOOLTIPS["start_training"])
        self.start_button.clicked.connect(lambda: self.start_training())
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip(TOOLTIPS["stop"])
        self.stop_button.clicked.connect(self.stop)
        self.compare_button = QPushButton("Compare encoders…")
        self.compare_button.setToolTip(TOOLTIPS["compare_encoders"])
        self.compare_button.clicked.connect(lambda: self.ask_comparison())
        for button in (self.start_button, self.stop_button):
            row.addWidget(button)
        layout.addLayout(row)
        row = QHBoxLayout()  # a trained model masks the rest; or compare encoders first
        self.segment_button = QPushButton("Auto-segment now")
        self.segment_button.setToolTip(TOOLTIPS["auto_segment"])
        self.segment_button.clicked.connect(lambda: self.start_segmentation())
        self.generate_dialog = GenerateDialog(self)
        self.generate_button = QPushButton("Generate masks…")
        self.generate_button.setToolTip(
            TOOLTIPS["generate_masks" if self.generate_dialog.installed else "no_generator"]
        )
        self.generate_button.clicked.connect(lambda: self.ask_generation())
        self.labels_dialog = GenerateDialog(self, from_labels=True)
        self.labels_button = QPushButton("Masks from class labels…")
        self.labels_button.setToolTip(
            TOOLTIPS["masks_from_labels" if self.labels_dialog.installed else "no_label_generator"]
        )
        self.labels_button.clicked.connect(lambda: self.ask_generation(self.labels_dialog))
        for button in (self.segment_button, self.compare_button):
            row.addWidget(button)
        layout.addLayout(row)
        row = QHBoxLayout()  # masks with no painting: from the pixels, or from class labels
        for button in (self.generate_button, self.labels_button):
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
        # Where Auto-segment computes: empty is the command line's rule without --scheduler
        # (the environment variable, else this machine); an address uses a Dask cluster.
        row = QHBoxLayout()
        self.compute = QLineEdit()
        self.compute.setPlaceholderText(f"this machine (or ${SCHEDULER_ENV})")
        self.compute.setToolTip(TOOLTIPS["compute"])
        row.addWidget(QLabel("Compute:"))
        row.addWidget(self.compute, 1)
        layout.addLayout(row)
        # One line each: side by side, the ETA at the end of the line was clipped.
        self.device_label = StatusLabel("Device: —")
        layout.addWidget(self.device_label)
        self.add_job_widgets(layout, SegmentationPlot())
        layout.addStretch(1)

    # -- the method, its preset and the form's values --------------------------------------------
    def _common_values(self) -> dict[str, Any]:
        """The request fields the form shows, as the request holds them."""
        budget = self.time_budget.value()
        return {
            "epochs": self.epochs.value(),
            "time_budget_min": budget if budget > 0 else None,
            "device": self.device.currentText(),
            "input_size": self.input_size.value() or None,
            "include_generated": self.include_generated.isChecked(),
            "semi": self.semi.isChecked(),
        }

    def _fill_common(self, values: dict[str, Any]) -> None:
        """Show ``values`` (request fields) in the form's fields that have them."""
        if "epochs" in values:
            self.epochs.setValue(int(values["epochs"]))
        if "time_budget_min" in values:
            self.time_budget.setValue(float(values["time_budget_min"] or 0))
        if "device" in values:
            self.device.setCurrentText(str(values["device"]))
        if "input_size" in values:
            self.input_size.setValue(int(values["input_size"] or 0))
        if "include_generated" in values:
            self.include_generated.setChecked(bool(values["include_generated"]))
        if "semi" in values:
            self.semi.setChecked(bool(values["semi"]))

    def _on_method_changed(self, name: str) -> None:
        """Show the method's settings and list its presets (none chosen)."""
        self.method_form.set_contribution(find("segmenter", name) if name else None)
        self.preset.blockSignals(True)  # one preset change below, not one per item
        self.preset.clear()
        self.preset.addItem("none", None)
        for contribution, recipe, publisher in catalog().presets():
            if contribution.name == name:
                self.preset.addItem(recipe.name, recipe.name)
                tip = f"{recipe.description}\n{publisher}" + (
                    f"\n{recipe.citation}" if recipe.citation else ""
                )
                self.preset.setItemData(self.preset.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.preset.blockSignals(False)
        has_presets = self.preset.count() > 1
        self.preset.setEnabled(has_presets)
        self.preset.setToolTip(TOOLTIPS["seg_preset" if has_presets else "no_preset"])
        self._on_preset_changed()
        if hasattr(self, "compare_button"):  # built after the form: the first call is earlier
            self.update_buttons()

    def _on_preset_changed(self) -> None:
        """Fill the form from the chosen preset (or the defaults for "none").

        The defaults and the preset's values are the baseline: only the fields that differ
        from it go into the request as the user's own, so the preset's other values (learning
        rate, loss...) still apply, exactly as ``train-seg --preset NAME`` with a few flags.
        """
        name = self.preset.currentData()
        # What an earlier preset filled goes back to the defaults before a new one fills; what
        # the user set stays.
        defaults, specs = SegTrainRequest(), {s.name: s.default for s in self.method_form.specs}
        common, own = self._preset_filled
        self._fill_common({key: getattr(defaults, key) for key in common})
        self.method_form.set_values({key: specs[key] for key in own if key in specs})
        note = ""
        self._preset_filled = (set(), set())
        if name is not None:
            _, recipe = find_preset("segmenter", name)
            values = dict(recipe.values)
            settings = dict(values.pop("settings", {}))
            self.method_form.set_values(settings)
            shown = set(self._common_values())
            self._fill_common(values)
            self._preset_filled = (shown & set(values), set(settings))
            hidden = {k: v for k, v in values.items() if k not in shown and k != "arch"}
            note = recipe.description + (
                "; also sets " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in hidden.items())
                if hidden
                else ""
            )
        self.preset_note.setText(note)
        self.preset_note.setVisible(bool(note))
        # The request's baseline: the defaults, then what the preset filled, as the form shows
        # them; a field that differs from it is the user's own (even one set before choosing).
        common, own = self._preset_filled
        shown, settings = self._common_values(), self.method_form.all_values()
        self._baseline = (
            {key: shown[key] if key in common else getattr(defaults, key) for key in shown},
            {key: settings[key] if key in own else specs.get(key) for key in settings},
        )

    def update_buttons(self) -> None:
        """Start needs a project, auto-segment a model, generate a generator; one job at a time."""
        project = self.state.project
        running = self.runner.is_running
        self.start_button.setEnabled(project is not None and not running)
        self.stop_button.setEnabled(running)
        has_model = project is not None and ModelStore(project).current_model(KIND) is not None
        self.segment_button.setEnabled(has_model and not running)
        self.generate_button.setEnabled(
            project is not None and self.generate_dialog.installed and not running
        )
        self.labels_button.setEnabled(
            project is not None and self.labels_dialog.installed and not running
        )
        self.compare_button.setEnabled(
            project is not None and not running and bool(encoder_choices(self.method.currentText()))
        )

    # -- jobs ----------------------------------------------------------------------------------
    def request(self) -> SegTrainRequest:
        """The training request the form describes.

        The defaults, then the chosen preset, then what the user changed after choosing it
        (:func:`~cytoreview.workflows.segmentation.seg_request`, as the CLI builds it).
        """
        common, settings = self._baseline
        changed = {k: v for k, v in self._common_values().items() if v != common[k]}
        own = {k: v for k, v in self.method_form.all_values().items() if v != settings.get(k)}
        return seg_request(
            self.preset.currentData(), arch=self.method.currentText(), settings=own, **changed
        )

    def start_training(self, request: SegTrainRequest | None = None) -> bool:
        """Train in the background (the form's settings unless ``request`` is given)."""
        project = self.state.project
        if project is None or self.runner.is_running:
            return False
        try:
            request = request or self.request()
            # Every setting the method will use, the defaults too: the log says what ran.
            settings = find("segmenter", request.arch).settings_record(request.settings)
        except ConfigError as exc:
            self.log_view.appendPlainText(f"cannot train: {exc}")
            self.state.message.emit("error", str(exc))
            return False
        actor = self.state.actor
        described = ", ".join(f"{k} {v}" for k, v in settings.items()) or "no settings"
        self.log_view.appendPlainText(
            f"training {request.arch} ({described}"
            + (f"; preset {request.preset}" if request.preset else "")
            + (", with generated masks" if request.include_generated else "")
            + f"), up to {request.epochs} epochs…"
        )
        self.device_label.setText(f"Device: {request.device} (starting…)")
        self.begin_job(
            "train",
            lambda token: train_segmentation(project, request, actor=actor, cancel=token),
            new_curves=True,
            budget_s=request.time_budget_min * 60 if request.time_budget_min else None,
        )
        return True

    def _chosen_names(self, image_ids: list[int] | None, job: str) -> tuple[bool, list[str] | None]:
        """Image names for a masking job: the given ids, else the table's selection if asked.

        Returns (go on, names); names None means every image.
        """
        project = self.state.project
        assert project is not None
        if image_ids is None and self.selected_only.isChecked():
            image_ids = self.selection()
            if not image_ids:
                self.state.message.emit("warning", f"{job}: no image selected in the table")
                return False, None
        return True, None if image_ids is None else [project.image(i).name for i in image_ids]

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
        go, names = self._chosen_names(image_ids, "auto-segment")
        if not go:
            return False
        which = "the" if names is None else f"{len(names)} selected"
        compute = self.compute_spec()  # read here, on the GUI thread
        self.log_view.appendPlainText(
            f"auto-segmenting {which} image(s) without a person's mask"
            + {True: " (8 views each)…", False: "…", None: " (8 views for a crops model)…"}[tta]
        )
        self.begin_job(
            "segment",
            lambda token: segment_project(
                project,
                actor=actor,
                device=device,
                tta=tta,
                names=names,
                cancel=token,
                compute=compute,
            ),
        )
        return True

    def compute_spec(self) -> ExecutorSpec:
        """Where batch jobs run, as the "Compute" field says (empty: not said)."""
        return ExecutorSpec(scheduler=self.compute.text().strip() or None)

    # -- events (GUI thread) -------------------------------------------------------------------
    def on_progress(self, event: Progress) -> None:
        """The common handling, plus the device in use and the stages after the epochs."""
        if event.device is not None:  # the workflow says where it runs (never parsed from text)
            self.device_label.setText(f"Device: {event.device}")
        super().on_progress(event)
        if event.stage in ("export", "calibrate") and not self.runner.cancel_requested:
            self.eta_label.setText(event.message)

    def _on_succeeded(self, report: object) -> None:
        if self.report_mask_job(report):  # generated masks, an encoder comparison
            return
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
                f"{len(report.segmented)} image(s) auto-segmented on {report.device} "
                f"({report.driver}) in {format_duration(report.seconds)}; "
                f"{len(report.skipped_human)} with a "
                "person's mask left alone" + (" (stopped)" if report.cancelled else "")
            )
            self.log_view.appendPlainText(text)
            for problem in report.problems:
                self.log_view.appendPlainText(f"warning: {problem}")
            self.state.notify_masks_changed(None)
            self.state.message.emit("info", text)

    def _on_failed(self, error: BaseException) -> None:
        self.log_failure(error)
        if self.job_kind in ("segment", "generate"):
            self.state.notify_masks_changed(None)  # the batches done before the error count
