"""The annotate panel: paint an image's mask in napari, with helpers, a live readout, approval.

Opening an image replaces two layers: ``image`` (RGB) and ``mask`` (a Labels layer with the
fixed palette: 1 cytoplasm, 2 nucleus, 0 background/eraser). Every finished stroke (napari's
``paint`` event, also sent by fill, polygon and the helper buttons) updates the readout and
schedules an autosave; undo and redo do the same. An edit the autosave could not write stays
queued: the panel says so in one line naming the image and the reason, and shows the unsaved
pixels again when that image is opened again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cytoreview.data import mask_tools
from cytoreview.errors import CytoReviewError
from cytoreview.gui.autosave import Autosave
from cytoreview.gui.help_texts import INTRO_STYLE, PANEL_HELP, TOOLTIPS
from cytoreview.gui.paint_tools import PaintToolbar, mask_colormap
from cytoreview.gui.progress_widgets import StatusLabel
from cytoreview.gui.shortcuts import bind_layer_keys
from cytoreview.gui.state import WorkbenchState
from cytoreview.storage.records import MaskVersion
from cytoreview.types import CYTOPLASM, NUCLEUS, Provenance
from cytoreview.workflows.mask_edits import SavedEdit, edit_provenance
from cytoreview.workflows.review import approve_mask

log = logging.getLogger(__name__)

IMAGE_LAYER = "image"
MASK_LAYER = "mask"
#: Opacity of the mask over the image: the stain stays readable under the colour.
MASK_OPACITY = 0.45


def format_measure(measure: dict[str, float]) -> str:
    """The readout line: areas in pixels and the N:C ratio."""
    ratio = measure["nc_ratio"]
    nc = "—" if np.isnan(ratio) else f"{ratio:.2f}"
    return (
        f"Nucleus {int(measure['nucleus_area']):,} px   Cytoplasm "
        f"{int(measure['cytoplasm_area']):,} px   N:C {nc}"
    )


def default_brush_size(shape: tuple[int, ...]) -> int:
    """A brush about a twentieth of the image's shorter side, 1 to 40 px.

    napari's fixed 10 px covers a quarter of a 40 px Herlev crop and is a speck on a field.
    """
    return int(np.clip(round(min(shape[:2]) / 20), 1, 40))


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
        self._unsaved_told: set[int] = set()  # images whose failed save the person was told of
        self._header = ""  # "name (class)" of the open image
        self._auto_brush: int | None = None  # the brush size last fitted to an image
        self._readout_timer = QTimer(self)
        self._readout_timer.setSingleShot(True)
        self._readout_timer.setInterval(0)
        self._readout_timer.timeout.connect(self._update_readout)
        self._build()
        self._set_enabled(False)
        state.image_opened.connect(self.open_image)
        state.project_changed.connect(self._on_project_changed)
        state.masks_changed.connect(self._on_masks_changed)
        state.classes_changed.connect(self._on_classes_changed)
        autosave.saved.connect(self._on_saved)
        autosave.failed.connect(self._on_save_failed)

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(4)
        intro = QLabel(PANEL_HELP["annotate"])
        intro.setWordWrap(True)
        intro.setStyleSheet(INTRO_STYLE)
        layout.addWidget(intro)
        self.title = QLabel("No image open: double-click one in the project table")
        self.title.setWordWrap(True)
        self.title.setStyleSheet("font-weight: bold")
        layout.addWidget(self.title)

        self.toolbar = PaintToolbar(undo=self.undo, redo=self.redo)
        layout.addWidget(self.toolbar)

        helpers_box = QGroupBox("Helpers")
        helpers = QGridLayout(helpers_box)
        self.tool_buttons: dict[str, QPushButton] = {}
        for i, (name, text) in enumerate(
            (
                ("initial", "Initial mask (Otsu)"),
                ("grabcut", "Refine (GrabCut)"),
                ("fill_holes", "Fill holes"),
                ("repair", "Nucleus inside cell"),
            )
        ):
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
        self.save_status = StatusLabel("")
        self.save_status.setWordWrap(True)
        layout.addWidget(self.save_status)
        layout.addStretch(1)

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (*self.tool_buttons.values(), self.approve_button):
            widget.setEnabled(enabled)
        if not enabled:
            self.toolbar.attach(None)

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
        self.image_id = record.id
        self._version = found[0] if found is not None else None
        versions = project.mask_versions(record.id)
        self._provenance = edit_provenance(versions)
        unsaved = self.autosave.pending_mask(record.id)
        if unsaved is not None and unsaved.shape == (record.height, record.width):
            # Strokes a failed save still holds: shown (the very array, so that painting goes
            # on from them) instead of the older version on disk.
            mask = unsaved
        else:
            mask = (
                found[1].copy()
                if found is not None
                else np.zeros((record.height, record.width), np.uint8)
            )
            self.autosave.set_baseline(
                record.id, mask, self._version.version if self._version is not None else 0
            )
        self._replace_layers(rgb, mask, record.name)
        self._set_enabled(True)
        self._header = f"{record.name} ({record.class_label or 'no class'})"
        status = "no mask yet" if self._version is None else self._describe(self._version)
        self.title.setText(f"{self._header}: {status}")
        reason = self.autosave.error(record.id)
        if unsaved is not None:
            self.save_status.setText(
                f"UNSAVED edits shown ({reason or 'saving'}); kept and retried"
            )
        else:
            self.save_status.setText(f"edits are saved as {self._provenance.value}")
        self._update_readout()

    def _replace_layers(self, rgb: np.ndarray, mask: np.ndarray, name: str) -> None:
        image, labels = self.image_layer, self.labels_layer
        reusable = (
            image is not None
            and labels is not None
            and image in self.viewer.layers
            and labels in self.viewer.layers
            and hasattr(labels, "_reset_history")
        )
        if reusable:
            # New data into the same layers: removing a layer costs napari a full garbage
            # collection (about 0.5 s here), too slow for going through images.
            image.data = rgb
            labels.data = mask
            # napari's undo history must never replay onto another image.
            labels._reset_history()
        else:
            image, labels = self._new_layers(rgb, mask)
        image.metadata["image_name"] = name
        # The brush fits the image (2 px on a 40 px crop, 40 px on a field) until the person
        # picks a size; theirs is kept from then on.
        if self._auto_brush is None or labels.brush_size == self._auto_brush:
            self._auto_brush = default_brush_size(mask.shape)
            labels.brush_size = self._auto_brush
        self.viewer.layers.selection.active = labels
        self.viewer.reset_view()
        self.toolbar.attach(labels)

    def _new_layers(self, rgb: np.ndarray, mask: np.ndarray) -> tuple[Image, Labels]:
        for layer_name in (MASK_LAYER, IMAGE_LAYER):
            if layer_name in self.viewer.layers:
                self.viewer.layers.remove(layer_name)
        self.image_layer = self.viewer.add_image(rgb, name=IMAGE_LAYER, rgb=True)
        labels = self.viewer.add_labels(
            mask, name=MASK_LAYER, colormap=mask_colormap(), opacity=MASK_OPACITY
        )
        labels.selected_label = CYTOPLASM
        labels.mode = "paint"
        labels.events.paint.connect(self._on_paint)
        bind_layer_keys(labels, self._layer_actions())
        self.labels_layer = labels
        return self.image_layer, labels

    def _layer_actions(self) -> dict[str, Callable[[], Any]]:
        return {
            "label_cytoplasm": lambda: self.set_label(CYTOPLASM),
            "label_nucleus": lambda: self.set_label(NUCLEUS),
            "undo": self.undo,
            "redo": self.redo,
        }

    @staticmethod
    def _describe(version: MaskVersion) -> str:
        return f"v{version.version} {version.provenance.value} by {version.author}"

    # -- editing -------------------------------------------------------------------------------
    def set_label(self, value: int) -> None:
        """Paint with label ``value`` (0 background, 1 cytoplasm, 2 nucleus)."""
        self.toolbar.set_label(value)

    def set_mode(self, mode: str) -> None:
        """Switch napari's Labels mode: paint, fill, polygon, erase or pan_zoom."""
        self.toolbar.set_mode(mode)

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
        self._update_readout()

    def _on_paint(self, event: Any = None) -> None:
        if self.labels_layer is None or self.image_id is None:
            return
        # The image id is taken now, with this image's own array: a save that fires after
        # another image opened still writes these pixels to this image.
        self.autosave.mark_dirty(self.image_id, self.labels_layer.data, self._provenance)
        # napari sends the event before some edits (data_setitem) reach the array: measure
        # once control is back in the event loop.
        self._readout_timer.start()

    def _update_readout(self) -> None:
        if self.labels_layer is not None:
            self.readout.setText(format_measure(mask_tools.quick_measure(self.labels_layer.data)))

    # -- approval and saving -------------------------------------------------------------------
    def approve(self) -> MaskVersion | None:
        """Approve the mask as it is now (pending edits are saved first; audited as a review).

        Nothing is approved while an edit of the image is not saved: the version on disk is
        not what the person sees.
        """
        if self.labels_layer is None or self.image_id is None:
            return None
        project = self.state.require_project()
        image_id = self.image_id
        reason = self.autosave.unsaved_reason(image_id)
        if reason is not None:
            self.state.message.emit("error", f"not approved: the edits are not saved ({reason})")
            return None
        try:
            # The Review dock's Accept approves through the same function: same records.
            approval = approve_mask(project, image_id, reviewer=self.state.actor)
        except (CytoReviewError, ValueError, OSError) as exc:
            self.state.message.emit("error", f"approval failed: {exc}")
            return None
        version = approval.version
        if not approval.new_version:
            self.save_status.setText("already approved; nothing changed since")
            return version
        self._show_saved(image_id, version)
        self.autosave.set_baseline(image_id, self.labels_layer.data, version.version)
        self.state.notify_masks_changed([image_id])
        if approval.empty:
            self.state.message.emit("warning", "an empty mask was approved (no cell on it)")
        return version

    def _show_saved(self, image_id: int, version: MaskVersion) -> None:
        if image_id == self.image_id and self.labels_layer is not None:
            self._version = version
            self.title.setText(f"{self._header}: {self._describe(version)}")
            self.save_status.setText(f"saved v{version.version} ({version.provenance.value})")

    def _on_saved(self, image_id: int, saved: object) -> None:
        if not isinstance(saved, SavedEdit):
            return
        self._show_saved(image_id, saved.version)
        name = self._image_name(image_id)
        if saved.conflict:
            self.state.message.emit("warning", saved.warning(name))
        if image_id in self._unsaved_told:
            self._unsaved_told.discard(image_id)
            self.state.message.emit("info", f"mask of {name} saved (v{saved.version.version})")
        self.state.notify_masks_changed([image_id])

    def _on_save_failed(self, image_id: int, reason: str) -> None:
        retry = self.autosave.retry_in_ms
        when = f"retrying in {retry / 1000:.0f} s" if retry is not None else "retried"
        line = f"mask of {self._image_name(image_id)} NOT saved: {reason}; edit kept, {when}"
        if image_id == self.image_id:
            self.save_status.setText(line)
        if image_id not in self._unsaved_told:  # one notice per failure, not one per retry
            self._unsaved_told.add(image_id)
            self.state.message.emit("error", line)
        else:
            self.state.message.emit("info", line)  # the status bar keeps the newest reason

    def _image_name(self, image_id: int) -> str:
        return self.autosave.image_name(image_id)

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

    def _on_classes_changed(self, image_ids: object) -> None:
        project = self.state.project
        if project is None or self.image_id is None or self.image_id not in image_ids:  # type: ignore[operator]
            return
        record = project.image(self.image_id)
        old_header, self._header = (
            self._header,
            f"{record.name} ({record.class_label or 'no class'})",
        )
        self.title.setText(self.title.text().replace(old_header, self._header, 1))

    def _on_project_changed(self, project: object) -> None:
        for layer_name in (MASK_LAYER, IMAGE_LAYER):
            if layer_name in self.viewer.layers:
                self.viewer.layers.remove(layer_name)
        self.image_layer = self.labels_layer = None
        self.image_id = self._version = None
        self._unsaved_told.clear()
        self._set_enabled(False)
        self.title.setText("No image open: double-click one in the project table")
        self.save_status.setText("")

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
