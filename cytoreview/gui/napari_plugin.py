"""CytoReview as a napari plugin (npe2): the docks, a project and slide reader, sample data.

``cytoreview/napari.yaml`` names what is here. In a plain napari viewer the docks open one at a
time, in any order, from the Plugins menu; they must still work on one open project. So each
viewer gets one :class:`~cytoreview.gui.app.Workbench` (state, autosave, close handling), made
by the first dock opened and found by the next ones (:func:`~cytoreview.gui.app.workbench_of`);
the panels themselves are the workbench's (``DockSpec.factory``), built once per viewer. A dock
closed and opened again shows the same panel, so its shortcuts and hooks are never doubled.

In ``cytoreview gui`` the full workbench is registered on its viewer too: a dock picked from
the Plugins menu there moves that panel into the plugin's dock, never builds a second one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from qtpy.compat import isalive
from qtpy.QtWidgets import QScrollArea, QWidget

from cytoreview.gui.app import Workbench, build_panel, dock_spec, new_workbench, workbench_of
from cytoreview.gui.shortcuts import install_window_shortcuts

#: The plugin's name in napari (``name`` in napari.yaml, the entry point's name).
PLUGIN_NAME = "cytoreview"

# What a reader returns to claim a path without adding a layer (npe2's reader contract).
_NO_LAYER: list[tuple[Any, ...]] = [(None,)]


def viewer_workbench(viewer: Any) -> Workbench:
    """The workbench of ``viewer``, made (with no docks) if the viewer has none yet."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # napari hands plugins a proxy
    workbench = workbench_of(viewer)
    if workbench is None:
        workbench = new_workbench(viewer)
        workbench.open_dock = lambda key: open_dock(viewer, key)
    return workbench


def open_dock(viewer: Any, key: str) -> QWidget:
    """Open CytoReview's dock ``key`` on ``viewer`` through napari (as the Plugins menu does).

    Returns
    -------
    QWidget
        The panel (``workbench.panels[key]``).
    """
    viewer = getattr(viewer, "__wrapped__", viewer)
    workbench = viewer_workbench(viewer)
    dock, _ = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, dock_spec(key).title)
    dock.show()  # napari returns a dock that is there as it is, hidden or not
    dock.raise_()
    return workbench.panels[key]


class CytoReviewDock(QScrollArea):
    """One CytoReview panel as a napari dock widget; subclasses name the panel (``key``).

    napari builds the class with the viewer (``napari_viewer``). The panel scrolls, as in the
    workbench, so that a small screen never cuts widgets off.
    """

    key: ClassVar[str]

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        viewer = getattr(napari_viewer, "__wrapped__", napari_viewer)
        self.workbench = workbench = viewer_workbench(viewer)
        spec = dock_spec(self.key)
        for need in spec.needs:  # e.g. Teach shows its cases through the Review dock's heatmap
            if not _alive(workbench.panels.get(need)):
                workbench.show_dock(need)
        panel = workbench.panels.get(self.key)
        if _alive(panel):  # closed and opened again, or docked by the full workbench
            old = workbench.docks.pop(self.key, None)
            if old is not None and isalive(old):
                viewer.window.remove_dock_widget(old)
        else:
            panel = build_panel(workbench, spec)
            _install_shortcuts(workbench, self.key)
            _catch_up(workbench)
        self.setWidgetResizable(True)
        self.setWidget(panel)
        self.setObjectName(panel.objectName())
        # napari un-parents a closed dock's widget and forgets it: the workbench keeps this one
        # (and so the panel, its child) for the next time the dock opens.
        workbench.__dict__.setdefault("plugin_docks", {})[self.key] = self


def _alive(widget: QWidget | None) -> bool:
    return widget is not None and isalive(widget)


def _catch_up(workbench: Workbench) -> None:
    """Tell every panel again which project and image are open, for a panel built just now.

    Panels learn them from the state's signals only; a dock opened after the project would
    stay empty. This is what opening the same project again tells them, so it runs only when
    no mask edit is waiting (the autosave forgets pending edits on a project change).
    """
    state = workbench.state
    if state.project is None:
        return
    workbench.autosave.flush()
    if workbench.autosave.is_pending():
        state.message.emit("warning", "mask edits wait to be saved: reopen the image to see it")
        return
    image_id = state.current_image_id
    state.project_changed.emit(state.project)
    if image_id is not None:
        state.open_image(image_id)


def _install_shortcuts(workbench: Workbench, key: str) -> None:
    """The window's image keys, once their panel exists (the workbench installs them at once)."""
    panel: Any = workbench.panels[key]
    if key == "project":
        actions = {"next_image": panel.next_image, "previous_image": panel.previous_image}
    elif key == "annotate":
        actions = {"approve": panel.approve}
    else:
        return
    install_window_shortcuts(workbench.window, actions)


class ProjectDock(CytoReviewDock):
    """The Project dock: open or create a project, import, the image table."""

    key = "project"


class AnnotateDock(CytoReviewDock):
    """The Annotate dock: paint and approve masks."""

    key = "annotate"


class TrainDock(CytoReviewDock):
    """The Train segmentation dock."""

    key = "train"


class ClassifierDock(CytoReviewDock):
    """The Classifier dock."""

    key = "classifier"


class ReviewDock(CytoReviewDock):
    """The Review dock: the queue of predictions to confirm or correct."""

    key = "review"


class TeachDock(CytoReviewDock):
    """The Teach dock: blind cases for training people."""

    key = "teach"


class ExportDock(CytoReviewDock):
    """The Export dock."""

    key = "export"


class SlidesDock(CytoReviewDock):
    """The Slides dock: whole-slide images, cells cut from them, slide segmentation."""

    key = "slides"


class KeysDock(CytoReviewDock):
    """The Keys dock: every keyboard shortcut."""

    key = "help"


# -- readers ---------------------------------------------------------------------------------
def get_project_reader(path: str | list[str]) -> Any:
    """npe2 reader: a CytoReview project folder opens in the viewer's CytoReview docks.

    Returns the reader function, or None when ``path`` is not one project folder.
    """
    from cytoreview.workflows.projects import is_project_folder

    if not isinstance(path, str) or not is_project_folder(path):
        return None
    return read_project


def read_project(path: str | list[str]) -> list[tuple[Any, ...]]:
    """Open the project in the current viewer's CytoReview state and show the Project dock.

    A reader gets no viewer: napari's current one is the one that asked. The images show in
    the Annotate dock, as in the workbench; the reader adds no layer of its own.

    Raises
    ------
    CytoReviewError
        If the folder cannot be opened as a project (one line).
    """
    import napari

    viewer = napari.current_viewer()
    if viewer is None:
        raise RuntimeError("a CytoReview project opens in a napari window; none is open")
    workbench = viewer_workbench(viewer)
    open_dock(viewer, "project")
    workbench.state.open_project(str(path))  # the open docks follow through the state's signals
    return _NO_LAYER


def get_slide_reader(path: str | list[str]) -> Any:
    """npe2 reader: a whole-slide image (pyramid TIFF, SVS, NDPI, OME-Zarr...), multiscale.

    Returns the reader function, or None for anything else: an ordinary TIFF is left to
    napari's own reader.
    """
    from cytoreview.storage.slides import is_slide_file

    if not isinstance(path, str) or not is_slide_file(path):
        return None
    return read_slide


def read_slide(path: str | list[str]) -> list[tuple[Any, ...]]:
    """The slide's levels as lazy dask arrays (tiles are read only when napari shows them)."""
    from cytoreview.workflows.slides import open_slide_file

    view = open_slide_file(str(path))
    if view is None:
        return _NO_LAYER
    meta = {"cytoreview_slide_file": str(path), "pixel_size_um": view.pixel_size_um}
    name = Path(str(path)).name
    return [(view.levels, {"multiscale": True, "rgb": True, "name": name, "metadata": meta})]


# -- sample data -----------------------------------------------------------------------------
def sample_field() -> list[tuple[Any, ...]]:
    """A synthetic Pap field (512 px, five cells) and its exact mask: nothing is downloaded."""
    from cytoreview.data.synthetic import synth_field

    sample = synth_field(["NILM", "NILM", "LSIL", "HSIL", "NILM"], seed=0)
    return [
        (sample.image, {"name": "synthetic Pap field"}, "image"),
        (sample.mask, {"name": "synthetic Pap field mask", "opacity": 0.4}, "labels"),
    ]


def sample_project() -> list[tuple[Any, ...]]:
    """A small synthetic project (16 cells, seeds painted) in a new temporary folder.

    It opens in the current viewer's CytoReview docks; its first image is the layer that
    napari's sample menu needs (a sample must add one).
    """
    import napari

    from cytoreview.settings import current_user
    from cytoreview.workflows.demo import write_sample_project
    from cytoreview.workflows.projects import open_project

    jobs = write_sample_project(None, actor=current_user())
    while True:  # a few seconds: no progress to show
        try:
            next(jobs)
        except StopIteration as stop:
            folder: Path = stop.value
            break
    viewer = napari.current_viewer()
    if viewer is not None:
        read_project(str(folder))
    with open_project(folder) as project:
        first = project.images()[0]
        image = project.load_image(first).rgb
    return [(image, {"name": f"sample project: {first.name}"}, "image")]
