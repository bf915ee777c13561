"""The paper's two normal/abnormal classifiers: VGG16-Adapted128 and its Simplified variant.

Sritharan et al. (Section III-C-2) adapt VGG16 to 128 px inputs:

* **VGG16-Adapted128**: the five convolution blocks of VGG16 leave a 4x4x512 feature map at
  128 px; the average pool is widened to 4x4 so that map is kept whole (no averaging), and
  the first dense layer takes its 8192 values. Dense layers 8192-4096-4096-2.
* **VGG16-Adapted128-Simplified**: the last convolution block is removed, leaving 8x8x512;
  the pool is 8x8 and the first dense layer takes 32768 values. Dense 32768-4096-4096-2.

The layers are named as torchvision's ``vgg16`` (``features.N``, ``avgpool``, ``classifier.N``)
and built with torchvision's own ``make_layers``, so a weights file of torchvision's VGG16 fits
the convolution blocks. Nothing is downloaded: the weights start from torchvision's VGG
initialisation (Kaiming-normal convolutions, N(0, 0.01) dense layers, zero biases).

``channels_scale`` shrinks every width (convolutions and dense layers) for fast tests; the
product always uses 1.0, so it is a constructor argument, not a setting.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.vgg import make_layers

__all__ = ["ARCHITECTURES", "VggSpec", "XaiVgg", "build_classifier"]

#: VGG16's configuration "D": output channels of each convolution, "M" a 2x2 max pool.
_VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip
_DENSE = 4096
#: The two outputs: index 1 is "abnormal" (the project's binary "needs review" call).
CLASS_NAMES: tuple[str, str] = ("normal", "abnormal")
ABNORMAL = 1


@dataclass(frozen=True)
class VggSpec:
    """One architecture of the paper.

    Attributes
    ----------
    name
        What a checkpoint records (``vgg16-adapted128``...).
    blocks
        Convolution blocks kept (5 for Adapted128, 4 for Simplified).
    pool
        Side of the average pool's output: the feature map is kept whole at 128 px.
    """

    name: str
    blocks: int
    pool: int


#: The ``classifier`` setting's choices, by name.
ARCHITECTURES: dict[str, VggSpec] = {
    "adapted128": VggSpec("vgg16-adapted128", blocks=5, pool=4),
    "simplified": VggSpec("vgg16-adapted128-simplified", blocks=4, pool=8),
}


def _scaled(width: int, scale: float) -> int:
    return max(1, round(width * scale))


def _feature_cfg(blocks: int, scale: float) -> list[int | str]:
    """VGG16's configuration cut after ``blocks`` max pools, widths scaled."""
    cfg: list[int | str] = []
    pools = 0
    for item in _VGG16_CFG:
        if pools == blocks:
            break
        cfg.append(item if item == "M" else _scaled(int(item), scale))
        pools += item == "M"
    return cfg


class XaiVgg(nn.Module):
    """A VGG16 normal/abnormal classifier with the paper's adapted pool and dense layers.

    Parameters
    ----------
    spec
        :data:`ARCHITECTURES` entry.
    channels_scale
        Multiplies every width (tests only; 1.0 is the paper's network).
    dropout
        torchvision VGG's dropout between the dense layers.

    Notes
    -----
    ``cam_layer`` is the last ReLU of the last convolution block (before its max pool): the
    feature map that Grad-CAM++ explains, 8x8 for Adapted128 and 16x16 for Simplified at
    128 px (twice the resolution of the pooled map, and non-negative, as Grad-CAM++ assumes).
    """

    def __init__(self, spec: VggSpec, channels_scale: float = 1.0, dropout: float = 0.5) -> None:
        super().__init__()
        self.spec = spec
        self.features = make_layers(_feature_cfg(spec.blocks, channels_scale), batch_norm=False)
        self.avgpool = nn.AdaptiveAvgPool2d((spec.pool, spec.pool))
        last = next(m for m in reversed(self.features) if isinstance(m, nn.Conv2d))
        dense = _scaled(_DENSE, channels_scale)
        self.classifier = nn.Sequential(
            nn.Linear(last.out_channels * spec.pool * spec.pool, dense),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(dense, dense),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(dense, len(CLASS_NAMES)),
        )
        self._init_weights()

    @property
    def cam_layer(self) -> nn.Module:
        """The ReLU before the last max pool (a property: an attribute would register it twice)."""
        return self.features[-2]

    def _init_weights(self) -> None:
        # torchvision's VGG initialisation (torchvision.models.vgg.VGG.__init__).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 2)`` logits (normal, abnormal) of ``(N, 3, 128, 128)`` normalised RGB."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def build_classifier(name: str, channels_scale: float = 1.0) -> XaiVgg:
    """The ``classifier`` setting's network, randomly initialised (nothing downloaded).

    Examples
    --------
    >>> net = build_classifier("adapted128", channels_scale=1 / 16)
    >>> net(torch.zeros(1, 3, 128, 128)).shape
    torch.Size([1, 2])
    """
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown classifier {name!r}; valid: {', '.join(ARCHITECTURES)}")
    return XaiVgg(ARCHITECTURES[name], channels_scale)
