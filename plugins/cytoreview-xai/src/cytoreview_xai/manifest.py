"""What this plugin contributes, as data (torch-free: read when CytoReview lists its methods).

The ``xai-weak`` mask generator makes masks from the project's class labels alone
(``cytoreview masks-from-labels PROJECT``; the workbench's "Masks from class labels…"): its
``prepare`` step trains a normal/abnormal VGG16 classifier on the labelled images, and each
image's mask is that classifier's explanation (Grad-CAM++ or LRP) grouped into background,
cytoplasm and nucleus and refined with GrabCut (``cytoreview_xai.generator``).
"""

from __future__ import annotations

from cytoreview.plugin_api import Contribution, Plugin
from cytoreview_xai.settings import XaiSettings

CITATION = (
    "Sritharan N, Gnanavel N, Inparaj P, Meedeniya D, Yogarajah P. Explainable Artificial "
    "Intelligence Driven Segmentation for Cervical Cancer Screening. IEEE Access, 2025. "
    "doi:10.1109/ACCESS.2025.3561178"
)

PLUGIN = Plugin(
    name="cytoreview-xai",
    contributions=(
        Contribution(
            kind="mask-generator",
            name="xai-weak",
            description="masks from class labels alone: a normal/abnormal VGG16 classifier "
            "trained on the project's labels, explained (Grad-CAM++ or LRP), the relevance "
            "grouped into background/cytoplasm/nucleus and refined with GrabCut",
            target="cytoreview_xai.generator:XAI_WEAK",
            settings=XaiSettings,
            citation=CITATION,
            uses_labels=True,
        ),
    ),
)
