"""The three CNN branches of the feature-fusion classifier: VGG19, VGG-F and CaffeNet layouts.

Chowdary et al. fine-tune ImageNet networks at 224 px. CytoReview downloads no weights, so the
branches are trained on the project's cells; to make that feasible on a CPU they keep the
published layouts (kernel sizes, strides, number of conv and dense layers) with channel counts
scaled by ``width`` and dense layers ``fc_width`` wide instead of 4096. Two changes, for
training from scratch: batch norm after every convolution (instead of none in VGG19 and local
response normalisation in VGG-F / CaffeNet), and global average pooling before the dense layers
so any input side works. At ``width`` 1.0 the VGG19 branch has the layer names and conv shapes
of torchvision's ``vgg19_bn``, so a weights file of that network fits its conv layers.

Each branch: ``features`` (convolutions) -> global average pool -> ``classifier``
(``Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear(K)``). The output of the second dense
layer's ReLU is the branch's deep feature vector (the paper's "second last dense layer"); the
last linear layer is the temporary head that trains the branch.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["BRANCH_LAYOUTS", "CnnBranch", "make_branch"]

# (out channels, kernel, stride, padding) per conv; "M" a max pool. Published channel counts.
_VGG19 = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
          512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]  # fmt: skip
# "P": AlexNet's overlapping 3x3 / 2 max pool.
BRANCH_LAYOUTS: dict[str, list] = {
    # Simonyan & Zisserman 2015, configuration E: sixteen 3x3 convolutions, five 2x2 pools.
    "vgg19": [(c, 3, 1, 1) if c != "M" else "M" for c in _VGG19],
    # Chatfield et al. 2014 ("fast"): 64 11x11/4, 256 5x5, three 256 3x3.
    "vgg_f": [(64, 11, 4, 2), "P", (256, 5, 1, 2), "P"] + [(256, 3, 1, 1)] * 3 + ["P"],
    # Jia et al. 2014 (AlexNet as trained in Caffe): 96 11x11/4, 256 5x5, 384, 384, 256 3x3.
    "caffenet": [
        (96, 11, 4, 2),
        "P",
        (256, 5, 1, 2),
        "P",
        (384, 3, 1, 1),
        (384, 3, 1, 1),
        (256, 3, 1, 1),
        "P",
    ],
}


def _scaled(channels: int, width: float) -> int:
    return max(4, round(channels * width))


class CnnBranch(nn.Module):
    """One CNN of the fusion: conv features, pooled, two dense layers and a temporary head.

    Parameters
    ----------
    layout
        A key of :data:`BRANCH_LAYOUTS`.
    width
        Fraction of the published channel counts.
    fc_width
        Width of the two dense layers (the deep feature size).
    num_classes
        Outputs of the temporary head.
    dropout
        Dropout after each dense layer while the branch trains.
    """

    def __init__(
        self, layout: str, width: float, fc_width: int, num_classes: int, dropout: float = 0.5
    ) -> None:
        super().__init__()
        if layout not in BRANCH_LAYOUTS:
            raise ValueError(f"unknown branch {layout!r}; valid: {', '.join(BRANCH_LAYOUTS)}")
        layers: list[nn.Module] = []
        channels = 3
        for item in BRANCH_LAYOUTS[layout]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            elif item == "P":
                # Padding 1 keeps a 1x1 map 1x1: tiny test inputs still pass.
                layers.append(nn.MaxPool2d(3, 2, padding=1))
            else:
                out, kernel, stride, padding = item
                out = _scaled(out, width)
                layers += [
                    nn.Conv2d(channels, out, kernel, stride, padding),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                ]
                channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(channels, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_width, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(fc_width, num_classes),
        )
        self.feature_dim = fc_width

    @property
    def cam_layer(self) -> nn.Module:
        """The ReLU of the last convolution (before the last pool): Grad-CAM++'s layer."""
        relus = [m for m in self.features if isinstance(m, nn.ReLU)]
        return relus[-1]

    def deep_features(self, rgb: Tensor) -> Tensor:
        """``(N, fc_width)``: the second dense layer's activations (after its ReLU)."""
        pooled = self.pool(self.features(rgb)).flatten(1)
        return self.classifier[:5](pooled)

    def forward(self, rgb: Tensor) -> Tensor:
        """Temporary-head logits ``(N, K)`` of ``(N, 3, S, S)`` normalised crops."""
        return self.classifier[5:](self.deep_features(rgb))


def make_branch(layout: str, width: float, fc_width: int, num_classes: int) -> CnnBranch:
    """A randomly initialised branch (see :class:`CnnBranch`)."""
    return CnnBranch(layout, width, fc_width, num_classes)
