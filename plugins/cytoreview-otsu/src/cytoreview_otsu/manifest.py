"""What this plugin contributes, as data (torch-free: read when CytoReview lists its methods).

- the ``otsu`` mask generator (``cytoreview generate-masks PROJECT --generator otsu``): masks
  from grey conversion, Otsu thresholds and morphology, so a project can start with no painting;
- the ``wubineh2024`` preset of the built-in ``unet``: the paper's training recipe
  (``cytoreview train-seg PROJECT --preset wubineh2024 --include-generated``).

The five-backbone comparison of the paper is a core command (``cytoreview compare-encoders``),
since it compares the built-in U-Net's encoders; this preset gives it the paper's recipe
(``--preset wubineh2024``).
"""

from __future__ import annotations

from cytoreview.plugin_api import Contribution, Plugin, Preset
from cytoreview_otsu.settings import OtsuSettings

CITATION = (
    "Wubineh BZ, Rusiecki A, Halawa K. Segmentation of cytology images to detect cervical "
    "cancer using deep learning techniques."
)

#: The paper's augmentation is "rotation, flipping, and scaling": every other part of
#: cytoreview.data.transforms.AugmentConfig (shift, shear, colour, stain, blur) is switched
#: off; rotation, flips and zoom keep CytoReview's ranges (the paper gives none).
PAPER_AUGMENT = {
    "shift": 0.0,
    "shear": 0.0,
    "brightness": 0.0,
    "contrast": 0.0,
    "saturation": 0.0,
    "hue_deg": 0.0,
    "stain": 0.0,
    "blur_prob": 0.0,
}

#: Their recipe: Jaccard-distance loss, Adam at 0.003, batch 18, 100 epochs without early
#: stopping (patience = epochs, a constant learning rate, no weight averaging), 224 px input,
#: and the built-in U-Net's widest decoder (256-128-64-32-16 channels): theirs is wider still
#: (1024 down to 64), and CytoReview's default half-width decoder is not what they trained.
WUBINEH2024 = Preset(
    name="wubineh2024",
    description="Wubineh et al.'s U-Net recipe: Jaccard loss, Adam lr 0.003, batch 18, "
    "100 epochs without early stopping, 224 px, rotation/flip/scale augmentation only, "
    "the usual U-Net decoder width",
    values={
        "loss": "jaccard",
        "lr": 0.003,
        "batch_size": 18,
        "epochs": 100,
        "patience": 100,
        "lr_patience": 0,
        "ema_decay": 0.0,
        "input_size": 224,
        "augment": PAPER_AUGMENT,
        "settings": {"decoder_width": 256},
    },
    citation=CITATION,
    applies_to="unet",
)

PLUGIN = Plugin(
    name="cytoreview-otsu",
    contributions=(
        Contribution(
            kind="mask-generator",
            name="otsu",
            description="grey conversion, contrast stretch, Otsu thresholds (three-class, or cells "
            "then nuclei inside them), erosion/dilation: 3-class masks with no painting",
            target="cytoreview_otsu.masks:OTSU",
            settings=OtsuSettings,
            citation=CITATION,
        ),
    ),
    presets=(WUBINEH2024,),
)
