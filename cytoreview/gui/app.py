"""The workbench window: napari with CytoReview's docks, and the entry point ``launch``.

Docks come from a registry (:func:`register_dock`): each :class:`DockSpec` builds its widget
from the :class:`Workbench` (viewer, shared state, autosave, the other panels), so a later
panel (review, teaching, classifier) is one ``register_dock`` call away, with no change here.
"""

from __future__ import annotations

import gc
import logging
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from qtpy.compat import isalive
from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtGui import QIcon
from qtpy.QtWidgets import (
    QApplication,
    QDockWidget,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QWidget,
)

import cytoreview
from cytoreview import __version__
from cytoreview.gui.annotate_panel import AnnotatePanel
from cytoreview.gui.autosave import DEFAULT_DELAY_MS, DEFAULT_MAX_WAIT_MS, Autosave
from cytoreview.gui.classifier_panel import ClassifierPanel
from cytoreview.gui.export_panel import ExportPanel
from cytoreview.gui.help_panel import HelpPanel
from cytoreview.gui.project_panel import ProjectPanel
from cytoreview.gui.review_panel import ReviewPanel
from cytoreview.gui.shortcuts import (
    REVIEW_SHORTCUTS,
    TEACH_ANSWER_KEYS,
    TEACH_SHORTCUTS,
    install_window_shortcuts,
)
from cytoreview.gui.slide_panel import SlidePanel
from cytoreview.gui.state import WorkbenchState
from cytoreview.gui.teach_panel import TeachPanel
from cytoreview.gui.throttle import call_soon
from cytoreview.gui.train_panel import TrainPanel
from cytoreview.workflows.executors import ExecutorSpec

log = logging.getLogger(__name__)

WINDOW_TITLE = f"CytoReview {__version__}"
#: Where the application icon may be: the source folder's resources/ (a checkout, an editable
#: install), then where an installer puts the desktop entry's icon (under the environment).
ICON_CANDIDATES = (
    Path(cytoreview.__file__).resolve().parents[1] / "resources" / "cytoreview.svg",
    Path(sys.prefix) / "share" / "icons" / "hicolor" / "scalable" / "apps" / "cytoreview.svg",
    Path(sys.prefix) / "share" / "icons" / "hicolor" / "256x256" / "apps" / "cytoreview.png",
)


def app_icon() -> QIcon:
    """CytoReview's icon (an empty icon, napari's then shows, when none is installed)."""
    for path in ICON_CANDIDATES:
        if path.is_file():
            return QIcon(str(path))
    log.debug("no application icon found in %s", [str(p) for p in ICON_CANDIDATES])
    return QIcon()


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
    stretch
        Share of the area's height: among its untabbed docks; for a dock of a tab group,
        the group's share while that dock is the tab in front (the review queue gets more
        room than the annotate tools, the project table less).
    needs
        Panels the factory uses as it builds this one (``wb.panels[key]``); as a napari
        plugin, opening this dock opens those first.
    """

    key: str
    title: str
    factory: Callable[[Workbench], QWidget]
    area: str = "right"
    tabify: bool = False
    order: int = 100
    scroll: bool = True
    stretch: int = 1
    needs: tuple[str, ...] = ()


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


def main_window(viewer: Any) -> QMainWindow | None:
    """The Qt main window of a napari viewer, or None once it is closed or deleted.

    napari (0.5-0.9) has no public accessor for it: this is the one place that reads the
    private ``Window._qt_window``, which napari deletes when the viewer closes; the Qt object
    itself goes later (the window deletes itself on close), hence the liveness check.
    """
    window = getattr(getattr(viewer, "window", None), "_qt_window", None)
    if window is None or not isalive(window):
        return None
    return cast(QMainWindow, window)


class WindowClosedError(RuntimeError):
    """The viewer's window is gone: there is nothing to build a workbench on."""


class Workbench:
    """The docks on one napari viewer and what they share."""

    def __init__(
        self, viewer: Any, state: WorkbenchState, autosave: Autosave, window: QMainWindow
    ) -> None:
        self.viewer = viewer
        # A weak reference: the Python side of napari's window holds its QtViewer, which must
        # go with the window (napari's leak check; a closed window is not kept alive by us).
        self._window = weakref.ref(window)
        self.state = state
        self.autosave = autosave
        self.panels: dict[str, QWidget] = {}
        self.docks: dict[str, Any] = {}
        #: Every message shown to the person, (level, text), oldest first.
        self.messages: list[tuple[str, str]] = []
        #: The dock whose tab came to the front last (Qt reports every tabbed dock visible).
        self.front_tab: str | None = None
        #: False until every dock is built and the project (if any) is open.
        self.ready = False
        #: Opens the dock ``key`` when it is not there (set by the napari plugin, whose docks
        #: napari opens one at a time); None: every dock is built up front.
        self.open_dock: Callable[[str], None] | None = None
        self._closed = False

    @property
    def window(self) -> QMainWindow:
        """The main window (read once from napari, so that nothing reads its private part).

        Raises
        ------
        WindowClosedError
            If the window is gone (check :attr:`closed` first where that can be).
        """
        window = self._window()
        if window is None or not isalive(window):
            raise WindowClosedError("the workbench window is closed")
        return window

    @property
    def closed(self) -> bool:
        """True once the window closed (or :meth:`close` ran), also in mid start-up."""
        window = self._window()
        return self._closed or window is None or not isalive(window)

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

    def dock_of(self, key: str) -> QDockWidget | None:
        """The dock of panel ``key``, None if it is not open (or was closed and deleted)."""
        dock: QWidget | None = self.docks.get(key)
        if dock is None:  # docked by napari (the plugin): the dock around the panel
            dock = self.panels.get(key)
            while dock is not None and isalive(dock) and not isinstance(dock, QDockWidget):
                dock = dock.parentWidget()
        return dock if isinstance(dock, QDockWidget) and isalive(dock) else None

    def show_dock(self, key: str) -> None:
        """Bring the dock ``key`` to the front, opening it first where it is not there."""
        dock = self.dock_of(key)
        if dock is not None:
            dock.show()
            dock.raise_()
        elif self.open_dock is not None:
            self.open_dock(key)

    def show_message(self, level: str, text: str) -> None:
        """Show a line in the status bar; warnings and errors also as napari notifications."""
        self.messages.append((level, text))
        log.log(logging.ERROR if level == "error" else logging.INFO, "%s", text)
        if self.closed:
            return
        self.viewer.status = text
        if level in ("warning", "error"):
            from napari.utils.notifications import show_error, show_warning

            (show_error if level == "error" else show_warning)(text)

    def on_annotate_visibility(self, visible: bool) -> None:
        """Save pending edits when the annotate dock goes out of sight."""
        if not visible and not self.closed:
            self.autosave.flush()

    def share_heights(self) -> None:
        """Split the side areas' height between their docks (see :attr:`DockSpec.stretch`)."""
        if not self.closed:
            _share_heights(self.window, self.docks, self.front_tab)

    def on_dock_shown(self, key: str) -> None:
        """A dock's tab came to the front: its group takes that dock's share of height."""
        self.front_tab = key
        if not self.closed:  # after Qt has switched the tab; the timer dies with the window
            call_soon(self.window, self.share_heights)

    def confirm_close(self) -> bool:
        """Save pending edits; if some cannot be saved, ask the person before closing.

        Returns
        -------
        bool
            False when the window must stay open (the person chose to keep the edits).
        """
        if self._closed:
            return True
        while True:
            self.autosave.flush()
            if not self.autosave.is_pending():
                return True
            choice = self.ask_unsaved(self.autosave.unsaved_lines())
            if choice == "discard":
                self.autosave.discard_all()
                return True
            if choice != "retry":
                return False

    def ask_unsaved(self, lines: list[str]) -> str:
        """Ask what to do with edits that could not be saved: ``retry``, ``discard`` or ``keep``.

        ``keep`` (the default, also Escape) keeps the window open with the edits queued.
        """
        box = QMessageBox(self.window)
        box.setIcon(QMessageBox.Icon.Warning)
        box.setWindowTitle("Unsaved mask edits")
        box.setText("These mask edits could not be saved:\n" + "\n".join(lines))
        box.setInformativeText(
            "Free disk space or fix the folder's permissions, then try again. "
            "Closing now loses them."
        )
        retry = box.addButton("Try again", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Close and lose them", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep the window open", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)
        box.exec()
        clicked = box.clickedButton()
        return "retry" if clicked is retry else "discard" if clicked is discard else "keep"

    def close(self) -> None:
        """Save pending edits, stop background jobs and close the project (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.autosave.flush()
        if self.autosave.is_pending():  # only when the close could not be refused (app quit)
            log.error("closing with unsaved mask edits: %s", self.autosave.unsaved_lines())
        self.autosave.discard_all()  # the person was asked where a window close allowed it
        self.state.close_project()
        self.autosave.shutdown()


class _CloseWatcher(QObject):
    """Runs the workbench's close when the main window gets its close event."""

    def __init__(self, workbench: Workbench, parent: QObject) -> None:
        super().__init__(parent)
        self._workbench = workbench

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        """Qt: save and stop before the window goes; edits that cannot be saved ask first."""
        if event.type() == QEvent.Type.Close:
            if not self._workbench.confirm_close():
                event.ignore()
                return True  # the window stays open, the edits stay queued
            self._workbench.close()
        return False


def _scrolled(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setWidget(widget)
    area.setObjectName(widget.objectName())
    return area


def _share_heights(window: Any, docks: dict[str, Any], front_tab: str | None = None) -> None:
    """Split each side area's height between its untabbed docks by their ``stretch``.

    Qt takes the sizes as pixels, so they are worked out from the height the docks have now.
    """
    by_area: dict[str, list[DockSpec]] = {}
    tabs: dict[str, list[DockSpec]] = {}
    for spec in registered_docks():
        if spec.key in docks:
            (tabs if spec.tabify else by_area).setdefault(spec.area, []).append(spec)
    for area, specs in by_area.items():
        if len(specs) < 2:
            continue
        # Tabs stack onto the area's last untabbed dock: that group's share is the front tab's.
        group = [specs[-1], *tabs.get(area, [])]
        front = next((g for g in group if g.key == front_tab), specs[-1])
        stretches = [spec.stretch for spec in specs[:-1]] + [front.stretch]
        widgets = [docks[spec.key] for spec in specs]
        total = sum(w.height() for w in widgets) or window.height()
        weights = sum(stretches)
        sizes = [max(1, total * stretch // weights) for stretch in stretches]
        window.resizeDocks(widgets, sizes, Qt.Orientation.Vertical)


def build_workbench(
    viewer: Any,
    project_path: str | Path | None = None,
    *,
    actor: str | None = None,
    autosave_delay_ms: int = DEFAULT_DELAY_MS,
    autosave_max_wait_ms: int = DEFAULT_MAX_WAIT_MS,
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
    autosave_max_wait_ms
        Longest an unsaved stroke waits while strokes keep coming.

    Returns
    -------
    Workbench
        Ready (``ready``), or, when the window was closed while it was being built, closed
        (``closed``) with whatever docks existed by then and no project open.

    Raises
    ------
    WindowClosedError
        If the viewer's window is already gone.
    CytoReviewError
        If ``project_path`` is not a project that can be opened.
    """
    workbench = new_workbench(
        viewer, actor=actor, autosave_delay_ms=autosave_delay_ms,
        autosave_max_wait_ms=autosave_max_wait_ms,
    )  # fmt: skip
    for spec in registered_docks():
        panel = build_panel(workbench, spec)
        if workbench.closed:  # closed while that panel was built: build nothing more
            return _abandoned(workbench)
        widget = _scrolled(panel) if spec.scroll else panel
        workbench.docks[spec.key] = viewer.window.add_dock_widget(
            widget, name=spec.title, area=spec.area, tabify=spec.tabify
        )
    # Leaving the annotate tab (or closing its dock) saves pending strokes at once.
    workbench.docks["annotate"].visibilityChanged.connect(workbench.on_annotate_visibility)
    for key, dock in workbench.docks.items():  # a tab brought to front takes its share
        dock.visibilityChanged.connect(
            lambda visible, key=key: visible and workbench.on_dock_shown(key)
        )
    # Dock sizes and tab bars exist only after a layout pass. This delivers every pending
    # event, a close of the window among them: everything after it checks for that.
    QApplication.processEvents()
    if workbench.closed:
        return _abandoned(workbench)
    window, state = workbench.window, workbench.state
    workbench.share_heights()
    # Once more when the event loop runs: a window shown or resized just now is laid out then.
    call_soon(window, workbench.share_heights)
    workbench.docks["annotate"].raise_()  # painting is the panel used most
    project_panel = workbench.project_panel
    install_window_shortcuts(
        window,
        {
            "next_image": project_panel.next_image,
            "previous_image": project_panel.previous_image,
            "approve": workbench.annotate_panel.approve,
        },
    )
    viewer.title = WINDOW_TITLE
    icon = app_icon()
    if not icon.isNull():
        window.setWindowIcon(icon)
    if project_path is not None:
        state.open_project(project_path)
        if workbench.closed:  # closed while the project opened: it must not stay open
            state.close_project()
            return _abandoned(workbench)
    workbench.ready = True
    return workbench


# The workbench of each viewer, so that a second front end on the same viewer (the napari
# plugin's docks) finds the state the first one made. Weak: a workbench lives as long as its
# window (its close watcher is the window's child), never longer because of this table.
_WORKBENCHES: weakref.WeakValueDictionary[int, Workbench] = weakref.WeakValueDictionary()


def workbench_of(viewer: Any) -> Workbench | None:
    """The open workbench on ``viewer`` (None if there is none, or it closed)."""
    workbench = _WORKBENCHES.get(id(viewer))
    if workbench is None or workbench.viewer is not viewer or workbench.closed:
        return None
    return workbench


def new_workbench(
    viewer: Any,
    *,
    actor: str | None = None,
    autosave_delay_ms: int = DEFAULT_DELAY_MS,
    autosave_max_wait_ms: int = DEFAULT_MAX_WAIT_MS,
) -> Workbench:
    """A workbench on ``viewer`` with its state and autosave, and no dock yet.

    Raises
    ------
    WindowClosedError
        If the viewer's window is already gone.
    """
    window = main_window(viewer)
    if window is None:
        raise WindowClosedError("the napari window was closed before the workbench was built")
    state = WorkbenchState(actor, parent=window)
    autosave = Autosave(state, autosave_delay_ms, autosave_max_wait_ms, parent=window)
    workbench = Workbench(viewer, state, autosave, window)
    # First of all: a close from now on (the person, or the app quitting) reaches the workbench,
    # which then saves, stops its jobs and closes the project, wherever start-up had got to.
    window.installEventFilter(_CloseWatcher(workbench, window))
    state.message.connect(workbench.show_message)
    _WORKBENCHES[id(viewer)] = workbench
    return workbench


def dock_spec(key: str) -> DockSpec:
    """The registered dock ``key``.

    Raises
    ------
    KeyError
        If no dock of that name is registered.
    """
    return _DOCKS[key]


def build_panel(workbench: Workbench, spec: DockSpec) -> QWidget:
    """Build the panel of ``spec`` on ``workbench`` (not docked: the caller docks it)."""
    panel = spec.factory(workbench)
    panel.setObjectName(f"cytoreview-{spec.key}")
    workbench.panels[spec.key] = panel
    return panel


def _abandoned(workbench: Workbench) -> Workbench:
    """Start-up stopped because the window closed: make sure the project is closed too."""
    log.info("the window closed during start-up; the workbench was not completed")
    workbench.close()
    return workbench


def _project_panel(wb: Workbench) -> QWidget:
    return ProjectPanel(wb.state)


def _annotate_panel(wb: Workbench) -> QWidget:
    return AnnotatePanel(wb.viewer, wb.state, wb.autosave)


# Panels reach the others through ``wb.panels`` when they act, not when they are built: as a
# napari plugin, docks open one at a time, in any order, and some never.
def _live_panel(wb: Workbench, key: str) -> Any:
    panel = wb.panels.get(key)
    return panel if panel is not None and isalive(panel) else None


def _train_panel(wb: Workbench) -> QWidget:
    def selection() -> list[int]:
        project = _live_panel(wb, "project")  # no table: no selection
        return project.selected_image_ids() if project is not None else []

    return TrainPanel(wb.state, selection=selection)


def _on_predictions(wb: Workbench) -> None:
    """New predictions: the table's columns and the review queue show them."""
    for key, slot in (("project", "refresh_rows"), ("review", "refresh")):
        panel = _live_panel(wb, key)
        if panel is not None:
            getattr(panel, slot)()


def _compute_setting(wb: Workbench) -> Callable[[], ExecutorSpec]:
    """Where batch jobs run: the Train dock's Compute field, read when a job starts.

    When that dock is not open (a napari plugin user may open one dock only), the defaults: the
    command line's rule.
    """

    def compute() -> ExecutorSpec:
        train = _live_panel(wb, "train")
        return train.compute_spec() if train is not None else ExecutorSpec()

    return compute


def _classifier_panel(wb: Workbench) -> QWidget:
    panel = ClassifierPanel(wb.state, compute=_compute_setting(wb))
    panel.predictions_changed.connect(lambda: _on_predictions(wb))
    return panel


def _review_panel(wb: Workbench) -> QWidget:
    panel = ReviewPanel(
        wb.viewer, wb.state, wb.autosave, show_annotate=lambda: wb.show_dock("annotate")
    )
    actions = {
        "review_accept": panel.accept,
        "review_edit": panel.edit,
        "review_skip": panel.skip,
        "toggle_heatmap": panel.toggle_heatmap,
    }
    panel.shortcuts = install_window_shortcuts(wb.window, actions, REVIEW_SHORTCUTS)
    return panel


def set_docks_hidden(wb: Workbench, hidden: bool, keep: tuple[str, ...]) -> None:
    """Hide every dock but ``keep`` (teaching mode), or bring back the ones hidden so."""
    store: dict[str, bool] = wb.__dict__.setdefault("_hidden_docks", {})
    if hidden:
        for key in list(wb.panels):
            dock = wb.dock_of(key)
            if dock is not None and key not in keep and key not in store:
                store[key] = dock.toggleViewAction().isChecked()  # open, even as a back tab
                dock.hide()
    else:
        for key, was_open in list(store.items()):
            dock = wb.dock_of(key)
            if was_open and dock is not None:
                dock.show()
        store.clear()


def _teach_panel(wb: Workbench) -> QWidget:
    review = cast(ReviewPanel, wb.panels["review"])
    panel = TeachPanel(
        wb.viewer,
        wb.state,
        review.heatmap,
        hide_others=lambda hidden: set_docks_hidden(wb, hidden, ("teach", "help")),
    )
    actions = {
        f"teach_answer_{i + 1}": (lambda i=i: panel.answer_index(i))  # type: ignore[misc]
        for i in range(TEACH_ANSWER_KEYS)
    }
    panel.answer_shortcuts = install_window_shortcuts(wb.window, actions, TEACH_SHORTCUTS)
    panel.next_shortcuts = install_window_shortcuts(
        wb.window, {"teach_next": panel.next}, TEACH_SHORTCUTS
    )
    panel.stop()  # the answer keys stay off until a case is shown blind
    return panel


def _export_panel(wb: Workbench) -> QWidget:
    return ExportPanel(wb.state)


def _slide_panel(wb: Workbench) -> QWidget:
    return SlidePanel(wb.viewer, wb.state, compute=_compute_setting(wb))


def _help_panel(wb: Workbench) -> QWidget:
    def folder() -> Path | None:  # the system check looks at the open project, if any
        project = wb.state.project
        return project.root if project is not None else None

    return HelpPanel(folder=folder)


# Heights (stretch): the project table shares the column with the tab group; a tab in front
# sets the group's share (review and classifier need room, annotate leaves it to the table).
_tab = {"tabify": True}
register_dock(DockSpec("project", "Project", _project_panel, order=10, stretch=6))
register_dock(DockSpec("annotate", "Annotate", _annotate_panel, order=20, stretch=5))
register_dock(DockSpec("train", "Train segmentation", _train_panel, order=30, stretch=8, **_tab))
register_dock(DockSpec("classifier", "Classifier", _classifier_panel, order=40, stretch=8, **_tab))
register_dock(DockSpec("review", "Review", _review_panel, order=50, stretch=9, **_tab))
register_dock(
    DockSpec("teach", "Teach", _teach_panel, order=60, stretch=5, needs=("review",), **_tab)
)
register_dock(DockSpec("export", "Export", _export_panel, order=65, stretch=8, **_tab))
register_dock(DockSpec("slides", "Slides", _slide_panel, order=67, stretch=8, **_tab))
register_dock(DockSpec("help", "Keys", _help_panel, order=70, stretch=6, **_tab))


def freeze_startup_heap() -> int:
    """Move every object alive now into the collector's permanent generation.

    napari, Qt, torch and matplotlib leave about 700,000 long-lived objects after start-up; a
    full (generation 2) collection walks all of them and holds the interpreter, and with it
    the window and any worker, for ~0.4 s (measured on the workbench). Frozen objects are not
    scanned again, so the full collections that a long session triggers stay short; objects
    created later are collected as usual.

    Returns
    -------
    int
        How many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def launch(project_path: str | Path | None = None, *, actor: str | None = None) -> int:
    """Open the workbench window (with ``project_path`` if given) and run until it closes.

    Parameters
    ----------
    project_path
        A project folder to open at once.
    actor
        Who is working, for the audit log (default: ``$CYTOREVIEW_USER`` or the login name).

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
    try:
        workbench = build_workbench(viewer, project_path, actor=actor)
    except WindowClosedError:
        _dispose(viewer)
        return 0
    if workbench.closed:  # the person closed the window before it was ready
        _dispose(viewer)
        return 0
    log.debug("%d start-up objects frozen", freeze_startup_heap())
    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(workbench.close)
    napari.run()
    workbench.close()
    return 0


def _dispose(viewer: Any) -> None:
    """Close what is left of a viewer whose window closed early, and delete its Qt objects.

    napari's own clean-up (``Viewer.close``) runs only if the window still exists; the
    deletions that the window's close scheduled run now, as the event loop never will.
    """
    if main_window(viewer) is not None:
        viewer.close()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
