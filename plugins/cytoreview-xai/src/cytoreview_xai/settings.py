"""Settings of the ``xai-weak`` mask generator (torch-free: the command-line parser reads them).

The defaults are what ``tests/benchmarks/bench_xai_masks_herlev.py`` measured best on Herlev
(mean Dice over cytoplasm and nucleus against the true masks); the paper's recipe is kept where
the paper gives one (SGD schedule, 50 epochs with early stopping, 128 px input).
"""

from __future__ import annotations

from dataclasses import dataclass

from cytoreview.plugin_api import option

__all__ = ["CLASSIFIERS", "EXPLANATIONS", "GROUPINGS", "INPUT_SIZE", "OPTIMISERS", "XaiSettings"]

#: The two classifiers of the paper: VGG16-Adapted128 and VGG16-Adapted128-Simplified.
CLASSIFIERS: tuple[str, ...] = ("adapted128", "simplified")
#: Grad-CAM++ and LRP with the paper's two composite rule sets (its Table 2).
EXPLANATIONS: tuple[str, ...] = ("gradcam++", "lrp-1", "lrp-2")
#: The paper's four relevance groupings (``cytoreview_xai.grouping``).
GROUPINGS: tuple[str, ...] = ("two-threshold", "gmm", "kmeans", "inter-means")
#: How the classifier is trained (``cytoreview_xai.training``).
OPTIMISERS: tuple[str, ...] = ("adam", "sgd")
#: The classifier's input side in pixels (the paper's "Adapted128").
INPUT_SIZE = 128


@dataclass(frozen=True)
class XaiSettings:
    """Settings of the ``xai-weak`` mask generator."""

    classifier: str = option(
        "adapted128",
        "the normal/abnormal classifier that is explained: adapted128 (VGG16 at 128 px, its "
        "4x4x512 features kept, dense layers 8192-4096-4096-2; the paper's best, 0.94 "
        "accuracy) or simplified (the last convolution block removed, 8x8x512 features)",
        choices=CLASSIFIERS,
    )
    explanation: str = option(
        "gradcam++",
        "how the classifier's decision becomes a relevance map: gradcam++ (on the last "
        "convolution block), lrp-1 (z-box first layer, gamma on blocks 1-3, epsilon on 4-5, "
        "LRP-0 on the dense layers) or lrp-2 (z-box first layer, gamma everywhere else)",
        choices=EXPLANATIONS,
    )
    grouping: str = option(
        "gmm",
        "how relevance is split into background, cytoplasm and nucleus (most relevant): "
        "two-threshold, gmm (3-component Gaussian mixture), kmeans (k = 3) or inter-means "
        "(iterated midpoints of the group means)",
        choices=GROUPINGS,
    )
    grabcut: bool = option(
        True,
        "refine the grouped nucleus and cell with OpenCV GrabCut on the image (off: the "
        "grouping is the mask)",
        label="GrabCut",
    )
    optimiser: str = option(
        "adam",
        "how the classifier learns, its rate divided by 10 every 7 epochs: adam (lr 0.0001) "
        "or sgd (the paper's: lr 0.001, momentum 0.9, made for fine-tuning ImageNet weights; "
        "from scratch on Herlev it stayed at chance for 8 epochs where adam reached 0.80 "
        "accuracy)",
        choices=OPTIMISERS,
    )
    epochs: int = option(
        50,
        "most classifier training epochs (the paper's 50, with early stopping)",
        low=1,
        high=500,
    )
    patience: int = option(
        7,
        "stop training after this many epochs without a better validation F1",
        low=1,
        high=500,
    )
    weights: str = option(
        "",
        "a classifier file saved by an earlier run (the project model it stored): no "
        "training, its weights are used as they are",
    )
