"""The mask palette and the painting toolbar (label, tool, brush, undo) bound to a Labels layer.

The toolbar mirrors napari's own layer controls in larger, labelled buttons and keeps both in
step: a key pressed on the canvas (``2`` for the brush, ``]`` for a larger one) updates the
buttons, a button updates the layer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap
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

from cytoreview.data.overlays import LABEL_COLOURS
from cytoreview.gui.help_texts import TOOLTIPS
from cytoreview.types import BACKGROUND, CYTOPLASM, NUCLEUS

#: napari Labels modes offered, with their button text and tooltip key.
MODES: tuple[tuple[str, str, str], ...] = (
    ("paint", "Brush", "mode_paint"),
    ("fill", "Fill", "mode_fill"),
    ("polygon", "Polygon", "mode_polygon"),
    ("erase", "Erase", "mode_erase"),
    ("pan_zoom", "Pan", "mode_pan"),
)
LABELS: tuple[tuple[int, str, str], ...] = (
    (CYTOPLASM, "Cytoplasm", "label_cytoplasm"),
    (NUCLEUS, "Nucleus", "label_nucleus"),
    (BACKGROUND, "Eraser", "label_eraser"),
)


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


class PaintToolbar(QWidget):
    """Label, tool, brush size, undo and redo for the mask layer it is attached to."""

    def __init__(
        self, undo: Callable[[], Any], redo: Callable[[], Any], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.layer: Labels | None = None
        self._connected: Labels | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        labels_box = QGroupBox("Label")
        row = QHBoxLayout(labels_box)
        self.label_buttons = QButtonGroup(self)
        for value, text, tip in LABELS:
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
        for i, (mode, text, tip) in enumerate(MODES):
            button = QPushButton(text)
            button.setCheckable(True)
            button.setToolTip(TOOLTIPS[tip])
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
        self.undo_button.clicked.connect(undo)
        self.redo_button = QPushButton("Redo")
        self.redo_button.setToolTip(TOOLTIPS["redo"])
        self.redo_button.clicked.connect(redo)
        grid.addWidget(self.undo_button, 1, 3)
        grid.addWidget(self.redo_button, 1, 4)
        layout.addWidget(tools_box)

    def attach(self, layer: Labels | None) -> None:
        """Control ``layer`` (None: nothing to control, the buttons are disabled)."""
        self.layer = layer
        self.setEnabled(layer is not None)
        if layer is None:
            return
        if layer is not self._connected:  # the panel reuses its layer from image to image
            layer.events.selected_label.connect(self._on_selected_label)
            layer.events.mode.connect(self._on_mode)
            layer.events.brush_size.connect(self._on_brush_layer)
            self._connected = layer
        self._on_selected_label()
        self._on_mode()
        self._on_brush_layer()

    def set_label(self, value: int) -> None:
        """Paint with label ``value`` (0 background, 1 cytoplasm, 2 nucleus)."""
        if self.layer is not None:
            self.layer.selected_label = int(value)
            if value != BACKGROUND and str(self.layer.mode) == "erase":
                self.layer.mode = "paint"

    def set_mode(self, mode: str) -> None:
        """Switch napari's Labels mode: paint, fill, polygon, erase or pan_zoom."""
        if self.layer is not None:
            self.layer.mode = mode

    # -- layer -> widgets ----------------------------------------------------------------------
    def _on_selected_label(self, event: Any = None) -> None:
        layer = self.layer
        if layer is None:
            return
        if layer.selected_label > NUCLEUS:  # only 0/1/2 are mask values ("+" stops at 2)
            layer.selected_label = NUCLEUS
            return
        button = self.label_buttons.button(int(layer.selected_label))
        if button is not None:
            button.setChecked(True)

    def _on_mode(self, event: Any = None) -> None:
        if self.layer is not None:
            button = self.mode_buttons.get(str(self.layer.mode))
            if button is not None:
                button.setChecked(True)

    def _on_brush_layer(self, event: Any = None) -> None:
        if self.layer is not None:
            self.brush.blockSignals(True)
            self.brush.setValue(int(self.layer.brush_size))
            self.brush.blockSignals(False)

    def _on_brush_spin(self, value: int) -> None:
        if self.layer is not None:
            self.layer.brush_size = value
