"""Settings dataclasses: one definition for defaults, help, checks, flags and forms."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from cytoreview.cli.settings_flags import add_method_flags, chosen_settings
from cytoreview.errors import ConfigError
from cytoreview.plugin_api import (
    Contribution,
    Plugin,
    Preset,
    describe_settings,
    option,
    reset_catalog,
    settings_dict,
    settings_from,
)
from cytoreview.plugin_api.discovery import PluginCatalog, _install


@dataclass(frozen=True)
class Knobs:
    """Every kind of setting."""

    width: int = option(16, "channels of the first level", low=4, high=256)
    rate: float = option(0.5, "a fraction", low=0.0, high=1.0)
    deep: bool = option(True, "use the deep branch")
    mode: str = option("fast", "how", choices=("fast", "exact"))


def test_settings_are_described_checked_and_converted() -> None:
    specs = describe_settings(Knobs)
    assert [(s.name, s.type, s.default) for s in specs] == [
        ("width", int, 16), ("rate", float, 0.5), ("deep", bool, True), ("mode", str, "fast"),
    ]  # fmt: skip
    assert specs[0].help == "channels of the first level" and specs[3].choices == ("fast", "exact")
    made = settings_from(Knobs, {"width": "32", "deep": "off", "mode": "exact"})
    assert made == Knobs(width=32, rate=0.5, deep=False, mode="exact")
    assert settings_dict(made) == {"width": 32, "rate": 0.5, "deep": False, "mode": "exact"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"width": 2}, "width' must be ≥ 4"),
        ({"rate": 1.5}, "rate' must be ≤ 1.0"),
        ({"mode": "slow"}, "valid: fast, exact"),
        ({"width": "wide"}, "must be int"),
        ({"deep": "maybe"}, "must be bool"),
        ({"depth": 3}, "unknown setting.*depth; valid: width, rate, deep, mode"),
    ],
)
def test_bad_settings_say_which_and_why(values, message) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from(Knobs, values)


def test_a_settings_class_without_defaults_or_with_odd_types_is_refused() -> None:
    @dataclass(frozen=True)
    class NoDefault:
        width: int

    @dataclass(frozen=True)
    class ListSetting:
        sizes: tuple = option((1,), "sizes")

    with pytest.raises(ConfigError, match="every setting has a default"):
        describe_settings(NoDefault)
    with pytest.raises(ConfigError, match="int, float, bool or str"):
        describe_settings(ListSetting)
    with pytest.raises(ConfigError, match="target must be"):
        Contribution(kind="segmenter", name="x", description="", target="no_colon")


@pytest.fixture
def two_segmenters():
    """The built-in methods plus a test plugin with settings and a preset."""
    from cytoreview.plugin_api.builtin import PLUGIN as BUILTIN

    extra = Plugin(
        name="knobs-plugin",
        contributions=(
            Contribution(kind="segmenter", name="knobnet", description="a test network",
                         target="builtins:object", settings=Knobs,
                         presets=(Preset("paper", "the paper's", {"epochs": 7}),)),
        ),
        presets=(Preset("unet-short", "a short unet", {"epochs": 3}, applies_to="unet"),),
    )  # fmt: skip
    found = PluginCatalog()
    seen: dict = {}
    _install(found, BUILTIN, "0", "builtin", seen)
    _install(found, extra, "1.0", "extra", seen)
    reset_catalog(found)
    yield found
    reset_catalog()


def test_flags_come_from_the_settings_and_belong_to_their_method(two_segmenters) -> None:
    parser = argparse.ArgumentParser()
    add_method_flags(parser, "segmenter", default="unet", presets=True)
    help_text = parser.format_help()
    for flag in ("--encoder", "--knobnet-width", "--knobnet-deep", "--knobnet-mode", "--preset"):
        assert flag in help_text
    assert "unet-short (unet)" in help_text and "paper (knobnet)" in help_text
    args = parser.parse_args(["--arch", "knobnet", "--knobnet-width", "64", "--no-knobnet-deep"])
    assert chosen_settings(args, "segmenter", "knobnet") == {"width": 64, "deep": False}
    args = parser.parse_args(["--knobnet-width", "64"])  # the flag of a method not chosen
    with pytest.raises(ConfigError, match="--knobnet-width is a setting of knobnet, not of unet"):
        chosen_settings(args, "segmenter", "unet")
    args = parser.parse_args(["--arch", "knobnet", "--knobnet-width", "1"])
    with pytest.raises(ConfigError, match="must be ≥ 4"):
        chosen_settings(args, "segmenter", "knobnet")
    assert [(c.name, p.name, who) for c, p, who in two_segmenters.presets()] == [
        ("knobnet", "paper", "knobs-plugin"), ("unet", "unet-short", "knobs-plugin"),
    ]  # fmt: skip


def test_a_preset_then_the_users_own_choices(two_segmenters) -> None:
    from cytoreview.workflows.segmentation import seg_request

    request = seg_request("unet-short")
    assert (request.arch, request.epochs, request.preset) == ("unet", 3, "unet-short")
    request = seg_request("paper", epochs=9, settings={"width": 32})
    assert (request.arch, request.epochs, dict(request.settings)) == ("knobnet", 9, {"width": 32})
    with pytest.raises(ConfigError, match="preset 'paper' is a recipe of knobnet, not of unet"):
        seg_request("paper", arch="unet")
    with pytest.raises(ConfigError, match="unknown preset 'fast'; valid: paper, unet-short"):
        seg_request("fast")
