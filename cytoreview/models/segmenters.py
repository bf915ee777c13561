"""Segmentation networks: U-Net with an encoder chosen by name (segmentation-models-pytorch).

Weights are never downloaded (``encoder_weights=None``): clinical sites are often offline. A
weights file (ImageNet or an earlier project's checkpoint) can be loaded by the caller.
"""

from __future__ import annotations

import segmentation_models_pytorch as smp
import torch

# The encoder names live in the torch-free choices module (the CLI parser lists them without
# importing smp).
from cytoreview.choices import DEFAULT_ENCODER, SEG_ENCODERS
from cytoreview.errors import ConfigError
from cytoreview.models.registry import Registry

#: Spatial sizes must be multiples of this (five stride-2 stages).
SIZE_MULTIPLE = 32


def build_unet(
    encoder: str = DEFAULT_ENCODER, classes: int = 3, in_channels: int = 3
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
    """
    if encoder not in SEG_ENCODERS:
        raise ConfigError(f"unknown encoder {encoder!r}; valid: {', '.join(SEG_ENCODERS)}")
    return smp.Unet(
        encoder_name=encoder, encoder_weights=None, in_channels=in_channels, classes=classes
    )


SEGMENTERS: Registry[torch.nn.Module] = Registry("segmenter")
SEGMENTERS.register("unet", build_unet, "U-Net (segmentation-models-pytorch), encoder by name")


def build_segmenter(config: dict) -> torch.nn.Module:
    """Rebuild a segmenter from a checkpoint's config alone (``arch``, ``encoder``, classes)."""
    return SEGMENTERS.create(
        config.get("arch", "unet"),
        encoder=config.get("encoder", DEFAULT_ENCODER),
        classes=len(config.get("class_names", (0, 1, 2))),
        in_channels=int(config.get("in_channels", 3)),
    )
