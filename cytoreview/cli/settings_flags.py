"""Command-line flags built from the methods' settings dataclasses.

Every installed contribution of a kind (segmenter, classifier, mask generator) adds an
argument group with one flag per setting, named ``--<contribution>-<setting>`` unless the
setting names its own flag (the built-in U-Net's ``--encoder``). The flag's type, choices,
default and help all come from the one dataclass the workbench's form is built from too.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

from cytoreview.errors import ConfigError
from cytoreview.plugin_api import Contribution, catalog, describe_settings
from cytoreview.plugin_api.settings import SettingSpec

__all__ = ["add_method_flags", "chosen_settings", "flag_of"]

log = logging.getLogger(__name__)
_PREFIX = "method_setting"


def flag_of(contribution: Contribution, spec: SettingSpec) -> str:
    """The flag of one setting of one contribution."""
    return spec.flag or f"--{contribution.name}-{spec.name.replace('_', '-')}"


def _dest(contribution: Contribution, spec: SettingSpec) -> str:
    return f"{_PREFIX}__{contribution.kind}__{contribution.name}__{spec.name}"


def _type_of(spec: SettingSpec) -> Any:
    return spec.type


def _plain(text: str) -> str:
    """``text`` for argparse's help, which %-formats it ("keeps 95 % of the variance")."""
    return text.replace("%", "%%")


def add_method_flags(
    parser: argparse.ArgumentParser,
    kind: str,
    *,
    choose: str = "--arch",
    default: str | None = None,
    presets: bool = False,
    where: Callable[[Contribution], bool] | None = None,
) -> None:
    """Add the flag that chooses a method of ``kind`` and every method's settings flags.

    Parameters
    ----------
    choose
        The flag that picks the method (``--arch``, ``--generator``).
    default
        The method a user gets without choosing (None: the flag is required).
    presets
        Also add ``--preset NAME`` (the recipes the methods publish).
    where
        Only the contributions it accepts (e.g. the generators that learn from class labels).
    """
    found = [c for c in catalog().contributions(kind) if where is None or where(c)]
    names = [c.name for c in found]
    described = "; ".join(f"{c.name}: {c.description}" for c in found)
    parser.add_argument(
        choose, choices=names, default=default, required=default is None,
        help=_plain(described) + (f" (default {default})" if default else ""),
    )  # fmt: skip
    if presets:
        recipes = [f"{p.name} ({c.name}): {p.description}" for c, p, _ in catalog().presets()]
        parser.add_argument(
            "--preset", metavar="NAME",
            help="a published training recipe; flags you give still win: "
            + _plain("; ".join(recipes) or "none installed"),
        )  # fmt: skip
    for contribution in found:
        specs = describe_settings(contribution.settings)
        if not specs:
            continue
        group = parser.add_argument_group(
            f"settings of {contribution.name}"
            + (f" (plugin {contribution.plugin})" if contribution.plugin != "cytoreview" else "")
        )
        for spec in specs:
            kwargs: dict[str, Any] = {"dest": _dest(contribution, spec), "default": None}
            shown = _plain(f"{spec.help} (default {spec.default})")
            if spec.type is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = _type_of(spec)
                if spec.choices:
                    kwargs["choices"] = spec.choices
                else:
                    kwargs["metavar"] = spec.type.__name__.upper()
            try:
                group.add_argument(flag_of(contribution, spec), help=shown, **kwargs)
            except argparse.ArgumentError as exc:  # two plugins chose one flag: the first wins
                log.warning("plugin %s: %s; flag left out", contribution.plugin, exc)


def chosen_settings(args: argparse.Namespace, kind: str, name: str) -> dict[str, Any]:
    """The settings given on the command line for method ``name`` (checked).

    Raises
    ------
    ConfigError
        If a flag of another method was given (it would be silently ignored otherwise).
    """
    given: dict[str, Any] = {}
    for key, value in vars(args).items():
        if not key.startswith(f"{_PREFIX}__{kind}__") or value is None:
            continue
        _, _, owner, setting = key.split("__", 3)
        if owner != name:
            contribution = catalog().get(kind, owner)
            spec = next(s for s in describe_settings(contribution.settings) if s.name == setting)
            raise ConfigError(
                f"{flag_of(contribution, spec)} is a setting of {owner}, not of {name}; "
                f"choose {owner} or leave the flag out"
            )
        given[setting] = value
    catalog().get(kind, name).make_settings(given)  # checks ranges now, before any work
    return given
