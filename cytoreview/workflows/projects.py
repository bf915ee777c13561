"""Creating and opening projects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cytoreview.errors import UnknownClassError
from cytoreview.storage.images import DEFAULT_MAX_PIXELS
from cytoreview.storage.project import CATALOG_FILE, Project
from cytoreview.types import CLASS_SCHEMES, DEFAULT_SCHEME, ClassScheme


def build_scheme(
    scheme: str | None = None,
    classes: Sequence[str] | None = None,
    not_revisable: Sequence[str] | None = None,
) -> ClassScheme:
    """A class scheme from a preset name or an explicit list of classes.

    Parameters
    ----------
    scheme
        A preset (``bethesda`` (default), ``bethesda-extended``, ``herlev``).
    classes
        Explicit class names; overrides ``scheme``.
    not_revisable
        Classes whose binary call is "not revisable"; by default the preset's, or the first of
        explicit ``classes`` (conventionally the normal class, e.g. NILM).
    """
    if classes:
        names = tuple(c.strip() for c in classes if c.strip())
        if not names:
            raise UnknownClassError("--classes needs at least one non-empty class name")
        normal = tuple(not_revisable) if not_revisable else names[:1]
        probe = ClassScheme(names, frozenset())
        return ClassScheme(names, frozenset(probe.resolve(n) for n in normal))
    name = scheme or DEFAULT_SCHEME
    if name not in CLASS_SCHEMES:
        raise UnknownClassError(
            f"unknown class scheme {name!r}; valid: {', '.join(sorted(CLASS_SCHEMES))}"
        )
    preset = CLASS_SCHEMES[name]
    if not_revisable:
        return ClassScheme(preset.classes, frozenset(preset.resolve(n) for n in not_revisable))
    return preset


def create_project(
    folder: str | Path,
    *,
    actor: str,
    scheme: ClassScheme | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Project:
    """Create a project folder with a class scheme; return it open."""
    return Project.init(folder, actor=actor, scheme=scheme, max_pixels=max_pixels)


def open_project(folder: str | Path) -> Project:
    """Open an existing project folder."""
    return Project.open(folder)


def is_project_folder(path: str | Path) -> bool:
    """Whether ``path`` is a project folder (it holds a catalog); nothing is opened."""
    return (Path(path) / CATALOG_FILE).is_file()
