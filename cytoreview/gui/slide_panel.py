"""The Slides dock: whole-slide images as multiscale layers, cut into cells, segmented.

A slide is shown as one napari image layer with a lazy array per level: napari reads only the
tiles of the level that fits the zoom, so a 100,000 px slide opens at once and the memory stays
bounded by what is on screen. The layer's coordinates are level-0 pixels; rectangles drawn on
the "regions" layer are cut into the project as ordinary images. Everything else goes through
:mod:`cytoreview.workflows.slides`, :mod:`cytoreview.workflows.cell_finder` and
:mod:`cytoreview.workflows.slide_segmentation`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from napari.layers import Shapes
from qtpy.QtWidgets import (
    QFileDialog,
    QGridLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cytoreview.defaults import PIXEL_SIZE_UM_RANGE
from cytoreview.errors import CytoReviewError
from cytoreview.gui.annotate_panel import MASK_OPACITY
from cytoreview.gui.paint_tools import mask_colormap
from cytoreview.gui.progress_widgets import SmoothProgressBar, StatusLabel
from cytoreview.gui.state import WorkbenchState
from cytoreview.gui.workers import JobRunner
from cytoreview.types import Progress
from cytoreview.workflows.executors import ExecutorSpec
from cytoreview.workflows.importing import ImportReport, import_images
from cytoreview.workflows.slides import (
    SlideSummary,
    SlideView,
    cut_regions,
    open_slide_view,
    set_slide_pixel_size,
    slide_segmentation_view,
    slide_summaries,
)

log = logging.getLogger(__name__)

_HELP = (
    "Whole-slide images (SVS, NDPI, MRXS, SCN, DICOM, OME-TIFF...) are sources: show one, draw "
    "rectangles on its 'regions' layer and cut them into the project, let the cell finder cut "
    "every cell, or segment the whole slide (empty glass is skipped; a stopped run resumes)."
)
#: File-dialog filter for slides.
SLIDE_FILTER = "Slides (*.svs *.ndpi *.mrxs *.scn *.dcm *.bif *.vms *.tif *.tiff);;All files (*)"


class SlidePanel(QWidget):
    """The slides of the open project and what can be done with them."""

    def __init__(
        self,
        viewer: Any,
        state: WorkbenchState,
        compute: Callable[[], ExecutorSpec] = ExecutorSpec,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.state = state
        #: Where the long jobs run: the workbench's Compute setting (the Train dock's field).
        self.compute = compute
        self.runner = JobRunner("slides", self)
        state.track_job(self.runner)
        self.views: dict[str, SlideView] = {}
        self._asked_pixel_size: set[str] = set()
        self._summaries: list[SlideSummary] = []
        self._build()
        self.runner.progress.connect(self._on_progress)
        self.runner.succeeded.connect(self._on_succeeded)
        self.runner.failed.connect(self._on_failed)
        self.runner.started.connect(self._update_buttons)
        self.runner.finished.connect(self._update_buttons)
        state.project_changed.connect(lambda _: self._on_project())
        state.images_changed.connect(self.refresh)
        state.add_before_close(self.close_views)
        self._on_project()

    # -- layout ----------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        intro = QLabel(_HELP)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.slide_list = QListWidget()
        self.slide_list.itemSelectionChanged.connect(self._update_buttons)
        self.slide_list.itemDoubleClicked.connect(lambda _: self.show_slide())
        layout.addWidget(self.slide_list)
        grid = QGridLayout()
        self.add_button = QPushButton("Add slide…")
        self.show_button = QPushButton("Show slide")
        self.cut_button = QPushButton("Cut drawn rectangles")
        self.find_button = QPushButton("Find and cut cells")
        self.segment_button = QPushButton("Segment slide")
        self.labels_button = QPushButton("Show segmentation")
        self.stop_button = QPushButton("Stop")
        self.add_button.clicked.connect(self._ask_add)
        self.show_button.clicked.connect(self.show_slide)
        self.cut_button.clicked.connect(self.cut_drawn)
        self.find_button.clicked.connect(self.find_cells)
        self.segment_button.clicked.connect(self.segment)
        self.labels_button.clicked.connect(self.show_segmentation)
        self.stop_button.clicked.connect(self.runner.cancel)
        buttons = [
            self.add_button, self.show_button, self.cut_button, self.find_button,
            self.segment_button, self.labels_button,
        ]  # fmt: skip
        for i, button in enumerate(buttons):  # two to a row: long labels are never clipped
            grid.addWidget(button, i // 2, i % 2)
        layout.addLayout(grid)
        self.status = StatusLabel()
        self.bar = SmoothProgressBar()
        self.bar.setVisible(False)
        layout.addWidget(self.status)
        layout.addWidget(self.bar)
        layout.addWidget(self.stop_button)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(500)
        layout.addWidget(self.log)

    # -- state -----------------------------------------------------------------------------------
    def _on_project(self) -> None:
        self.close_views()
        self._asked_pixel_size.clear()
        self.refresh()

    def refresh(self) -> None:
        """Re-read the project's slides into the list (keeping the selection by name)."""
        current = self.selected_name()
        self.slide_list.clear()
        project = self.state.project
        self._summaries = slide_summaries(project) if project is not None else []
        for s in self._summaries:
            size = f"{s.pixel_size_um:.3g} um/px" if s.pixel_size_um else "pixel size ?"
            gone = " — FILE MISSING" if not s.available else ""
            self.slide_list.addItem(
                f"{s.name}: {s.width} x {s.height} px, {s.levels} levels, {size}, "
                f"{s.crops} crop(s){gone}"
            )
        names = [s.name for s in self._summaries]
        if current in names:
            self.slide_list.setCurrentRow(names.index(current))
        elif names:
            self.slide_list.setCurrentRow(0)
        self._update_buttons()

    def selected_name(self) -> str | None:
        """The slide selected in the list."""
        row = self.slide_list.currentRow()
        return self._summaries[row].name if 0 <= row < len(self._summaries) else None

    def _update_buttons(self) -> None:
        has_project = self.state.project is not None
        name = self.selected_name()
        idle = not self.runner.is_running
        self.add_button.setEnabled(has_project and idle)
        for button in (self.show_button, self.find_button, self.segment_button):
            button.setEnabled(name is not None and idle)
        self.cut_button.setEnabled(name is not None and idle and name in self.views)
        self.labels_button.setEnabled(name is not None)
        self.stop_button.setEnabled(not idle)
        self.bar.setVisible(not idle)

    def close_views(self) -> None:
        """Remove the slide layers and release their files (project closing or changing)."""
        for name, view in list(self.views.items()):
            for layer in list(self.viewer.layers):
                if layer.metadata.get("cytoreview_slide") == name:
                    self.viewer.layers.remove(layer)
            view.close()
        self.views.clear()

    # -- actions ---------------------------------------------------------------------------------
    def _ask_add(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Add a slide", "", SLIDE_FILTER)
        if path:
            self.add_slide(Path(path))

    def add_slide(self, path: Path) -> bool:
        """Register a slide file (linked) in the background; False if busy or no project."""
        project = self.state.project
        if project is None or self.runner.is_running:
            return False
        actor = self.state.actor
        self.log.appendPlainText(f"registering {path} …")
        self.runner.start(lambda token: import_images(project, path, actor=actor, cancel=token))
        return True

    def show_slide(self, name: str | None = None) -> SlideView | None:
        """Show a slide as a multiscale layer (asking for its pixel size once if unknown)."""
        project = self.state.project
        name = name or self.selected_name()
        if project is None or name is None:
            return None
        if name in self.views:
            return self.views[name]
        self._ask_pixel_size(name)
        try:
            view = open_slide_view(project, name)
        except CytoReviewError as exc:
            self.state.message.emit("error", str(exc))
            return None
        self.views[name] = view
        meta = {"cytoreview_slide": name}
        self.viewer.add_image(
            view.levels, multiscale=True, rgb=True, name=f"slide {name}", metadata=meta
        )
        self.viewer.add_shapes(
            name=f"regions on {name}", metadata=meta, edge_color="yellow", face_color="transparent",
            edge_width=max(2.0, view.levels[0].shape[1] / 2000),
        )  # fmt: skip
        self.viewer.reset_view()
        size = f"{view.pixel_size_um:.3g} um/px" if view.pixel_size_um else "pixel size unknown"
        self.state.message.emit(
            "info", f"slide {name}: {len(view.levels)} levels, {size}; draw rectangles on "
            f"'regions on {name}' to cut them",
        )  # fmt: skip
        self._update_buttons()
        return view

    def _ask_pixel_size(self, name: str) -> None:
        summary = next((s for s in self._summaries if s.name == name), None)
        if summary is None or summary.pixel_size_um or name in self._asked_pixel_size:
            return
        self._asked_pixel_size.add(name)  # asked once: a person who cancels is not nagged
        low, high = PIXEL_SIZE_UM_RANGE
        value, ok = QInputDialog.getDouble(
            self, "Pixel size", f"The file of slide {name} does not say its pixel size.\n"
            "Micrometres per pixel at full resolution (e.g. 0.25 at 40x, 0.5 at 20x):",
            0.25, low, high, 4,
        )  # fmt: skip
        project = self.state.project
        if ok and project is not None:
            set_slide_pixel_size(project, name, value, actor=self.state.actor)
            self.refresh()

    def drawn_boxes(self, name: str) -> list[tuple[int, int, int, int]]:
        """The rectangles drawn on a slide's regions layer: ``(y, x, h, w)`` in level-0 px."""
        boxes = []
        for layer in self.viewer.layers:
            if layer.metadata.get("cytoreview_slide") != name or not isinstance(layer, Shapes):
                continue
            for corners in layer.data:
                lo = np.rint(np.min(corners, axis=0)[-2:]).astype(int)
                hi = np.rint(np.max(corners, axis=0)[-2:]).astype(int)
                boxes.append((int(lo[0]), int(lo[1]), int(hi[0] - lo[0]), int(hi[1] - lo[1])))
        return boxes

    def cut_drawn(self) -> list[Any]:
        """Cut the drawn rectangles of the selected slide into the project; clear them."""
        project, name = self.state.project, self.selected_name()
        if project is None or name is None:
            return []
        boxes = self.drawn_boxes(name)
        if not boxes:
            self.state.message.emit("warning", f"draw rectangles on 'regions on {name}' first")
            return []
        try:
            images = cut_regions(project, name, boxes, actor=self.state.actor)
        except CytoReviewError as exc:
            self.state.message.emit("error", str(exc))
            return []
        for layer in self.viewer.layers:
            if layer.metadata.get("cytoreview_slide") == name and isinstance(layer, Shapes):
                layer.data = []
        self.log.appendPlainText(f"{len(images)} region(s) of {name} cut into the project")
        self.state.notify_images_changed()
        return images

    def find_cells(self) -> bool:
        """Find the cells of the selected slide and cut each into the project (background)."""
        from cytoreview.workflows.cell_finder import find_cells

        project, name = self.state.project, self.selected_name()
        if project is None or name is None or self.runner.is_running:
            return False
        self._ask_pixel_size(name)
        actor, compute = self.state.actor, self.compute()
        self.log.appendPlainText(f"finding cells on {name} …")
        self.runner.start(
            lambda token: find_cells(project, name, actor=actor, compute=compute, cancel=token)
        )
        return True

    def segment(self) -> bool:
        """Segment the selected slide in the background (resuming a stopped run)."""
        from cytoreview.workflows.slide_segmentation import segment_slide

        project, name = self.state.project, self.selected_name()
        if project is None or name is None or self.runner.is_running:
            return False
        self._ask_pixel_size(name)
        actor, compute = self.state.actor, self.compute()
        self.log.appendPlainText(f"segmenting {name} …")
        self.runner.start(
            lambda token: segment_slide(project, name, actor=actor, compute=compute, cancel=token)
        )
        return True

    def show_segmentation(self) -> bool:
        """Show the selected slide's label pyramid over it (False when there is none yet)."""
        project, name = self.state.project, self.selected_name()
        if project is None or name is None:
            return False
        view = slide_segmentation_view(project, name)
        if view is None:
            self.state.message.emit("warning", f"slide {name} has not been segmented yet")
            return False
        if name not in self.views:
            self.show_slide(name)
        self.viewer.add_labels(
            view.levels, multiscale=True, name=f"segmentation of {name}", opacity=MASK_OPACITY,
            colormap=mask_colormap(),
            scale=(view.downsample, view.downsample), metadata={"cytoreview_slide": name},
        )  # fmt: skip
        return True

    # -- job events ------------------------------------------------------------------------------
    def _on_progress(self, event: Progress) -> None:
        self.bar.setRange(0, max(event.total, 1))
        self.bar.setValue(event.step)
        self.status.setText(event.message)
        if event.level == "warning" or event.step in (0, event.total):
            self.log.appendPlainText(event.message)

    def _on_succeeded(self, report: Any) -> None:
        summary = getattr(report, "summary", str(report))
        self.log.appendPlainText(summary)
        self.status.setText(summary)
        level = "warning" if getattr(report, "problems", None) else "info"
        self.state.message.emit(level, summary)
        if isinstance(report, ImportReport) or getattr(report, "cells_cut", None) is not None:
            self.state.notify_images_changed()
        self.refresh()

    def _on_failed(self, error: BaseException) -> None:
        self.log.appendPlainText(f"failed: {error}")
        self.state.message.emit("error", str(error))
