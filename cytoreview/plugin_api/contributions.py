"""What a plugin contributes, declared as data: kind, name, description, settings, citation.

A contribution names the object that does the work as ``"package.module:attribute"``
(``target``) and is imported only when it is used: listing plugins, building the command-line
parser and filling the workbench's lists never import torch or a plugin's heavy code.

The objects behind ``target`` follow the protocols in :mod:`cytoreview.plugin_api.protocols`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cytoreview.errors import ConfigError
from cytoreview.plugin_api.settings import describe_settings, settings_dict, settings_from

__all__ = ["KINDS", "Contribution", "Plugin", "Preset"]

#: What a plugin can contribute.
KINDS: tuple[str, ...] = ("segmenter", "classifier", "mask-generator")


@dataclass(frozen=True)
class NoSettings:
    """Settings of a method that has none."""


@dataclass(frozen=True)
class Preset:
    """A named training recipe for one contribution (e.g. a paper's published settings).

    Attributes
    ----------
    name
        What the user types (``train-seg --preset NAME``).
    description
        One line: whose recipe, and what it sets.
    values
        Training-request fields (``epochs``, ``lr``, ``batch_size``, ``loss``, ``input_size``...)
        and, under ``"settings"``, the method's own settings.
    citation
        Where the recipe was published.
    applies_to
        For a preset a plugin publishes for another plugin's method (e.g. a paper's recipe of
        the built-in ``unet``): that segmenter's name. "" inside a contribution (its own).
    """

    name: str
    description: str
    values: Mapping[str, Any]
    citation: str = ""
    applies_to: str = ""


@dataclass(frozen=True)
class Contribution:
    """One method a plugin adds.

    Attributes
    ----------
    kind
        One of :data:`KINDS`.
    name
        Unique among contributions of its kind; what ``--arch`` / ``--generator`` takes and
        what checkpoints record.
    description
        One line.
    target
        ``"module:attribute"`` of the object that implements the kind's protocol.
    settings
        A frozen dataclass of :func:`~cytoreview.plugin_api.settings.option` fields.
    citation
        The publication the method follows ("" for none).
    uses_mask
        Classifiers: whether the model reads the mask channels (images without a mask are then
        left out of training and classification).
    uses_labels
        Mask generators: whether it learns from the project's class labels (a ``prepare``
        step, see :mod:`cytoreview.plugin_api.protocols`): the workbench's "Masks from class
        labels" action and ``cytoreview masks-from-labels`` offer these.
    presets
        Named recipes of this contribution.
    plugin, version
        Filled in at discovery: the distribution that provides it, and its version.
    """

    kind: str
    name: str
    description: str
    target: str
    settings: type = NoSettings
    citation: str = ""
    uses_mask: bool = False
    uses_labels: bool = False
    presets: tuple[Preset, ...] = ()
    plugin: str = ""
    version: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"contribution {self.name!r}: kind must be one of {KINDS}")
        if ":" not in self.target:
            raise ConfigError(f"contribution {self.name!r}: target must be 'module:attribute'")
        describe_settings(self.settings)  # a bad settings class fails at discovery, not later

    def load(self) -> Any:
        """Import and return the object behind ``target``.

        Raises
        ------
        ConfigError
            If it cannot be imported, naming the plugin and the reason.
        """
        module_name, _, attribute = self.target.partition(":")
        try:
            obj: Any = importlib.import_module(module_name)
            for part in attribute.split("."):
                obj = getattr(obj, part)
        except Exception as exc:  # any failure of third-party code: one line
            raise ConfigError(
                f"{self.kind} {self.name!r} of plugin {self.plugin or '?'} could not be loaded: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return obj

    def make_settings(self, values: Mapping[str, Any] | None = None) -> Any:
        """The settings of this contribution from plain values (defaults for the rest)."""
        return settings_from(self.settings, values)

    def settings_record(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Checked settings as plain values, for a checkpoint or a request."""
        return settings_dict(self.make_settings(values))

    def preset(self, name: str) -> Preset:
        """The preset called ``name``; an unknown one lists the valid names."""
        for preset in self.presets:
            if preset.name == name:
                return preset
        valid = ", ".join(p.name for p in self.presets) or "none"
        raise ConfigError(f"{self.kind} {self.name!r} has no preset {name!r}; valid: {valid}")

    def provenance(self) -> dict[str, str]:
        """What a checkpoint or a mask records about who made it."""
        return {"kind": self.kind, "name": self.name, "plugin": self.plugin,
                "version": self.version}  # fmt: skip


@dataclass(frozen=True)
class Plugin:
    """What an entry point of the ``cytoreview.plugins`` group returns.

    Attributes
    ----------
    name
        The distribution name (what ``pip install`` takes).
    contributions
        The methods it adds.
    presets
        Training recipes it publishes for segmenters of other plugins (``applies_to`` names
        the segmenter).
    homepage
        Where its documentation lives ("" for none).
    """

    name: str
    contributions: tuple[Contribution, ...] = field(default_factory=tuple)
    presets: tuple[Preset, ...] = field(default_factory=tuple)
    homepage: str = ""
