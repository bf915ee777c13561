"""Methods declared for the workbench's form tests: every kind of setting, and presets.

Declared only (the panels list them and build their forms; nothing trains them), so their
targets name objects that are never loaded by these tests. The preset for the built-in U-Net
shows how a plugin publishes a recipe for another plugin's segmenter.
"""

from __future__ import annotations

from dataclasses import dataclass

from cytoreview.plugin_api import Contribution, Plugin, Preset, option


@dataclass(frozen=True)
class EveryKindSettings:
    """One setting of each kind a form shows."""

    depth: int = option(4, "down-sampling steps", low=2, high=6)
    lr_scale: float = option(0.005, "learning-rate multiplier", low=0.0001, high=1.0)
    squeeze: bool = option(True, "squeeze-and-excitation blocks", label="SE blocks")
    norm: str = option("batch", "normalisation layers", choices=("batch", "group", "none"))
    tag: str = option("", "free text recorded with the model")


@dataclass(frozen=True)
class HeadSettings:
    """A classifier's own setting."""

    hidden: int = option(128, "units of the hidden layer", low=8, high=4096)


PLUGIN = Plugin(
    name="cytoreview-form-test",
    contributions=(
        Contribution(
            kind="segmenter",
            name="every-kind-net",
            description="a declared segmenter with one setting of each kind",
            target="tests.plugins.form_methods:NOT_LOADED",
            settings=EveryKindSettings,
            presets=(
                Preset(
                    "every-kind-deep",
                    "a deeper net, group norm, 120 epochs",
                    {"epochs": 120, "lr": 0.002, "settings": {"depth": 6, "norm": "group"}},
                ),
            ),
        ),
        Contribution(
            kind="classifier",
            name="declared-mlp",
            description="a declared classifier with a setting and no mask branch",
            target="tests.plugins.form_methods:NOT_LOADED",
            settings=HeadSettings,
            uses_mask=False,
        ),
    ),
    presets=(
        Preset(
            "unet-quick",
            "a quick U-Net: 40 epochs at 128 px, lr 2e-3, resnet34, Jaccard loss",
            {
                "epochs": 40,
                "input_size": 128,
                "lr": 0.002,
                "loss": "jaccard",
                "settings": {"encoder": "resnet34"},
            },
            applies_to="unet",
        ),
    ),
)
