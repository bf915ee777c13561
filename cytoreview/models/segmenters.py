"""Segmentation networks, built by contribution name from the plugin catalog.

The built-in one is a U-Net with an encoder chosen by name (segmentation-models-pytorch),
contributed as ``unet`` through the same plugin interface as any third-party network
(:mod:`cytoreview.plugin_api.builtin`). Weights are never downloaded (``encoder_weights=None``):
clinical sites are often offline. A weights file (ImageNet or an earlier project's checkpoint)
can be loaded by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import segmentation_models_pytorch as smp
import torch

# The encoder names live in the torch-free choices module (the CLI parser lists them without
# importing smp).
from cytoreview.choices import (
    DECODER_WIDTHS,
    DEFAULT_DECODER_WIDTH,
    DEFAULT_ENCODER,
    DEFAULT_SEGMENTER,
    LEGACY_DECODER_WIDTH,
    SEG_ENCODERS,
    UNET_NAME,
)
from cytoreview.errors import ConfigError
from cytoreview.plugin_api import Contribution, find

__all__ = [
    "DEFAULT_SEGMENTER",
    "SEG_ENCODERS",
    "SIZE_MULTIPLE",
    "UNET",
    "build_segmenter",
    "build_unet",
    "describe_segmenter",
    "segmenter_contribution",
    "segmenter_method",
]

#: Spatial sizes of the U-Net must be multiples of this (five stride-2 stages).
SIZE_MULTIPLE = 32


def build_unet(
    encoder: str = DEFAULT_ENCODER,
    classes: int = 3,
    in_channels: int = 3,
    decoder_width: int = DEFAULT_DECODER_WIDTH,
) -> torch.nn.Module:
    """A U-Net with a randomly initialised encoder.

    Parameters
    ----------
    encoder
        One of :data:`SEG_ENCODERS`.
    classes
        Output channels (3: background, cytoplasm, nucleus).
    in_channels
        Input channels (3: RGB).
    decoder_width
        Channels of the decoder's deepest block; each of the five blocks has half the channels
        of the one before (256: segmentation-models-pytorch's default, 256-128-64-32-16).
    """
    if encoder not in SEG_ENCODERS:
        raise ConfigError(f"unknown encoder {encoder!r}; valid: {', '.join(SEG_ENCODERS)}")
    if decoder_width not in DECODER_WIDTHS:
        valid = ", ".join(map(str, DECODER_WIDTHS))
        raise ConfigError(f"decoder width must be one of {valid}, not {decoder_width!r}")
    return smp.Unet(
        encoder_name=encoder,
        encoder_weights=None,
        in_channels=in_channels,
        classes=classes,
        decoder_channels=[decoder_width >> level for level in range(5)],
    )


@dataclass(frozen=True)
class UnetMethod:
    """The built-in segmenter contribution (see :class:`~cytoreview.plugin_api.protocols`)."""

    size_multiple: int = SIZE_MULTIPLE

    def build(self, settings: Any, *, classes: int, in_channels: int) -> torch.nn.Module:
        """A U-Net with the settings' encoder and decoder width."""
        return build_unet(
            settings.encoder,
            classes=classes,
            in_channels=in_channels,
            # A plugin that builds through this method with settings of its own, written before
            # the setting existed, gets the decoder it always got: its models must still load.
            decoder_width=getattr(settings, "decoder_width", LEGACY_DECODER_WIDTH),
        )

    def weight_targets(self, model: torch.nn.Module) -> list[torch.nn.Module]:
        """A weights file may name the whole U-Net or its encoder alone (ImageNet weights)."""
        return [model, model.encoder]


UNET = UnetMethod()


def segmenter_contribution(config: dict[str, Any]) -> Contribution:
    """The contribution that made (or makes) the model a config describes.

    A checkpoint made before plugins existed has no ``arch`` settings record; it was a U-Net.
    """
    return find("segmenter", str(config.get("arch", DEFAULT_SEGMENTER)), config.get("plugin"))


def segmenter_method(config: dict[str, Any]) -> Any:
    """The loaded method object behind :func:`segmenter_contribution`."""
    return segmenter_contribution(config).load()


def segmenter_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The method's settings recorded in ``config``.

    Older U-Net configs have their ``encoder`` outside a settings record, and a U-Net config
    without ``decoder_width`` was written before that setting existed: its network had the
    usual decoder (:data:`~cytoreview.choices.LEGACY_DECODER_WIDTH`), not today's default, and
    is rebuilt as it was, so that its weights fit.
    """
    settings = config.get("settings")
    if settings is None:
        settings = {"encoder": config["encoder"]} if "encoder" in config else {}
    settings = dict(settings)
    if config.get("arch", DEFAULT_SEGMENTER) == UNET_NAME:
        settings.setdefault("decoder_width", LEGACY_DECODER_WIDTH)
    return settings


def describe_segmenter(config: dict[str, Any]) -> str:
    """A model's network in words, from its config alone (no plugin needs to be installed).

    E.g. ``unet (encoder resnet18)`` or ``rse-unet (base_channels 32) from plugin
    cytoreview-chowdary 0.1.0``.
    """
    settings = segmenter_settings(config)
    inner = ", ".join(f"{k} {v}" for k, v in settings.items())
    text = str(config.get("arch", DEFAULT_SEGMENTER)) + (f" ({inner})" if inner else "")
    made_by = config.get("plugin") or {}
    if made_by.get("plugin") and made_by["plugin"] != "cytoreview":
        text += f" from plugin {made_by['plugin']} {made_by.get('version', '')}".rstrip()
    return text


def build_segmenter(config: dict[str, Any]) -> torch.nn.Module:
    """Rebuild a segmenter from a checkpoint's config alone (``arch``, ``settings``, classes)."""
    contribution = segmenter_contribution(config)
    method = contribution.load()
    return method.build(
        contribution.make_settings(segmenter_settings(config)),
        classes=len(config.get("class_names", (0, 1, 2))),
        in_channels=int(config.get("in_channels", 3)),
    )
