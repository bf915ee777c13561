"""CytoReview's own methods, declared as a plugin through the same entry-point group.

The built-in U-Net and the three classifier architectures have no special path: the workflows,
the command line and the workbench find them exactly as they find a third-party plugin's.
"""

from __future__ import annotations

from dataclasses import dataclass

from cytoreview.choices import (
    DECODER_WIDTHS,
    DEFAULT_DECODER_WIDTH,
    DEFAULT_ENCODER,
    SEG_ENCODERS,
    UNET_NAME,
)
from cytoreview.plugin_api.contributions import Contribution, Plugin
from cytoreview.plugin_api.settings import option

__all__ = ["PLUGIN", "UnetSettings"]

_FUSION = "image + mask fusion: an image branch and a mask branch"
#: The core method: U-Net from 80 painted seeds, image-only and fusion classifiers.
CORE_CITATION = (
    "Ortiz-González A, Martínez-España R, Morales-García J, et al. Segmentation techniques "
    "applied to CNNs for cervical cancer classification. IEEE Access. 2025. "
    "doi:10.1109/ACCESS.2025.3562762"
)


@dataclass(frozen=True)
class UnetSettings:
    """Settings of the built-in U-Net.

    ``decoder_width`` 128 (half the usual U-Net's decoder channels) is the default. Herlev, 80
    seeds, 4 seed splits, with even training batches (2026-12-07): Dice 0.802 / 0.901
    (cytoplasm / nucleus) against 0.805 / 0.907 with 256, within the splits' spread, in about
    half the time (a step 0.78x as long, and shorter runs); an early-stopped run alone on 2
    cores 2.7 minutes instead of 4-7 (``tests/benchmarks/README.md``, "Segmentation: a
    half-width decoder and even batches").
    """

    encoder: str = option(
        DEFAULT_ENCODER,
        "U-Net encoder; random weights unless --init gives a weights file",
        choices=SEG_ENCODERS,
        flag="--encoder",
    )
    decoder_width: int = option(
        DEFAULT_DECODER_WIDTH,
        "channels of the decoder's deepest block, halved at each shallower one (256: the usual "
        "U-Net; 128 trains faster and masked Herlev cells as well)",
        choices=DECODER_WIDTHS,
        flag="--decoder-width",
    )


PLUGIN = Plugin(
    name="cytoreview",
    contributions=(
        Contribution(
            kind="segmenter",
            name=UNET_NAME,
            description="U-Net with a chosen CNN encoder (segmentation-models-pytorch)",
            target="cytoreview.models.segmenters:UNET",
            settings=UnetSettings,
            citation="Ronneberger O, Fischer P, Brox T. U-Net: convolutional networks for "
            "biomedical image segmentation. MICCAI 2015.",
        ),
        Contribution(
            kind="classifier",
            name="fusion-gap",
            description=f"{_FUSION}, each globally average pooled, concatenated, dense head",
            target="cytoreview.models.classifiers:FUSION_GAP",
            uses_mask=True,
            citation=CORE_CITATION,
        ),
        Contribution(
            kind="classifier",
            name="fusion-flatten",
            description=f"{_FUSION}, each flattened, concatenated, dense head",
            target="cytoreview.models.classifiers:FUSION_FLATTEN",
            uses_mask=True,
            citation=CORE_CITATION,
        ),
        Contribution(
            kind="classifier",
            name="image-only",
            description="CNN on the RGB crop, globally average pooled, linear head",
            target="cytoreview.models.classifiers:IMAGE_ONLY",
            uses_mask=False,
            citation=CORE_CITATION,
        ),
    ),
)
