"""Settings of a method as one typed dataclass: defaults, help, ranges, choices.

A contribution (segmenter, classifier, mask generator) declares its settings once, as a frozen
dataclass whose fields are made with :func:`option`. The command-line flags
(:mod:`cytoreview.cli.settings_flags`), the workbench's form (:mod:`cytoreview.gui.settings_form`)
and the checkpoint's record are all built from that one definition, so a default or a help text
cannot drift between them.

Torch-free on purpose: the CLI parser reads it.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Blur:
...     sigma: float = option(1.0, "Gaussian sigma in pixels", low=0.0, high=20.0)
>>> settings_from(Blur, {"sigma": "2.5"}).sigma
2.5
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from cytoreview.errors import ConfigError

__all__ = ["SettingSpec", "describe_settings", "option", "settings_dict", "settings_from"]

_META = "cytoreview"


def option(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
    flag: str | None = None,
    label: str | None = None,
) -> Any:
    """A dataclass field of a method's settings.

    Parameters
    ----------
    default
        The value a user who changes nothing gets (an int, float, bool or str).
    help
        One line a pathologist or an ML engineer understands; shown by ``--help`` and as the
        form's tooltip.
    choices
        The allowed values, when the setting is one of a few.
    low, high
        Inclusive bounds of a number.
    flag
        The command-line flag; default ``--<contribution>-<field>`` (see
        :func:`cytoreview.cli.settings_flags.flag_of`).
    label
        The workbench form's label; default the field's name in words ("Min cell"). Give one
        where the name has an abbreviation ("SE reduction").
    """
    meta = {
        "help": help, "choices": choices, "low": low, "high": high, "flag": flag, "label": label,
    }  # fmt: skip
    return dataclasses.field(default=default, metadata={_META: meta})


@dataclass(frozen=True)
class SettingSpec:
    """One setting, described for a parser or a form."""

    name: str
    type: type
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    flag: str | None = None
    label: str | None = None

    def check(self, value: Any, owner: str) -> Any:
        """``value`` converted to this setting's type and checked, or a ConfigError."""
        try:
            if self.type is bool:
                if isinstance(value, str):
                    if value.lower() not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                        raise ValueError(value)
                    value = value.lower() in {"1", "true", "yes", "on"}
                converted: Any = bool(value)
            else:
                converted = self.type(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{owner}: setting {self.name!r} must be {self.type.__name__}, got {value!r}"
            ) from None
        if self.choices is not None and converted not in self.choices:
            raise ConfigError(
                f"{owner}: setting {self.name!r} is {converted!r}; valid: "
                + ", ".join(str(c) for c in self.choices)
            )
        if self.low is not None and converted < self.low:
            raise ConfigError(f"{owner}: setting {self.name!r} must be ≥ {self.low}, got {value}")
        if self.high is not None and converted > self.high:
            raise ConfigError(f"{owner}: setting {self.name!r} must be ≤ {self.high}, got {value}")
        return converted


def describe_settings(settings_type: type) -> list[SettingSpec]:
    """The settings of a dataclass type, in declaration order.

    Raises
    ------
    ConfigError
        If it is not a dataclass, or a field has no default or an unsupported type (only
        int, float, bool and str can become a flag and a form widget).
    """
    if not dataclasses.is_dataclass(settings_type):
        raise ConfigError(f"{settings_type!r}: settings must be a dataclass")
    hints = typing.get_type_hints(settings_type)
    specs = []
    for f in dataclasses.fields(settings_type):
        kind = hints[f.name]
        if kind not in (int, float, bool, str):
            raise ConfigError(
                f"{settings_type.__name__}.{f.name}: settings are int, float, bool or str"
            )
        if f.default is dataclasses.MISSING:
            raise ConfigError(f"{settings_type.__name__}.{f.name}: every setting has a default")
        meta = f.metadata.get(_META, {})
        specs.append(
            SettingSpec(
                name=f.name,
                type=kind,
                default=f.default,
                help=meta.get("help", ""),
                choices=meta.get("choices"),
                low=meta.get("low"),
                high=meta.get("high"),
                flag=meta.get("flag"),
                label=meta.get("label"),
            )
        )
    return specs


def settings_from(settings_type: type, values: typing.Mapping[str, Any] | None = None) -> Any:
    """An instance of ``settings_type`` from plain values (defaults for what is missing).

    Unknown names are refused with the valid ones listed: a typo must not pass silently for a
    default.
    """
    values = dict(values or {})
    specs = {spec.name: spec for spec in describe_settings(settings_type)}
    unknown = sorted(set(values) - set(specs))
    owner = settings_type.__name__
    if unknown:
        raise ConfigError(
            f"{owner}: unknown setting(s) {', '.join(unknown)}; valid: "
            + (", ".join(specs) or "none")
        )
    checked = {name: specs[name].check(value, owner) for name, value in values.items()}
    return settings_type(**checked)


def settings_dict(settings: Any) -> dict[str, Any]:
    """Plain, JSON-ready form of a settings instance."""
    return dataclasses.asdict(settings)
