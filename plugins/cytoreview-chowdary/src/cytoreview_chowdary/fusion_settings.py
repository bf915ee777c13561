"""Settings of the feature-fusion MLP classifier (torch-free: read when the CLI parser is built).

Chowdary et al. fine-tune ImageNet VGG19, VGG-F and CaffeNet (224 px, 4096-wide dense layers),
add an LBP histogram and a SURF bag of features (150 words), reduce every group by PCA to 95 %
of its variance and train a one-hidden-layer MLP (batch 32). Here the three CNNs are trained on
the project's own cells, so they are narrower by default (``width``): a full VGG19 at 128 px
costs about 6 GFLOP per image, far too slow to train on a laptop CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from cytoreview.plugin_api import option

#: Feature groups in the order they are concatenated (and recorded in a checkpoint).
CNN_BRANCHES: tuple[str, ...] = ("vgg19", "vgg_f", "caffenet")
HANDCRAFTED: tuple[str, ...] = ("lbp", "bovw")
KEYPOINT_MODES: tuple[str, ...] = ("dense", "detected")


@dataclass(frozen=True)
class FusionMlpSettings:
    """Settings of the feature-fusion MLP classifier."""

    vgg19: bool = option(True, "use the VGG19-layout CNN branch (16 conv layers)")
    vgg_f: bool = option(True, "use the VGG-F-layout CNN branch (5 conv layers, 11x11 stem)")
    caffenet: bool = option(True, "use the CaffeNet-layout CNN branch (AlexNet's 5 conv layers)")
    lbp: bool = option(True, "use the 256-bin LBP histogram (8 neighbours, radius 1)")
    bovw: bool = option(True, "use the bag of visual words of SIFT descriptors (SURF is non-free)")
    width: float = option(
        0.125,
        "channel width of the CNN branches as a fraction of the published networks' "
        "(1.0 = full VGG19 / VGG-F / CaffeNet; full size is very slow on a CPU)",
        low=0.03,
        high=1.0,
    )
    fc_width: int = option(
        256, "width of the CNN branches' two dense layers (published: 4096)", low=8, high=4096
    )
    variance: float = option(
        95.0, "PCA per feature group keeps this % of the variance (published: 95)", low=1.0,
        high=100.0,
    )  # fmt: skip
    words: int = option(150, "visual words of the SIFT codebook (published: 150)", low=2, high=4096)
    keypoints: str = option(
        "dense",
        "SIFT keypoints: a dense grid (robust on small crops) or the detector's",
        choices=KEYPOINT_MODES,
    )
    mlp_hidden: int = option(256, "neurons of the MLP's hidden layer", low=4, high=8192)
    mlp_epochs: int = option(300, "most epochs of the MLP (early stopping ends it sooner)", low=1)
    mlp_batch: int = option(32, "MLP batch size (published: 32)", low=2, high=1024)
    mlp_lr: float = option(1e-3, "Adam learning rate of the MLP", low=1e-6, high=1.0)

    @property
    def branches(self) -> tuple[str, ...]:
        """The CNN branches switched on, in concatenation order."""
        return tuple(b for b in CNN_BRANCHES if getattr(self, b))

    @property
    def groups(self) -> tuple[str, ...]:
        """Every feature group switched on, in concatenation order."""
        return self.branches + tuple(g for g in HANDCRAFTED if getattr(self, g))
