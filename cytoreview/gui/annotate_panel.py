"""The annotate panel: paint an image's mask in napari, with helpers, a live readout, approval.

Opening an image replaces two layers: ``image`` (RGB) and ``mask`` (a Labels layer with the
fixed palette: 1 cytoplasm, 2 nucleus, 0 background/eraser). Every finished stroke (napari's
``paint`` event, also sent by fill, polygon and the helper buttons) updates the readout and
schedules an autosave; undo and redo do the same.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QButtonGroup,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from cytoreview.data import mask_tools
from cytoreview.data.overlays import LABEL_COLOURS
from cytoreview.errors import CytoReviewError
from cytoreview.gui.autosave import Autosave, edit_provenance
from cytoreview.gui.help_texts import PANEL_HELP, TOOLTIPS
from cytoreview.gui.shortcuts import bind_layer_keys
from cytoreview.gui.state import WorkbenchState
from cytoreview.storage.records import MaskVersion
from cytoreview.types import BACKGROUND, CYTOPLASM, NUCLEUS, Provenance

log = logging.getLogger(__name__)

IMAGE_LAYER = "image"
MASK_LAYER = "mask"
#: Opacity of the mask over the image: the stain stays readable under the colour.
MASK_OPACITY = 0.45
_MODES = (("paint", "Brush"), ("fill", "Fill"), ("polygon", "Polygon"), ("erase", "Erase"),
          ("pan_zoom", "Pan"))  # fmt: skip
_MODE_TIPS = {"paint": "mode_paint", "fill": "mode_fill", "polygon": "mode_polygon",
              "erase": "mode_erase", "pan_zoom": "mode_pan"}  # fmt: skip


def mask_colormap() -> DirectLabelColormap:
    """The fixed mask palette (the colours of overlays and exports); 0 is transparent."""
    colours: dict[int | None, tuple[float, ...]] = {None: (0, 0, 0, 0), BACKGROUND: (0, 0, 0, 0)}
    for label, rgb in LABEL_COLOURS.items():
        colours[label] = (*(c / 255 for c in rgb), 1.0)
    return DirectLabelColormap(color_dict=colours)


def _swatch(label: int) -> QIcon:
    pixmap = QPixmap(14, 14)
    rgb = LABEL_COLOURS.get(label)
    pixmap.fill(QColor(*rgb) if rgb else QColor(255, 255, 255))
    return QIcon(pixmap)


def format_measure(measure: dict[str, float]) -> str:
    """The readout line: areas in pixels and the N:C ratio."""
    ratio = measure["nc_ratio"]
    nc = "—" if np.isnan(ratio) else f"{ratio:.2f}"
    return (
        f"Nucleus {int(measure['nucleus_area']):,} px   Cytoplasm "
        f"{int(measure['cytoplasm_area']):,} px   N:C {nc}"
    )


class AnnotatePanel(QWidget):
    """Paint, correct and approve the mask of the open image."""

    def __init__(
        self, viewer: Any, state: WorkbenchState, autosave: Autosave, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.state = state
        self.autosave = autosave
        self.image_id: int | None = None
        self.image_layer: Image | None = None
        self.labels_layer: Labels | None = None
        self._provenance = Provenance.MANUAL  # what an edit of this image is saved as
        self._version: MaskVersion | None = None  # the newest saved version shown
        self._baseline: np.ndarray | None = None  # the pixels last saved
        self._build()
        self._set_enabled(False)
        state.image_opened.connect(self.open_image)
        state.project_changed.connect(self._on_project_changed)
        state.masks_changed.connect(self._on_masks_changed)
        autosave.saved.connect(self._on_saved)
        autosave.failed.connect(self._on_save_failed)

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        intro = QLabel(PANEL_HELP["annotate"])
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.title = QLabel("No image open: double-click one in the project table")
        self.title.setWordWrap(True)
        self.title.setStyleSheet("font-weight: bold")
        layout.addWidget(self.title)

        labels_box = QGroupBox("Label")
        row = QHBoxLayout(labels_box)
        self.label_buttons = QButtonGroup(self)
        for value, text, tip in ((CYTOPLASM, "Cytoplasm", "label_cytoplasm"),
                                 (NUCLEUS, "Nucleus", "label_nucleus"),
                                 (BACKGROUND, "Eraser", "label_eraser")):  # fmt: skip
            button = QPushButton(_swatch(value), text)
            button.setCheckable(True)
            button.setToolTip(TOOLTIPS[tip])
            self.label_buttons.addButton(button, value)
            row.addWidget(button)
        self.label_buttons.idClicked.connect(self.set_label)
        layout.addWidget(labels_box)

        tools_box = QGroupBox("Tool")
        grid = QGridLayout(tools_box)
        self.mode_buttons: dict[str, QPushButton] = {}
        self._mode_group = QButtonGroup(self)
        for i, (mode, text) in enumerate(_MODES):
            button = QPushButton(text)
            button.setCheckable(True)
            button.setToolTip(TOOLTIPS[_MODE_TIPS[mode]])
            button.clicked.connect(lambda _=False, m=mode: self.set_mode(m))
            self._mode_group.addButton(button)
            self.mode_buttons[mode] = button
            grid.addWidget(button, 0, i)
        grid.addWidget(QLabel("Brush"), 1, 0)
        self.brush = QSpinBox()
        self.brush.setRange(1, 200)
        self.brush.setValue(10)
        self.brush.setSuffix(" px")
        self.brush.setToolTip(TOOLTIPS["brush_size"])
        self.brush.valueChanged.connect(self._on_brush_spin)
        grid.addWidget(self.brush, 1, 1, 1, 2)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setToolTip(TOOLTIPS["undo"])
        self.undo_button.clicked.connect(self.undo)
        self.redo_button = QPushButton("Redo")
        self.redo_button.setToolTip(TOOLTIPS["redo"])
        self.redo_button.clicked.connect(self.redo)
        grid.addWidget(self.undo_button, 1, 3)
        grid.addWidget(self.redo_button, 1, 4)
        layout.addWidget(tools_box)

        helpers_box = QGroupBox("Helpers")
        helpers = QGridLayout(helpers_box)
        self.tool_buttons: dict[str, QPushButton] = {}
        for i, (name, text) in enumerate((("initial", "Initial mask (Otsu)"),
                                          ("grabcut", "Refine (GrabCut)"),
                                          ("fill_holes", "Fill holes"),
                                          ("repair", "Nucleus inside cell"))):  # fmt: skip
            button = QPushButton(text)
            button.setToolTip(TOOLTIPS[f"tool_{name}"])
            button.clicked.connect(lambda _=False, n=name: self.apply_tool(n))
            self.tool_buttons[name] = button
            helpers.addWidget(button, i // 2, i % 2)
        layout.addWidget(helpers_box)

        self.readout = QLabel(format_measure(mask_tools.quick_measure(np.zeros((1, 1)))))
        self.readout.setToolTip(TOOLTIPS["measure"])
        self.readout.setStyleSheet("font-size: 13px")
        layout.addWidget(self.readout)

        self.approve_button = QPushButton("Approve mask")
        self.approve_button.setToolTip(TOOLTIPS["approve"])
        self.approve_button.setMinimumHeight(32)
        self.approve_button.clicked.connect(self.approve)
        layout.addWidget(self.approve_button)
        self.save_status = QLabel("")
        self.save_status.setWordWrap(True)
        layout.addWidget(self.save_status)
        layout.addStretch(1)

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (*self.label_buttons.buttons(), *self.mode_buttons.values(), self.brush,
                       self.undo_button, self.redo_button, *self.tool_buttons.values(),
                       self.approve_button):  # fmt: skip
            widget.setEnabled(enabled)

    # -- opening -------------------------------------------------------------------------------
    def open_image(self, image_id: int) -> None:
        """Show image ``image_id`` with its newest mask (pending edits are saved first)."""
        project = self.state.require_project()
        self.autosave.flush()
        try:
            record = project.image(int(image_id))
            rgb = project.load_image(record).rgb
            found = project.current_mask(record.id)
        except (CytoReviewError, OSError) as exc:
            self.state.message.emit("error", f"cannot open image {image_id}: {exc}")
            return
        mask = (
            found[1].copy()
            if found is not None
            else np.zeros((record.height, record.width), np.uint8)
        )
        self.image_id = record.id
        self._version = found[0] if found is not None else None
        self._provenance = edit_provenance(project.mask_versions(record.id))
        self._baseline = mask.copy()
        self._replace_layers(rgb, mask, record.name)
        self._set_enabled(True)
        status = "no mask yet" if self._version is None else self._describe(self._version)
        self.title.setText(f"{record.name} ({record.class_label or 'no class'}): {status}")
        self.save_status.setText(f"edits are saved as {self._provenance.value}")
        self._update_readout()

    def _replace_layers(self, rgb: np.ndarray, mask: np.ndarray, name: str) -> None:
        old = self.labels_layer
        settings = {"brush_size": 10, "selected_label": CYTOPLASM, "mode": "paint"}
        if old is not None:
            settings = {"brush_size": old.brush_size, "selected_label": old.selected_label,
                        "mode": str(old.mode)}  # fmt: skip
        for layer_name in (MASK_LAYER, IMAGE_LAYER):
            if layer_name in self.viewer.layers:
                self.viewer.layers.remove(layer_name)
        self.image_layer = self.viewer.add_image(rgb, name=IMAGE_LAYER, rgb=True)
        self.image_layer.metadata["image_name"] = name
        # A fresh layer per image: napari's undo history must never replay onto another image.
        labels = self.viewer.add_labels(
            mask, name=MASK_LAYER, colormap=mask_colormap(), opacity=MASK_OPACITY
        )
        labels.brush_size = settings["brush_size"]
        labels.selected_label = settings["selected_label"]
        labels.mode = settings["mode"]
        labels.events.paint.connect(self._on_paint)
        labels.events.selected_label.connect(self._on_selected_label)
        labels.events.mode.connect(self._on_mode)
        labels.events.brush_size.connect(self._on_brush_layer)
        bind_layer_keys(labels, self._layer_actions())
        self.labels_layer = labels
        self.viewer.layers.selection.active = labels
        self.viewer.reset_view()
        self._on_selected_label()
        self._on_mode()
        self._on_brush_layer()

    def _layer_actions(self) -> dict[str, Callable[[], Any]]:
        return {"label_cytoplasm": lambda: self.set_label(CYTOPLASM),
                "label_nucleus": lambda: self.set_label(NUCLEUS),
                "undo": self.undo, "redo": self.redo}  # fmt: skip

    @staticmethod
    def _describe(version: MaskVersion) -> str:
        return f"v{version.version} {version.provenance.value} by {version.author}"

    # -- editing -------------------------------------------------------------------------------
    def set_label(self, value: int) -> None:
        """Paint with label ``value`` (0 background, 1 cytoplasm, 2 nucleus)."""
        if self.labels_layer is not None:
            self.labels_layer.selected_label = int(value)
            if value != BACKGROUND and str(self.labels_layer.mode) == "erase":
                self.labels_layer.mode = "paint"

    def set_mode(self, mode: str) -> None:
        """Napari's Labels mode: ``paint``, ``fill``, ``polygon``, ``erase`` or ``pan_zoom``."""
        if self.labels_layer is not None:
            self.labels_layer.mode = mode

    def undo(self) -> None:
        """Undo the last stroke of this image (and schedule a save)."""
        if self.labels_layer is not None:
            self.labels_layer.undo()
            self._on_paint()

    def redo(self) -> None:
        """Redo the last undone stroke (and schedule a save)."""
        if self.labels_layer is not None:
            self.labels_layer.redo()
            self._on_paint()

    def apply_tool(self, name: str) -> None:
        """Run a helper of :mod:`cytoreview.data.mask_tools` on the mask, as one undoable edit.

        ``initial`` (Otsu first guess), ``grabcut`` (refine), ``fill_holes`` or ``repair``
        (nucleus inside cytoplasm).
        """
        if self.labels_layer is None or self.image_layer is None:
            return
        current = np.asarray(self.labels_layer.data)
        rgb = np.asarray(self.image_layer.data)
        tools: dict[str, Callable[[], np.ndarray]] = {
            "initial": lambda: mask_tools.initial_mask_otsu(rgb),
            "grabcut": lambda: mask_tools.refine_grabcut(rgb, current),
            "fill_holes": lambda: mask_tools.fill_holes(current),
            "repair": lambda: mask_tools.nucleus_inside_cytoplasm(current),
        }
        result = tools[name]()
        changed = np.nonzero(result != current)
        if changed[0].size == 0:
            self.state.message.emit("info", f"{name}: the mask is unchanged")
            return
        # data_setitem records one undo step and sends napari's paint event (-> autosave).
        self.labels_layer.data_setitem(changed, result[changed])

    def _on_paint(self, event: Any = None) -> None:
        if self.labels_layer is None or self.image_id is None:
            return
        # The image id is taken now, with this image's own array: a save that fires after
        # another image opened still writes these pixels to this image.
        self.autosave.mark_dirty(
            self.image_id, self.labels_layer.data, self._provenance, self._baseline
        )
        self._update_readout()

    def _update_readout(self) -> None:
        if self.labels_layer is not None:
            self.readout.setText(format_measure(mask_tools.quick_measure(self.labels_layer.data)))

    # -- approval and saving -------------------------------------------------------------------
    def approve(self) -> MaskVersion | None:
        """Save the mask as it is now as ``approved`` (pending edits are saved first)."""
        if self.labels_layer is None or self.image_id is None:
            return None
        project = self.state.require_project()
        self.autosave.flush()
        versions = project.mask_versions(self.image_id)
        if versions and versions[-1].provenance is Provenance.APPROVED:
            self.save_status.setText("already approved; nothing changed since")
            return versions[-1]
        mask = np.asarray(self.labels_layer.data)
        try:
            version = project.save_mask(self.image_id, mask, Provenance.APPROVED,
                                        actor=self.state.actor)  # fmt: skip
        except (CytoReviewError, ValueError, OSError) as exc:
            self.state.message.emit("error", f"approval failed: {exc}")
            return None
        self._on_saved(self.image_id, version)
        if not mask.any():
            self.state.message.emit("warning", "an empty mask was approved (no cell on it)")
        return version

    def _on_saved(self, image_id: int, version: object) -> None:
        assert isinstance(version, MaskVersion)
        if image_id == self.image_id and self.labels_layer is not None:
            self._version = version
            self._baseline = np.array(self.labels_layer.data, copy=True)
            self.title.setText(self.title.text().split(":")[0] + ": " + self._describe(version))
            self.save_status.setText(f"saved v{version.version} ({version.provenance.value})")
        self.state.notify_masks_changed([image_id])

    def _on_save_failed(self, image_id: int, reason: str) -> None:
        self.save_status.setText(f"NOT saved: {reason}")
        self.state.message.emit("error", f"mask of image {image_id} not saved: {reason}")

    def _on_masks_changed(self, image_ids: object) -> None:
        """Show a mask written by someone else (auto-segmentation) if nothing is being edited."""
        project = self.state.project
        if project is None or self.image_id is None:
            return
        if image_ids is not None and self.image_id not in image_ids:  # type: ignore[operator]
            return
        if self.autosave.is_pending(self.image_id):
            return
        versions = project.mask_versions(self.image_id)
        newest = versions[-1].id if versions else None
        if newest != (self._version.id if self._version else None):
            self.open_image(self.image_id)

    def _on_project_changed(self, project: object) -> None:
        for layer_name in (MASK_LAYER, IMAGE_LAYER):
            if layer_name in self.viewer.layers:
                self.viewer.layers.remove(layer_name)
        self.image_layer = self.labels_layer = None
        self.image_id = self._version = self._baseline = None
        self._set_enabled(False)
        self.title.setText("No image open: double-click one in the project table")
        self.save_status.setText("")

    # -- layer -> widgets ----------------------------------------------------------------------
    def _on_selected_label(self, event: Any = None) -> None:
        layer = self.labels_layer
        if layer is None:
            return
        if layer.selected_label > NUCLEUS:  # only 0/1/2 are valid mask values
            layer.selected_label = NUCLEUS
            return
        button = self.label_buttons.button(int(layer.selected_label))
        if button is not None:
            button.setChecked(True)

    def _on_mode(self, event: Any = None) -> None:
        if self.labels_layer is not None:
            button = self.mode_buttons.get(str(self.labels_layer.mode))
            if button is not None:
                button.setChecked(True)

    def _on_brush_layer(self, event: Any = None) -> None:
        if self.labels_layer is not None:
            self.brush.blockSignals(True)
            self.brush.setValue(int(self.labels_layer.brush_size))
            self.brush.blockSignals(False)

    def _on_brush_spin(self, value: int) -> None:
        if self.labels_layer is not None:
            self.labels_layer.brush_size = value

    def hideEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        """Closing (hiding) the panel saves pending edits."""
        self.autosave.flush()
        super().hideEvent(event)

    def keyPressEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        """Ctrl+Z / Ctrl+Shift+Z also work while the panel has the focus."""
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier and event.key() == Qt.Key.Key_Z:
            if event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
                self.redo()
            else:
                self.undo()
            return
        super().keyPressEvent(event)
