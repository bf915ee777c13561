"""Name → factory registries, so models are chosen by name in settings, the CLI and the GUI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cytoreview.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered factory."""

    name: str
    factory: Callable[..., T]
    description: str


class Registry(Generic[T]):
    """A registry of factories of one kind (segmenters, classifiers...).

    Parameters
    ----------
    kind
        What the registry holds, for error messages ("segmenter").
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, factory: Callable[..., T], description: str = "") -> None:
        """Add a factory under ``name`` (names are unique)."""
        if name in self._entries:
            raise ConfigError(f"a {self.kind} named {name!r} is already registered")
        self._entries[name] = Entry(name, factory, description)

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def get(self, name: str) -> Entry[T]:
        """The entry for ``name``; an unknown name lists the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown {self.kind} {name!r}; valid: {', '.join(self.names())}"
            ) from None

    def create(self, name: str, **params: Any) -> T:
        """Build the thing registered as ``name`` with ``params``."""
        return self.get(name).factory(**params)
