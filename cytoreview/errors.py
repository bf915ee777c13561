"""The exception tree of CytoReview.

Every error a user can cause derives from :class:`CytoReviewError`, so the CLI and the GUI can
show its message in one line and go on. Messages name the file and the reason.
"""

from __future__ import annotations

from pathlib import Path


class CytoReviewError(Exception):
    """Base class of every expected, user-facing error."""


class _FileError(Exception):
    """Mixin of the errors about one file: the message is ``path: reason``.

    Parameters
    ----------
    path
        The file.
    reason
        A short, human-readable reason (no trailing full stop).
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        # Rebuilt from (path, reason), not from the message: such an error raised on a Dask
        # worker must reach the main process as itself.
        return type(self), (self.path, self.reason)


class InputFileError(_FileError, CytoReviewError):
    """A file given by the user cannot be used (``path`` names it, ``reason`` says why)."""


class ImageReadError(InputFileError):
    """An image file is unreadable, truncated, empty, too large or of an unsupported kind."""


class MaskFileError(InputFileError):
    """A label-mask file is unreadable, has values other than 0/1/2 or the wrong size."""


class ManifestError(InputFileError):
    """A CSV manifest is malformed (missing columns, unreadable, empty)."""


class ProjectError(CytoReviewError):
    """A project folder is missing, not a project, or in a state that forbids the action."""


class ProjectNotFoundError(ProjectError):
    """The folder is not a CytoReview project."""


class ProjectExistsError(ProjectError):
    """``init`` was asked to create a project where one already exists."""


class ProjectLockedError(ProjectError):
    """Another process holds the project's write lock for longer than the busy timeout."""


class SchemaVersionError(ProjectError):
    """The project was written by a newer CytoReview than this one."""


class UnsafePathError(ProjectError):
    """A name or path read from the catalog would lead outside its folder (damaged catalog)."""


class UnknownClassError(CytoReviewError):
    """A class name is not part of the project's class scheme."""


class ConfigError(CytoReviewError):
    """A setting or a name (model, encoder, device...) is not valid; the message lists options."""


class CheckpointError(InputFileError):
    """A model checkpoint cannot be loaded (not a CytoReview checkpoint, damaged, incompatible)."""


class SchedulerError(ConfigError):
    """A Dask scheduler address does not answer (or is not one); the message names it."""


class NotEnoughDataError(CytoReviewError):
    """A step needs more (or other) data than the project has, e.g. training without masks."""


class CatalogError(_FileError, ProjectError):
    """The catalog file cannot be used (``path`` names it, ``reason`` says why)."""


class NotACatalogError(CatalogError):
    """The file exists but is not a CytoReview catalog (empty, another database, other data)."""


class CatalogDamagedError(CatalogError):
    """The catalog is a CytoReview catalog whose pages or stored values are damaged."""
