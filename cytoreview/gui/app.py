"""The workbench window: napari with CytoReview's docks, and the entry point ``launch``.

Docks come from a registry (:func:`register_dock`): each :class:`DockSpec` builds its widget
from the :class:`Workbench` (viewer, shared state, autosave, the other panels), so a later
panel (review, teaching, classifier) is one ``register_dock`` call away, with no change here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QApplication, QScrollArea, QWidget

from cytoreview.gui.annotate_panel import AnnotatePanel
from cytoreview.gui.autosave import DEFAULT_DELAY_MS, Autosave
from cytoreview.gui.project_panel import ProjectPanel
from cytoreview.gui.shortcuts import install_window_shortcuts
from cytoreview.gui.state import WorkbenchState
from cytoreview.gui.train_panel import TrainPanel

log = logging.getLogger(__name__)

WINDOW_TITLE = "CytoReview"


@dataclass(frozen=True)
class DockSpec:
    """One dock of the workbench.

    Parameters
    ----------
    key
        Short unique name (``"project"``); the panel is ``workbench.panels[key]``.
    title
        The dock's title bar text.
    factory
        Builds the panel widget; may use every panel built before it (lower ``order``).
    area
        ``"right"``, ``"left"``, ``"bottom"`` or ``"top"``.
    tabify
        Stack as a tab onto the docks already in that area.
    order
        Docks are built in increasing order.
    scroll
        Wrap the panel in a scroll area, so that a small screen never cuts widgets off.
    """

    key: str
    title: str
    factory: Callable[[Workbench], QWidget]
    area: str = "right"
    tabify: bool = False
    order: int = 100
    scroll: bool = True


_DOCKS: dict[str, DockSpec] = {}


def register_dock(spec: DockSpec, *, replace: bool = False) -> None:
    """Add a dock to every workbench built from now on.

    Raises
    ------
    ValueError
        If a dock with this key exists and ``replace`` is False.
    """
    if spec.key in _DOCKS and not replace:
        raise ValueError(f"a dock named {spec.key!r} is already registered")
    _DOCKS[spec.key] = spec


def registered_docks() -> list[DockSpec]:
    """The registered docks in build order."""
    return sorted(_DOCKS.values(), key=lambda spec: spec.order)


class Workbench:
    """The docks on one napari viewer and what they share."""

    def __init__(self, viewer: Any, state: WorkbenchState, autosave: Autosave) -> None:
        self.viewer = viewer
        self.state = state
        self.autosave = autosave
        self.panels: dict[str, QWidget] = {}
        self.docks: dict[str, Any] = {}
        #: Every message shown to the person, (level, text), oldest first.
        self.messages: list[tuple[str, str]] = []
        self._closed = False

    @property
    def project_panel(self) -> ProjectPanel:
        """The project dock's panel."""
        return cast(ProjectPanel, self.panels["project"])

    @property
    def annotate_panel(self) -> AnnotatePanel:
        """The annotate dock's panel."""
        return cast(AnnotatePanel, self.panels["annotate"])

    @property
    def train_panel(self) -> TrainPanel:
        """The segmentation-training dock's panel."""
        return cast(TrainPanel, self.panels["train"])

    def show_message(self, level: str, text: str) -> None:
        """Show a line in the status bar; warnings and errors also as napari notifications."""
        self.messages.append((level, text))
        log.log(logging.ERROR if level == "error" else logging.INFO, "%s", text)
        if self._closed:
            return
        self.viewer.status = text
        if level in ("warning", "error"):
            from napari.utils.notifications import show_error, show_warning

            (show_error if level == "error" else show_warning)(text)

    def close(self) -> None:
        """Save pending edits, stop background jobs and close the project (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.autosave.flush()
        self.state.close_project()


class _CloseWatcher(QObject):
    """Runs the workbench's close when the main window gets its close event."""

    def __init__(self, workbench: Workbench, parent: QObject) -> None:
        super().__init__(parent)
        self._workbench = workbench

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        """Qt: save and stop before the window goes."""
        if event.type() == QEvent.Type.Close:
            self._workbench.close()
        return False


def _scrolled(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(widget)
    area.setObjectName(widget.objectName())
    return area


def build_workbench(
    viewer: Any,
    project_path: str | Path | None = None,
    *,
    actor: str | None = None,
    autosave_delay_ms: int = DEFAULT_DELAY_MS,
) -> Workbench:
    """Add CytoReview's docks to ``viewer`` and open ``project_path`` if given.

    Parameters
    ----------
    viewer
        A napari viewer (with its Qt window).
    project_path
        A project folder to open at once.
    actor
        Who is working, for the audit log (default: ``$CYTOREVIEW_USER`` or the login name).
    autosave_delay_ms
        Quiet time after a stroke before the mask is saved.

    Raises
    ------
    CytoReviewError
        If ``project_path`` is not a project that can be opened.
    """
    window = viewer.window._qt_window
    state = WorkbenchState(actor, parent=window)
    autosave = Autosave(state, autosave_delay_ms, parent=window)
    workbench = Workbench(viewer, state, autosave)
    state.message.connect(workbench.show_message)
    for spec in registered_docks():
        panel = spec.factory(workbench)
        panel.setObjectName(f"cytoreview-{spec.key}")
        workbench.panels[spec.key] = panel
        widget = _scrolled(panel) if spec.scroll else panel
        workbench.docks[spec.key] = viewer.window.add_dock_widget(
            widget, name=spec.title, area=spec.area, tabify=spec.tabify
        )
    project_panel = workbench.project_panel
    install_window_shortcuts(window, {
        "next_image": project_panel.next_image,
        "previous_image": project_panel.previous_image,
        "approve": workbench.annotate_panel.approve,
    })  # fmt: skip
    window.installEventFilter(_CloseWatcher(workbench, window))
    viewer.title = WINDOW_TITLE
    if project_path is not None:
        state.open_project(project_path)
    return workbench


register_dock(DockSpec("project", "Project", lambda wb: ProjectPanel(wb.state), order=10))
register_dock(DockSpec("annotate", "Annotate",
                       lambda wb: AnnotatePanel(wb.viewer, wb.state, wb.autosave), order=20))
register_dock(DockSpec("train", "Train segmentation", lambda wb: TrainPanel(wb.state),
                       tabify=True, order=30))  # fmt: skip


def launch(project_path: str | Path | None = None) -> int:
    """Open the workbench window (with ``project_path`` if given) and run until it closes.

    Returns
    -------
    int
        The exit status, 0.

    Raises
    ------
    CytoReviewError
        If ``project_path`` is given but cannot be opened (before any window shows).
    """
    import napari

    if project_path is not None:  # fail in the terminal, not in an empty window
        from cytoreview.workflows.projects import open_project

        open_project(project_path).close()
    viewer = napari.Viewer(title=WINDOW_TITLE)
    workbench = build_workbench(viewer, project_path)
    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(workbench.close)
    napari.run()
    workbench.close()
    return 0
