"""What the workbench has open (a project, an image) and the signals that keep panels in step.

Panels never talk to each other directly: they change the state and listen to its signals,
so a later panel (review, teaching) plugs in by connecting to the same signals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from qtpy.QtCore import QObject, Signal

from cytoreview.errors import ProjectError
from cytoreview.settings import current_user
from cytoreview.storage.project import Project
from cytoreview.types import ClassScheme
from cytoreview.workflows.projects import create_project, open_project
from cytoreview.workflows.seeds import first_image_to_paint

log = logging.getLogger(__name__)


class Job(Protocol):
    """What the state needs of a background job to close a project safely."""

    def cancel(self) -> None:
        """Ask the job to stop."""

    def wait(self, timeout_s: float = ...) -> bool:
        """Block until the job ended; False on timeout."""


class WorkbenchState(QObject):
    """The open project and image, shared by all panels.

    Signals
    -------
    project_changed(object)
        A project was opened (the :class:`Project`) or closed (None).
    images_changed()
        Images were added (an import), so image lists must be reloaded.
    masks_changed(object)
        The current mask of these image ids changed (a list), or of any image (None).
    classes_changed(object)
        The class label of these image ids changed (a list).
    image_opened(object)
        The image id to show and paint; panels load it.
    message(str, str)
        A line for the person (level ``info`` / ``warning`` / ``error``, text).
    """

    project_changed = Signal(object)
    images_changed = Signal()
    masks_changed = Signal(object)
    classes_changed = Signal(object)
    image_opened = Signal(object)
    message = Signal(str, str)

    def __init__(self, actor: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.actor = current_user(actor)
        self._project: Project | None = None
        self.current_image_id: int | None = None
        self._jobs: list[Job] = []
        # Called (in order) before a project closes: flush unsaved edits, stop jobs.
        self._before_close: list[Callable[[], None]] = []
        # Asked before another project replaces this one: a reason not to (unsaved edits).
        self._close_guards: list[Callable[[], str | None]] = []

    # -- project -------------------------------------------------------------------------------
    @property
    def project(self) -> Project | None:
        """The open project, if any."""
        return self._project

    def require_project(self) -> Project:
        """The open project.

        Raises
        ------
        ProjectError
            If no project is open.
        """
        if self._project is None:
            raise ProjectError("no project is open: open or create one first")
        return self._project

    def open_project(self, path: str | Path) -> Project:
        """Close the current project (saving pending edits) and open the one at ``path``.

        Raises
        ------
        ProjectError
            If the open project keeps edits that cannot be saved (it stays open).
        """
        self.ensure_can_close()
        project = open_project(path)
        self._switch_to(project)
        return project

    def create_project(self, path: str | Path, scheme: ClassScheme | None = None) -> Project:
        """Create a project folder and open it (see :meth:`open_project`)."""
        self.ensure_can_close()
        project = create_project(path, actor=self.actor, scheme=scheme)
        self._switch_to(project)
        return project

    def close_project(self) -> None:
        """Save pending edits, stop background jobs and close the project."""
        if self._project is None:
            return
        for hook in list(self._before_close):
            try:
                hook()
            except Exception:  # a failing hook must not keep the project open
                log.exception("while closing the project")
        for job in list(self._jobs):
            job.cancel()
        for job in list(self._jobs):
            if not job.wait(60.0):
                log.warning("a background job did not stop within 60 s")
        self._project.close()
        self._project = None
        self.current_image_id = None
        self.project_changed.emit(None)

    def ensure_can_close(self) -> None:
        """Check that the open project can close without losing a person's work.

        Raises
        ------
        ProjectError
            Naming what would be lost (e.g. mask edits a full disk keeps from being saved).
        """
        if self._project is None:
            return
        for guard in self._close_guards:
            reason = guard()
            if reason:
                raise ProjectError(f"{self._project.root} stays open: {reason}")

    def _switch_to(self, project: Project) -> None:
        self.close_project()
        self._project = project
        self.current_image_id = None
        self.project_changed.emit(project)
        self.message.emit("info", f"project {project.root} opened")
        # Every panel knows the project now: show an image to paint, not an empty canvas.
        first = first_image_to_paint(project)
        if first is not None:
            self.open_image(first)

    # -- hooks ---------------------------------------------------------------------------------
    def add_before_close(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` before the project closes (e.g. save pending edits)."""
        self._before_close.append(hook)

    def add_close_guard(self, guard: Callable[[], str | None]) -> None:
        """Ask ``guard`` before another project replaces this one (a text it returns: why not)."""
        self._close_guards.append(guard)

    def track_job(self, job: Job) -> None:
        """Cancel and wait for ``job`` before the project closes."""
        if job not in self._jobs:
            self._jobs.append(job)

    # -- images and masks ----------------------------------------------------------------------
    def open_image(self, image_id: int) -> None:
        """Make ``image_id`` the image being painted."""
        self.require_project().image(int(image_id))  # fails early for an unknown id
        self.current_image_id = int(image_id)
        self.image_opened.emit(int(image_id))

    def notify_masks_changed(self, image_ids: Iterable[int] | None) -> None:
        """Tell panels that these images (None: any image) have a new current mask."""
        self.masks_changed.emit(None if image_ids is None else sorted(set(image_ids)))

    def notify_classes_changed(self, image_ids: Iterable[int]) -> None:
        """Tell panels that these images have a new class label."""
        self.classes_changed.emit(sorted(set(image_ids)))

    def notify_images_changed(self) -> None:
        """Tell panels that images were added."""
        self.images_changed.emit()
