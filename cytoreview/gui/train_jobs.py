"""The Train dock's other jobs: masks from a mask generator, and comparing encoders.

A mixin of :class:`~cytoreview.gui.train_panel.TrainPanel` (kept apart so each module stays
small): the methods below use the panel's runner, log, state and form. The rules are in the
workflows they start (:mod:`cytoreview.workflows.mask_generation`,
:mod:`cytoreview.workflows.compare`).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QDialog

from cytoreview.errors import ConfigError
from cytoreview.gui.compare_dialog import CompareDialog, ComparisonTable
from cytoreview.gui.workers import format_duration
from cytoreview.plugin_api import find
from cytoreview.workflows.compare import EncoderComparison, compare_encoders
from cytoreview.workflows.mask_generation import GenerateReport, generate_masks

__all__ = ["MaskJobs"]


class MaskJobs:
    """Generate masks and compare encoders from the Train dock (see the module docstring)."""

    # Provided by the panel this is mixed into.
    state: Any
    runner: Any
    log_view: Any
    generate_dialog: Any
    include_generated: Any
    last_generation: GenerateReport | None
    last_comparison: EncoderComparison | None
    begin_job: Any
    request: Any
    _chosen_names: Any

    def ask_generation(self, dialog: Any = None) -> bool:
        """Ask which mask generator, with which settings; then generate (see below).

        ``dialog``: the "Masks from class labels" one, or (default) the one for every generator.
        """
        dialog = dialog or self.generate_dialog
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return False
        return self.start_generation(dialog=dialog)

    def start_generation(
        self,
        generator: str | None = None,
        settings: dict[str, Any] | None = None,
        image_ids: list[int] | None = None,
        dialog: Any = None,
    ) -> bool:
        """Make masks with a mask generator for the images without a person's mask.

        Parameters
        ----------
        generator, settings
            The method and its settings; default: the last ones chosen in ``dialog`` (default:
            the Generate masks dialog).
        image_ids
            As for :meth:`start_segmentation`.
        """
        project = self.state.project
        dialog = dialog or self.generate_dialog
        generator = generator or dialog.name()
        if project is None or self.runner.is_running or generator is None:
            return False
        settings = dialog.values() if settings is None else settings
        go, names = self._chosen_names(image_ids, "generate masks")
        if not go:
            return False
        try:
            chosen = find("mask-generator", generator).settings_record(settings)
        except ConfigError as exc:
            self.state.message.emit("error", str(exc))
            return False
        which = "the" if names is None else f"{len(names)} selected"
        described = ", ".join(f"{k} {v}" for k, v in chosen.items()) or "no settings"
        self.log_view.appendPlainText(
            f"generating masks with {generator} ({described}) for {which} image(s) without a "
            "person's mask…"
        )
        actor = self.state.actor
        self.begin_job(
            "generate",
            lambda token: generate_masks(
                project, generator, settings, actor=actor, names=names, cancel=token
            ),
        )
        return True

    def ask_comparison(self, encoders: list[str] | None = None) -> bool:
        """Train and score the method once per encoder with the form's recipe.

        A dialog asks which encoders unless ``encoders`` is given.
        """
        project = self.state.project
        if project is None or self.runner.is_running:
            return False
        base = self.request()
        if encoders is None:
            recipe = f"{base.arch}, {base.preset or 'no preset'}, up to {base.epochs} epochs" + (
                f", {base.time_budget_min:g} min each" if base.time_budget_min else ""
            )
            dialog = CompareDialog(base.arch, recipe, self)
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return False
            encoders = dialog.encoders()
        self.log_view.appendPlainText(f"comparing {', '.join(encoders)} ({base.arch})…")
        actor = self.state.actor
        self.begin_job(
            "compare",
            lambda token: compare_encoders(project, encoders, base=base, actor=actor, cancel=token),
            new_curves=True,
        )
        return True

    def report_mask_job(self, report: object) -> bool:
        """Show what a generation or a comparison did; False for another job's report."""
        if isinstance(report, EncoderComparison):
            self.last_comparison = report
            done = sum(row.status == "finished" for row in report.rows)
            self.log_view.appendPlainText(
                f"{done} of {len(report.rows)} encoder(s) compared; table: {report.table_csv}"
            )
            ComparisonTable(report, self).show()
        elif isinstance(report, GenerateReport):
            self.last_generation = report
            text = (
                f"{len(report.made)} mask(s) generated with {report.generator} in "
                f"{format_duration(report.seconds)}; {len(report.skipped_human)} with a "
                "person's mask left alone" + (" (stopped)" if report.cancelled else "")
            )
            self.log_view.appendPlainText(text)
            if report.fitted:
                self.log_view.appendPlainText(
                    f"learnt first: {report.fitted} (stored as model {report.fitted_model})"
                )
            if report.uncertainties:
                self.log_view.appendPlainText(
                    "each mask has an uncertainty: the Review queue shows the least sure first"
                )
            for problem in report.problems:
                self.log_view.appendPlainText(f"warning: {problem}")
            if report.made and not self.include_generated.isChecked():
                self.log_view.appendPlainText(
                    "Tick 'Also learn from generated masks' to train on them."
                )
            self.state.notify_masks_changed(None)
            self.state.message.emit("info", text)

        else:
            return False
        return True
