"""The ``heatmap`` layer: a Grad-CAM++ map over the open image, stored or computed on demand.

A stored heatmap (``PredictionStore.heatmap_record``) is loaded at once; without one, the
current classifier explains the image in a :class:`JobRunner`, so the window never waits for
the network, and the result is stored for next time. One overlay is shared by the review and
the teaching panels; teaching mode ``suppress``-es it while an image is shown blind.
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
from cytoreview.storage.predictions import PredictionStore
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows.classification import current_classifier_id, load_classifier
from cytoreview.workflows.review_data import explain_image

log = logging.getLogger(__name__)

HEATMAP_LAYER = "heatmap"
COLORMAPS: tuple[str, ...] = ("inferno", "jet", "viridis")
DEFAULT_OPACITY = 0.45
METHOD = "gradcam++"


def _explain_job(project: Any, image_id: int, rgb: np.ndarray, mask: np.ndarray | None) -> Any:
    """The worker's job: load the current classifier, explain one image, return the map."""

    def job(token: CancelToken) -> Generator[Progress, Any, Any]:
        yield Progress("explain", 0, 1, "loading the classifier")
        loaded = load_classifier(project)
        if token.cancelled:
            return None
        use_mask = mask if loaded.uses_mask else None
        heatmap, cls, quality = explain_image(
            loaded, rgb, use_mask, method=METHOD, flipping_steps=0, device="cpu"
        )
        yield Progress("explain", 1, 1, "heatmap ready")
        return image_id, loaded.model_id, loaded.class_names[cls], heatmap, quality

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
        self.wanted: int | None = None  # the image a map is asked for
        self.colormap = COLORMAPS[0]
        self.opacity = DEFAULT_OPACITY
        self.enabled = False  # the person's toggle
        self.suppressed = False  # teaching mode: nothing shows while blind
        self.forced = False  # teaching mode: shown on reveal whatever the toggle says
        self.runner = JobRunner("heatmap", self)
        state.track_job(self.runner)
        self.runner.succeeded.connect(self._on_computed)
        self.runner.failed.connect(lambda exc: self.status.emit(f"heatmap failed: {exc}"))
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
        self.wanted = int(image_id)
        if self.image_id == self.wanted and self._layer_alive():
            self._apply_visibility()
            return True
        record = project.image(self.wanted)
        store = PredictionStore(project)
        model_id = current_classifier_id(project, "bethesda")
        stored = store.heatmap_record(self.wanted, model_id=model_id) if model_id else None
        stored = stored or store.heatmap_record(self.wanted)
        heatmap = store.load_heatmap(stored) if stored is not None else None
        if heatmap is not None and heatmap.shape == (record.height, record.width):
            self._show(self.wanted, heatmap, f"{stored.method} for {stored.target_class}")
            return True
        self._clear((record.height, record.width))
        if not compute or model_id is None:
            self.status.emit("no heatmap stored and no classifier to compute one")
            return False
        if self.runner.is_running:  # the finished job picks up self.wanted
            self.runner.cancel()
            return True
        self._start(self.wanted)
        return True

    def _start(self, image_id: int) -> None:
        project = self.state.require_project()
        try:
            record = project.image(image_id)
            rgb = project.load_image(record).rgb
            found = project.current_mask(image_id)
        except (CytoReviewError, OSError) as exc:
            self.status.emit(f"cannot explain image {image_id}: {exc}")
            return
        self.status.emit(f"computing the heatmap of {record.name}…")
        mask = None if found is None else found[1]
        self.runner.start(_explain_job(project, image_id, rgb, mask))

    def _on_computed(self, result: object) -> None:
        if result is None or self.state.project is None:
            return
        image_id, model_id, target, heatmap, quality = result  # type: ignore[misc]
        try:
            PredictionStore(self.state.project).save_heatmap(
                image_id, model_id, METHOD, target, heatmap, quality
            )
        except CytoReviewError as exc:  # shown anyway; only the cache failed
            log.warning("heatmap not stored: %s", exc)
        if image_id == self.wanted:
            self._show(image_id, heatmap, f"{METHOD} for {target} (computed now)")

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

    def _show(self, image_id: int, heatmap: np.ndarray, text: str) -> None:
        data = np.asarray(heatmap, np.float32)
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
        self.image_id = image_id
        self._apply_visibility()
        self._keep_mask_selected()
        self.status.emit(f"heatmap: {text}")
        self.shown.emit(image_id)

    def _clear(self, shape: tuple[int, int]) -> None:
        """An empty map of the new image's shape, so no old map lies over another image."""
        if self._layer_alive():
            self.layer.data = np.zeros(shape, np.float32)
            self.layer.contrast_limits = (0.0, 1.0)
        self.image_id = None
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
        if self._layer_alive():
            self.viewer.layers.remove(self.layer)
        self.layer = None
        self.image_id = self.wanted = None
