"""What this plugin contributes, as data (torch-free: read when CytoReview lists its methods).

The settings dataclasses live in their own torch-free modules (one per method); the code behind
each ``target`` is imported only when the method is used.
"""

from __future__ import annotations

from cytoreview.plugin_api import Contribution, Plugin, Preset
from cytoreview_chowdary.fusion_settings import FusionMlpSettings
from cytoreview_chowdary.rse_settings import RseUnetSettings

CITATION = (
    "Chowdary GJ, G S, P M, Yogarajah P. Nucleus segmentation and classification using "
    "residual SE-UNet and feature concatenation approach in cervical cytopathology cell "
    "images. Technology in Cancer Research & Treatment. 2023;22. doi:10.1177/15330338221134833"
)

PLUGIN = Plugin(
    name="cytoreview-chowdary",
    contributions=(
        Contribution(
            kind="segmenter",
            name="rse-unet",
            description="Residual squeeze-and-excitation U-Net (four residual SE modules down "
            "and up, stride-2 downsampling)",
            target="cytoreview_chowdary.rse_unet:RSE_UNET",
            settings=RseUnetSettings,
            citation=CITATION,
            presets=(
                Preset(
                    name="chowdary2023",
                    description="Chowdary et al.'s recipe: Dice loss, Adam lr 1e-5, batch 16 "
                    "(slow on a CPU: the default recipe converges in minutes)",
                    values={"loss": "dice", "lr": 1e-5, "batch_size": 16},
                    citation=CITATION,
                ),
            ),
        ),
        Contribution(
            kind="classifier",
            name="feature-fusion-mlp",
            description="three CNN feature sets + LBP histogram + SIFT bag of visual words, "
            "PCA per group, concatenated, multi-layer perceptron",
            target="cytoreview_chowdary.fusion_mlp:FEATURE_FUSION_MLP",
            settings=FusionMlpSettings,
            citation=CITATION,
            uses_mask=False,
        ),
    ),
)
