"""A person's mask edits: which provenance an edit gets, and saving one without overwriting another.

Two front ends may edit one project at once (two workbench windows, or a window and a CLI job).
Mask versions are never replaced, but the newest version is what everyone sees, so an edit made
on an older version and saved on top of a newer one would hide the newer one without a word.
:func:`save_edit` says which version the edit started from; the storage layer checks it inside
the write transaction and, when another writer came in between, still saves the edit (nothing a
person painted is dropped) and records the conflict, which :class:`SavedEdit` reports so that
the front end can warn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cytoreview.storage.project import Project
from cytoreview.storage.records import MaskVersion
from cytoreview.types import Provenance


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


@dataclass(frozen=True)
class SavedEdit:
    """A saved edit, and the version another writer saved meanwhile, if one did."""

    version: MaskVersion
    based_on: int  # the version number the edit started from (0: no mask)
    overtaken: MaskVersion | None = None  # the version that was current when the edit was saved

    @property
    def conflict(self) -> bool:
        """True when the edit was saved on top of a version it did not start from."""
        return self.overtaken is not None

    def warning(self, image_name: str) -> str:
        """One line for the person (empty without a conflict)."""
        if self.overtaken is None:
            return ""
        other = self.overtaken
        return (
            f"{image_name}: v{other.version} ({other.provenance.value} by {other.author}) was "
            f"saved by another window or job while you edited v{self.based_on}; your edit is "
            f"v{self.version.version}, the other stays in the history"
        )


def save_edit(
    project: Project,
    image_id: int,
    mask: np.ndarray,
    provenance: Provenance,
    *,
    actor: str,
    based_on: int,
) -> SavedEdit:
    """Save a person's edit of ``image_id`` as a new mask version, detecting a lost update.

    Parameters
    ----------
    project
        The open project.
    image_id, mask
        The image and its edited label mask.
    provenance
        ``manual`` or ``corrected`` (see :func:`edit_provenance`).
    actor
        Who edited (audited).
    based_on
        The version number shown when the edit started (0 when the image had no mask).

    Returns
    -------
    SavedEdit
        The new version; ``overtaken`` is set when another writer saved a version after
        ``based_on`` (the edit is saved anyway, on top, and both are kept).
    """
    version = project.save_mask(image_id, mask, provenance, actor=actor, based_on=based_on)
    overtaken = None
    if version.version != based_on + 1:
        overtaken = next(
            (v for v in project.mask_versions(image_id) if v.version == version.version - 1),
            None,
        )
    return SavedEdit(version, based_on, overtaken)
