"""What this plugin contributes, as data (torch-free: read when CytoReview lists its methods).

The settings live in the torch-free :mod:`cytoreview_pix2pix.settings`; the networks and the
trainer behind ``target`` are imported only when the method is used.
"""

from __future__ import annotations

from cytoreview.plugin_api import Contribution, Plugin, Preset
from cytoreview_pix2pix.settings import Pix2PixSettings

CITATION = (
    "Castro Cortés FJ, Galván-Tejada CE, Acosta Cruz E, Celaya-Padilla JM. Pix2Pix generative "
    "adversarial network for cellular nuclei and cytoplasm segmentation on Pap smear images. "
    "Revista Mexicana de Ingeniería Biomédica. 2025;46(2):1462. doi:10.17488/RMIB.46.2.1462"
)

PLUGIN = Plugin(
    name="cytoreview-pix2pix",
    contributions=(
        Contribution(
            kind="segmenter",
            name="pix2pix",
            description="Pix2Pix conditional GAN: a U-Net generator paints the cell as a colour "
            "map (nucleus blue, cytoplasm red, black border, background white) against a "
            "PatchGAN discriminator; masks by nearest colour",
            target="cytoreview_pix2pix.segmenter:PIX2PIX",
            settings=Pix2PixSettings,
            citation=CITATION,
            presets=(
                Preset(
                    name="castro-cortes2025",
                    description="Castro Cortes et al.'s recipe: 6 x 6 filters, 256 px input, "
                    "pix2pix's Adam lr 2e-4, 200 epochs without early stopping (hours on a CPU)",
                    values={
                        "settings": {"kernel": 6, "base_channels": 64, "lr": 2e-4},
                        "input_size": 256,
                        "epochs": 200,
                        "patience": 200,
                    },
                    citation=CITATION,
                ),
            ),
        ),
    ),
)
