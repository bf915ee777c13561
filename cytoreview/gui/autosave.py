"""Saving painted masks without a Save button: a debounced save after each finished stroke.

Every stroke marks its image dirty; a single-shot timer restarted by each mark saves all
dirty images once painting pauses (800 ms by default). Pending edits are also saved at once
when another image opens, when the panel hides or the window closes, and before approval.

The image a pending mask belongs to is fixed when the stroke is made (with a reference to
that image's mask array), so a save that fires after the next image opened still goes to the
image that was painted. Saving a label image of 1000 x 1000 pixels takes about 10 ms (PNG
encode plus an fsynced atomic write and a catalog commit), so it runs on the GUI thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from cytoreview.errors import ProjectLockedError
from cytoreview.gui.state import WorkbenchState
from cytoreview.storage.records import MaskVersion
from cytoreview.types import Provenance

log = logging.getLogger(__name__)

#: Quiet time after the last stroke before the mask is written.
DEFAULT_DELAY_MS = 800


def edit_provenance(versions: Sequence[MaskVersion]) -> Provenance:
    """The provenance of a person's edit of the mask whose version history is ``versions``.

    ``corrected`` when the edited mask descends from a model's (the newest version that is
    not an approval is ``auto`` or ``corrected``), else ``manual`` (no mask yet, or a mask
    painted by hand). Approvals are skipped: editing an approved mask is an edit of what was
    approved, and the edit is no longer approved.

    Parameters
    ----------
    versions
        The image's mask versions, oldest first (:meth:`Project.mask_versions`).
    """
    for version in reversed(versions):
        if version.provenance is Provenance.APPROVED:
            continue
        if version.provenance in (Provenance.AUTO, Provenance.CORRECTED):
            return Provenance.CORRECTED
        return Provenance.MANUAL
    return Provenance.MANUAL


@dataclass
class PendingSave:
    """An unsaved edit: which image, its mask array (a live reference) and how to label it."""

    image_id: int
    mask: np.ndarray
    provenance: Provenance
    baseline: np.ndarray | None = None  # the last saved pixels: an unchanged mask is not saved


class Autosave(QObject):
    """Debounced mask saving for the open project.

    Signals
    -------
    saved(int, object)
        Image id and the new :class:`MaskVersion`.
    failed(int, str)
        Image id and why the save failed (the edit stays pending when the project was busy).
    """

    saved = Signal(int, object)
    failed = Signal(int, str)

    def __init__(
        self, state: WorkbenchState, delay_ms: int = DEFAULT_DELAY_MS, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.state = state
        self._pending: dict[int, PendingSave] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(delay_ms)
        self._timer.timeout.connect(self.flush)
        #: Milliseconds the last save took (PNG encode, atomic write, catalog commit).
        self.last_save_ms: float = 0.0
        state.add_before_close(self.flush)

    @property
    def delay_ms(self) -> int:
        """The debounce delay."""
        return int(self._timer.interval())

    def mark_dirty(
        self,
        image_id: int,
        mask: np.ndarray,
        provenance: Provenance,
        baseline: np.ndarray | None = None,
    ) -> None:
        """Schedule a save of ``mask`` as a new version of ``image_id`` (restarts the timer).

        ``mask`` is kept by reference: the save writes its pixels as they are when it fires.
        ``baseline`` (the pixels last saved) lets a stroke undone before the save write nothing.
        """
        self._pending[image_id] = PendingSave(image_id, mask, provenance, baseline)
        self._timer.start()

    def is_pending(self, image_id: int | None = None) -> bool:
        """Whether ``image_id`` (or any image) has unsaved edits."""
        return bool(self._pending) if image_id is None else image_id in self._pending

    def discard(self, image_id: int) -> None:
        """Forget the unsaved edit of ``image_id`` (e.g. the image was reloaded on purpose)."""
        self._pending.pop(image_id, None)

    def flush(self) -> list[MaskVersion]:
        """Save every pending edit now; return the versions written."""
        self._timer.stop()
        project = self.state.project
        written: list[MaskVersion] = []
        if project is None:
            self._pending.clear()
            return written
        for image_id in list(self._pending):
            item = self._pending.pop(image_id)
            if item.baseline is not None and np.array_equal(item.mask, item.baseline):
                continue  # painted and undone: nothing new to keep
            start = time.perf_counter()
            try:
                version = project.save_mask(
                    image_id, item.mask, item.provenance, actor=self.state.actor
                )
            except ProjectLockedError as exc:  # another process is writing: try again later
                self._pending.setdefault(image_id, item)
                self._timer.start()
                self.failed.emit(image_id, str(exc))
                continue
            except Exception as exc:
                log.exception("saving the mask of image %s failed", image_id)
                self.failed.emit(image_id, str(exc))
                continue
            self.last_save_ms = (time.perf_counter() - start) * 1000
            written.append(version)
            self.saved.emit(image_id, version)
        return written
