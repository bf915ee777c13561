"""The ``heatmap`` layer: a Grad-CAM++ map over the open image, stored or computed on demand.

Which map may be shown is the workflow's rule (:mod:`cytoreview.workflows.heatmaps`): only one
made by the model in use (the current classifier), never an older model's. A stored map of that
model is loaded at once; without one, :func:`get_or_compute_heatmap` computes it, with the
quality checks of ``cytoreview explain``, in a :class:`JobRunner` (the window never waits for
the network) and stores it. The status line names the map's model and date. One overlay is
shared by the review and the teaching panels; teaching mode ``suppress``-es it while blind.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, Signal

from cytoreview.errors import CytoReviewError
from cytoreview.gui.state import WorkbenchState
from cytoreview.gui.workers import JobRunner
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows.cls_runtime import NoHeatmapError
from cytoreview.workflows.heatmaps import (
    DEFAULT_METHOD,
    Heatmap,
    can_compute,
    get_or_compute_heatmap,
    heatmap_model,
    stored_heatmap,
)

log = logging.getLogger(__name__)

HEATMAP_LAYER = "heatmap"
COLORMAPS: tuple[str, ...] = ("inferno", "jet", "viridis")
DEFAULT_OPACITY = 0.45
METHOD = DEFAULT_METHOD


def _explain_job(project: Any, image_id: int, model_id: str) -> Any:
    """The worker's job: the map of one image by ``model_id``, computed, checked and stored."""

    def job(token: CancelToken) -> Generator[Progress, Any, Any]:
        yield Progress("explain", 0, 1, "explaining the call")
        if token.cancelled:
            return None
        # The CPU: the window's own work must not wait behind a GPU transfer; one image is fast.
        heatmap = get_or_compute_heatmap(
            project, image_id, model_id=model_id, method=METHOD, device="cpu"
        )
        yield Progress("explain", 1, 1, "heatmap ready")
        return heatmap

    return job


class HeatmapOverlay(QObject):
    """Shows the heatmap of the open image in a napari Image layer named ``heatmap``.

    Signals
    -------
    status(str)
        A short line on what the overlay is doing (loaded, computing, none available).
    shown(int)
        A heatmap of this image id is now in the layer.
    """

    status = Signal(str)
    shown = Signal(int)

    def __init__(self, viewer: Any, state: WorkbenchState, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.state = state
        self.layer: Any = None
        self.image_id: int | None = None  # the image whose map is in the layer
        self.model_id: str | None = None  # the model that made the map in the layer
        self.label = ""  # what the map in the layer is: method, class, model, date
        self.wanted: int | None = None  # the image a map is asked for
        self.colormap = COLORMAPS[0]
        self.opacity = DEFAULT_OPACITY
        self.enabled = False  # the person's toggle
        self.suppressed = False  # teaching mode: nothing shows while blind
        self.forced = False  # teaching mode: shown on reveal whatever the toggle says
        self.runner = JobRunner("heatmap", self)
        state.track_job(self.runner)
        self.runner.succeeded.connect(self._on_computed)
        self.runner.failed.connect(self._on_failed)
        self._failed: int | None = None  # the image whose map could not be computed
        self._no_heatmap: dict[str, str] = {}  # model id -> why it has no heatmap at all
        self.runner.finished.connect(self._after_job)
        state.project_changed.connect(self._on_project_changed)

    # -- the toggle ------------------------------------------------------------------------------
    def set_enabled(self, enabled: bool) -> None:
        """Show (computing if needed) or hide the heatmap of the open image."""
        self.enabled = bool(enabled)
        if self.enabled and self.state.current_image_id is not None:
            self.request(self.state.current_image_id)
        self._apply_visibility()

    def toggle(self) -> None:
        """Flip :attr:`enabled` (the keyboard shortcut)."""
        self.set_enabled(not self.enabled)

    def set_colormap(self, name: str) -> None:
        """One of :data:`COLORMAPS`."""
        self.colormap = name
        if self._layer_alive():
            self.layer.colormap = name

    def set_opacity(self, value: float) -> None:
        """Layer opacity in [0, 1]."""
        self.opacity = float(value)
        if self._layer_alive():
            self.layer.opacity = self.opacity

    def suppress(self, suppressed: bool) -> None:
        """Teaching mode: while True the layer stays hidden whatever the toggle says."""
        self.suppressed = bool(suppressed)
        self._apply_visibility()

    def reveal(self, image_id: int | None) -> None:
        """Teaching mode: show the map of ``image_id`` (None: back to the person's toggle)."""
        self.forced = image_id is not None
        self.suppressed = False
        if image_id is not None:
            self.request(image_id)
        self._apply_visibility()

    @property
    def visible(self) -> bool:
        """Whether a heatmap is on screen now."""
        return self._layer_alive() and bool(self.layer.visible)

    # -- loading ---------------------------------------------------------------------------------
    def request(self, image_id: int, *, compute: bool = True) -> bool:
        """Put the heatmap of ``image_id`` in the layer: the stored one, else compute it.

        Returns
        -------
        bool
            True when a map is shown now or is being computed.
        """
        project = self.state.project
        if project is None:
            return False
        if self.wanted != int(image_id):
            self._failed = None
        self.wanted = int(image_id)
        try:
            model_id = heatmap_model(project, self.wanted)
            if self.image_id == self.wanted and self.model_id == model_id and self._layer_alive():
                self._apply_visibility()
                return True
            record = project.image(self.wanted)
            stored = stored_heatmap(project, self.wanted, model_id=model_id, method=METHOD)
        except (CytoReviewError, OSError) as exc:
            self.status.emit(f"cannot show a heatmap of image {image_id}: {exc}")
            return False
        if stored is not None:
            self._show(stored)
            return True
        self._clear((record.height, record.width))
        if model_id is None:
            self.status.emit("no heatmap: no classifier to compute one")
            return False
        if model_id in self._no_heatmap:  # a classifier without a CAM layer: never computed
            self.status.emit(self._no_heatmap[model_id])
            return False
        computable = can_compute(project, model_id)
        if not compute or not computable or self._failed == self.wanted:
            # Another model's map is never shown in its place, whatever is stored.
            why = "" if computable else ", and no classifier here to compute one"
            self.status.emit(f"no heatmap of {model_id} for this image{why}")
            return False
        if self.runner.is_running:  # the finished job picks up self.wanted
            self.runner.cancel()
            return True
        self.status.emit(f"computing the heatmap of {record.name} with {model_id}…")
        self.runner.start(_explain_job(project, self.wanted, model_id))
        return True

    def _on_failed(self, exc: BaseException) -> None:
        # Not computed again by itself (the next request of another image clears this).
        self._failed = self.wanted
        if isinstance(exc, NoHeatmapError):  # not a failure: this classifier has no heatmap
            project, wanted = self.state.project, self.wanted
            model_id = None if project is None or wanted is None else heatmap_model(project, wanted)
            if model_id is not None:
                self._no_heatmap[model_id] = str(exc)
            self.status.emit(str(exc))
            return
        self.status.emit(f"heatmap failed: {exc}")

    def _on_computed(self, result: object) -> None:
        if not isinstance(result, Heatmap) or self.state.project is None:
            return
        if result.image_id == self.wanted:
            self._show(result)

    def _after_job(self) -> None:
        # The person moved on while a map was computed: compute the one wanted now.
        if (
            self.wanted is not None
            and self.wanted != self.image_id
            and self.state.project is not None
            and (self.enabled or self.forced)
        ):
            self.request(self.wanted)

    # -- the layer -------------------------------------------------------------------------------
    def _layer_alive(self) -> bool:
        return self.layer is not None and self.layer in self.viewer.layers

    def _show(self, heatmap: Heatmap) -> None:
        image_id = heatmap.image_id
        data = np.asarray(heatmap.pixels, np.float32)
        if self._layer_alive():
            self.layer.data = data  # reusing the layer: no costly removal on every image
        else:
            self.layer = self.viewer.add_image(
                data,
                name=HEATMAP_LAYER,
                colormap=self.colormap,
                opacity=self.opacity,
                blending="translucent",
                contrast_limits=(0.0, 1.0),
            )
        self.layer.contrast_limits = (0.0, 1.0)
        self.layer.metadata["model_id"] = heatmap.model_id
        self.image_id, self.model_id = image_id, heatmap.model_id
        self.label = heatmap.label() + (" (computed now)" if heatmap.computed else "")
        self._apply_visibility()
        self._keep_mask_selected()
        self.status.emit(f"heatmap: {self.label}")
        self.shown.emit(image_id)

    def _clear(self, shape: tuple[int, int]) -> None:
        """An empty map of the new image's shape, so no old map lies over another image."""
        if self._layer_alive():
            self.layer.data = np.zeros(shape, np.float32)
            self.layer.contrast_limits = (0.0, 1.0)
        self.image_id = self.model_id = None
        self.label = ""
        self._apply_visibility()

    def _apply_visibility(self) -> None:
        if self._layer_alive():
            wanted = self.enabled or self.forced
            shown = wanted and not self.suppressed and self.image_id is not None
            self.layer.visible = shown

    def _keep_mask_selected(self) -> None:
        # Adding a layer selects it; painting keys should keep acting on the mask.
        if "mask" in self.viewer.layers:
            self.viewer.layers.selection.active = self.viewer.layers["mask"]

    def _on_project_changed(self, _project: object) -> None:
        self._no_heatmap.clear()
        if self._layer_alive():
            self.viewer.layers.remove(self.layer)
        self.layer = None
        self.image_id = self.wanted = self.model_id = None
