"""Finding the installed plugins through the ``cytoreview.plugins`` entry-point group.

Each entry point names a :class:`~cytoreview.plugin_api.contributions.Plugin` (or a function
returning one) in a small, torch-free module, the way napari's npe2 reads manifests: finding
what is installed imports no model code. A plugin that fails to load is skipped with one
warning naming it and the reason; the rest of the program works.

CytoReview's own methods are a plugin like any other, declared under the same group in its
``pyproject.toml``; a source checkout that was never installed still finds them.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

from cytoreview import __version__
from cytoreview.errors import ConfigError
from cytoreview.plugin_api.contributions import KINDS, Contribution, Plugin, Preset

__all__ = [
    "ENTRY_POINT_GROUP",
    "PluginCatalog",
    "PluginWarning",
    "catalog",
    "find",
    "reset_catalog",
]

#: The entry-point group a plugin package declares in its ``pyproject.toml``.
ENTRY_POINT_GROUP = "cytoreview.plugins"
_BUILTIN_TARGET = "cytoreview.plugin_api.builtin:PLUGIN"


class PluginWarning(UserWarning):
    """A plugin could not be loaded; the program works without it."""


@dataclass(frozen=True)
class InstalledPlugin:
    """A plugin that loaded, with where it came from."""

    name: str
    version: str
    entry_point: str
    contributions: tuple[Contribution, ...]
    homepage: str = ""
    #: Segmenter presets for other plugins' methods (``Preset.applies_to``).
    presets: tuple[Preset, ...] = ()


@dataclass
class PluginCatalog:
    """Every installed contribution, by kind and name, and the plugins that failed."""

    plugins: list[InstalledPlugin] = field(default_factory=list)
    #: One line per plugin that failed to load: ``"NAME: reason"``.
    broken: list[str] = field(default_factory=list)

    def contributions(self, kind: str) -> list[Contribution]:
        """Contributions of ``kind``, in the order their plugins were found."""
        if kind not in KINDS:
            raise ConfigError(f"unknown contribution kind {kind!r}; valid: {', '.join(KINDS)}")
        return [c for p in self.plugins for c in p.contributions if c.kind == kind]

    def names(self, kind: str) -> list[str]:
        """Names of the contributions of ``kind``."""
        return [c.name for c in self.contributions(kind)]

    def presets(self) -> list[tuple[Contribution, Preset, str]]:
        """Every segmenter preset: (the segmenter it trains, the preset, the plugin publishing it).

        A preset whose segmenter is not installed is left out.
        """
        out = []
        segmenters = {c.name: c for c in self.contributions("segmenter")}
        for plugin in self.plugins:
            for c in plugin.contributions:
                out += [(c, preset, plugin.name) for preset in c.presets]
            for preset in plugin.presets:
                if preset.applies_to in segmenters:
                    out.append((segmenters[preset.applies_to], preset, plugin.name))
        return out

    def get(self, kind: str, name: str, made_by: dict[str, Any] | None = None) -> Contribution:
        """The contribution ``name`` of ``kind``.

        Parameters
        ----------
        made_by
            A checkpoint's ``plugin`` record, so that a model made by a plugin that is not
            installed here says which plugin to install.

        Raises
        ------
        ConfigError
            Naming the valid names, and the missing plugin when known.
        """
        for contribution in self.contributions(kind):
            if contribution.name == name:
                return contribution
        valid = ", ".join(self.names(kind)) or "none"
        if made_by and made_by.get("plugin"):
            plugin = str(made_by["plugin"])
            version = made_by.get("version") or "?"
            why = next((b for b in self.broken if b.startswith(f"{plugin}:")), None)
            state = f"failed to load ({why})" if why else "is not installed"
            raise ConfigError(
                f"{kind} {name!r} was made by plugin {plugin} {version}, which {state}; "
                f"install it (e.g. `pip install plugins/{plugin}`) and try again; "
                f"installed {kind}s: {valid}"
            )
        raise ConfigError(f"unknown {kind} {name!r}; valid: {valid}")


def _as_plugin(obj: Any) -> Plugin:
    if callable(obj) and not isinstance(obj, Plugin):
        obj = obj()
    if not isinstance(obj, Plugin):
        raise TypeError(f"the entry point gave {type(obj).__name__}, not a cytoreview Plugin")
    return obj


def _install(
    out: PluginCatalog, plugin: Plugin, version: str, entry_point: str, seen: dict[tuple, str]
) -> None:
    """Add ``plugin`` unless one of its names is already taken (then it is broken, not merged)."""
    stamped = tuple(replace(c, plugin=plugin.name, version=version) for c in plugin.contributions)
    for c in stamped:
        owner = seen.get((c.kind, c.name))
        if owner is not None:
            out.broken.append(
                f"{plugin.name}: its {c.kind} {c.name!r} is already provided by {owner}; skipped"
            )
            return
    for c in stamped:
        seen[(c.kind, c.name)] = plugin.name
    out.plugins.append(
        InstalledPlugin(
            plugin.name, version, entry_point, stamped, plugin.homepage, tuple(plugin.presets)
        )
    )


def discover(entry_points: Iterable[metadata.EntryPoint] | None = None) -> PluginCatalog:
    """Load every plugin of the group (uncached; see :func:`catalog`)."""
    out = PluginCatalog()
    seen: dict[tuple, str] = {}
    eps = list(entry_points if entry_points is not None else
               metadata.entry_points(group=ENTRY_POINT_GROUP))  # fmt: skip
    if not any(ep.value == _BUILTIN_TARGET for ep in eps):
        # A source checkout that was never pip-installed has no entry points: the built-in
        # methods are still found, through the same loading code.
        eps.insert(0, metadata.EntryPoint("cytoreview", _BUILTIN_TARGET, ENTRY_POINT_GROUP))
    # The built-in methods first, so a plugin cannot take their names.
    eps.sort(key=lambda ep: ep.value != _BUILTIN_TARGET)
    for ep in eps:
        dist = getattr(ep, "dist", None)
        label = dist.name if dist is not None else ep.name
        try:
            plugin = _as_plugin(ep.load())
            version = dist.version if dist is not None else (
                __version__ if ep.value == _BUILTIN_TARGET else "?"
            )  # fmt: skip
            for preset in plugin.presets:
                if not preset.applies_to:
                    raise TypeError(f"preset {preset.name!r} names no segmenter (applies_to)")
            _install(out, plugin, version, ep.value, seen)
        except Exception as exc:  # noqa: BLE001  (third-party code: one line, never fatal)
            line = f"{label}: {type(exc).__name__}: {exc}".splitlines()[0][:300]
            out.broken.append(line)
    for line in out.broken:
        # A warning (not a log record): the command line shows it as one "warning:" line, the
        # workbench in its message bar; the program goes on without the plugin.
        warnings.warn(f"plugin not loaded: {line}", PluginWarning, stacklevel=2)
    return out


_CACHE: list[PluginCatalog] = []
_LOCK = threading.Lock()


def catalog() -> PluginCatalog:
    """The installed plugins, found once per process."""
    with _LOCK:
        if not _CACHE:
            _CACHE.append(discover())
        return _CACHE[0]


def reset_catalog(value: PluginCatalog | None = None) -> None:
    """Forget the found plugins (or use ``value``): for tests and after installing one."""
    with _LOCK:
        _CACHE.clear()
        if value is not None:
            _CACHE.append(value)


def find(kind: str, name: str, made_by: dict[str, Any] | None = None) -> Contribution:
    """Shorthand for ``catalog().get(kind, name, made_by)``."""
    return catalog().get(kind, name, made_by)
