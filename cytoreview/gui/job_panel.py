"""The common part of the docks that run long jobs (segmentation and classifier training).

One :class:`JobRunner` (one job at a time), a status line with the ETA, a progress bar, a live
plot of the epochs and a log. Subclasses build their own form and buttons, start their jobs
with :meth:`JobPanel.begin_job`, and word their own reports; the progress events are handled
here, on the GUI thread, with widgets that do not stall the window (see
:mod:`cytoreview.gui.progress_widgets` and :mod:`cytoreview.gui.live_plot`).
"""

from __future__ import annotations

from collections.abc import Sequence

from qtpy.QtWidgets import QBoxLayout, QGridLayout, QLabel, QPlainTextEdit, QWidget

from cytoreview.gui.help_texts import TOOLTIPS
from cytoreview.gui.live_plot import TrainingPlot
from cytoreview.gui.progress_widgets import SmoothProgressBar, StatusLabel
from cytoreview.gui.state import WorkbenchState
from cytoreview.gui.throttle import Throttle
from cytoreview.gui.workers import EtaEstimator, JobFactory, JobRunner, format_duration
from cytoreview.types import Progress

#: The live plot is redrawn at most this often (epochs can end several times a second).
PLOT_INTERVAL_MS = 1000


def form_grid(fields: Sequence[tuple[str, QWidget, str]]) -> QGridLayout:
    """A job's settings form: (label, field, tooltip key) pairs, two to a row."""
    form = QGridLayout()
    for i, (label, widget, tip) in enumerate(fields):
        widget.setToolTip(TOOLTIPS[tip])
        form.addWidget(QLabel(label), i // 2, 2 * (i % 2))
        form.addWidget(widget, i // 2, 2 * (i % 2) + 1)
    form.setColumnStretch(1, 1)  # the fields take the width, not the labels
    form.setColumnStretch(3, 1)
    return form


class JobPanel(QWidget):
    """A dock panel that runs one background job at a time and shows its progress.

    Parameters
    ----------
    state
        The workbench state (project, actor, job tracking).
    runner_name
        Name of the job runner, for messages.
    step_stages
        Progress stages whose events move the bar; their per-step messages stay out of the log
        (it gets epochs, stage changes and warnings).
    """

    def __init__(
        self,
        state: WorkbenchState,
        runner_name: str,
        step_stages: tuple[str, ...],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.step_stages = step_stages
        self.runner = JobRunner(runner_name, self)
        state.track_job(self.runner)
        self.job_kind: str | None = None  # what is running, e.g. "train"
        self.history: list[dict[str, float]] = []
        self._eta = EtaEstimator()
        self.runner.started.connect(self.update_buttons)
        state.project_changed.connect(lambda _: self.update_buttons())

    # -- layout --------------------------------------------------------------------------------
    def add_job_widgets(self, layout: QBoxLayout, plot: TrainingPlot) -> None:
        """Add the status line, progress bar, live ``plot`` and log to ``layout``."""
        self.eta_label = StatusLabel("")
        layout.addWidget(self.eta_label)
        self.bar = SmoothProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setFormat("idle")
        layout.addWidget(self.bar)
        self.plot = plot
        self._plot_updates = Throttle(PLOT_INTERVAL_MS, plot.show_history, self)
        layout.addWidget(plot)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumHeight(80)
        self.log_view.setPlaceholderText("epochs, stages and warnings appear here")
        layout.addWidget(self.log_view)
        self.runner.progress.connect(self.on_progress)
        self.runner.finished.connect(self._on_job_finished)

    # -- jobs ----------------------------------------------------------------------------------
    def begin_job(
        self,
        kind: str,
        factory: JobFactory,
        *,
        new_curves: bool = False,
        budget_s: float | None = None,
    ) -> None:
        """Start ``factory`` in the runner as a job of ``kind``.

        Parameters
        ----------
        kind
            What runs (``"train"``, ``"segment"``, ...), in :attr:`job_kind` until it ends.
        factory
            Given the stop token, the workflow generator.
        new_curves
            A training: clear the plot for its epochs.
        budget_s
            A time budget: the ETA never announces more than what is left of it.
        """
        self.job_kind = kind
        self._eta.reset()
        self._eta.set_budget(budget_s)
        if new_curves:
            self.history = []
            self.plot.show_history([])
        self.bar.setFormat("%p%")
        self.bar.setRange(0, 0)  # busy until the first event says how much there is
        self.eta_label.setText("starting…")
        self.update_buttons()
        self.runner.start(factory)

    def stop(self) -> None:
        """Stop the running job after its current step."""
        if self.runner.is_running:
            self.runner.cancel()
            self.eta_label.setText("stopping after the current step…")

    def update_buttons(self) -> None:
        """Enable the panel's buttons for the current project and job (subclasses)."""

    # -- events (GUI thread) -------------------------------------------------------------------
    def on_progress(self, event: Progress) -> None:
        """Move the bar and the ETA, add epochs to the plot, log stages and warnings."""
        if event.stage in self.step_stages and event.total:
            self.bar.setRange(0, event.total)
            self.bar.setValue(event.step)
            eta = format_duration(self._eta.update(event.fraction))
            loss = event.metrics.get("loss")
            extra = f", loss {loss:.3f}" if loss is not None else ""
            self.eta_label.setText(f"{event.stage} {event.step}/{event.total}{extra}, ETA {eta}")
        elif event.stage == "epoch":
            self.history.append({"epoch": float(event.step), **event.metrics})
            self._plot_updates.push(list(self.history))
        step_line = event.stage in self.step_stages and event.step > 0
        if event.message and (event.level == "warning" or not step_line):
            prefix = "warning: " if event.level == "warning" else ""
            self.log_view.appendPlainText(prefix + event.message)

    def log_failure(self, error: BaseException) -> None:
        """Log a job's error and show it in the window."""
        text = f"{self.job_kind or 'job'} failed: {error}"
        self.log_view.appendPlainText(text)
        self.state.message.emit("error", text)

    def _on_job_finished(self) -> None:
        self._plot_updates.flush()  # the last epochs are always drawn
        self.job_kind = None
        self.bar.setRange(0, 1)
        self.bar.setValue(1)
        self.bar.setFormat("idle")
        self.eta_label.setText("stopped" if self.runner.cancel_requested else "done")
        self.update_buttons()
