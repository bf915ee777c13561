"""The Residual SE U-Net of Chowdary et al. (2023) as a CytoReview segmenter.

Structure (the paper's "9 level architecture" for ``depth`` 4)::

    input ─ enc1 ─────────────────────────────── dec1 ─ 1x1 head ─ logits
             └ enc2 (stride 2) ──────────── dec2 ┘
                └ enc3 (stride 2) ───── dec3 ┘
                   └ enc4 (stride 2) ─ dec4 ┘
                      └ bridge (stride 2) ┘

Every box is a residual SE module: two 3 x 3 convolutions, each followed by batch norm, the
first by a ReLU; a squeeze-and-excitation block (global average pool, a reducing and an
expanding fully connected layer with a ReLU between, sigmoid weights that scale the channels);
a shortcut (identity, or a 1 x 1 convolution + batch norm where the width or the resolution
changes) added, then a ReLU. By default the SE block weighs the residual branch before the sum
(Hu et al.'s SE-ResNet module); ``se_position="output"`` weighs the module's output after it
(why the default is the former: :class:`~cytoreview_chowdary.rse_settings.RseUnetSettings`).
Downsampling is the stride 2 of a module's first convolution, not pooling ("to preserve
positional information", the paper says); the first encoder module keeps the full resolution,
as in the residual U-Net this design follows (Zhang et al. 2018), so the paper's four
downsamplings are those of enc2-enc4 and the bridge. Each decoder module takes the previous
level upsampled 2x (bilinear; a learnt transposed convolution trained more slowly on a
synthetic set) concatenated with the encoder features of its level.

The paper ends in one sigmoid channel (nucleus against the rest); here a 1 x 1 convolution
gives logits for CytoReview's classes (background, cytoplasm, nucleus), softmaxed by the core.

Notes for the core's inference: the SE blocks pool over the whole input window, so a pixel's
output depends a little on the rest of the window (tile or crop) it is predicted in, as during
training, where the windows have the same size; it never depends on the other images of a
batch (the pooling is per image). Everything exports to ONNX with dynamic batch, height and
width (GlobalAveragePool, Resize, Concat).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the conventional name

from cytoreview_chowdary.rse_settings import MAX_DEPTH, SE_POSITIONS, RseUnetSettings

__all__ = ["RSE_UNET", "ResidualSEModule", "RseUnet", "RseUnetMethod", "SqueezeExcitation"]

#: Fewest hidden units of an SE block: a 16-channel level with ratio 16 would squeeze to one.
MIN_SE_HIDDEN = 4


class SqueezeExcitation(nn.Module):
    """Channel weights from the globally pooled features (Hu et al. 2018).

    The two fully connected layers are 1 x 1 convolutions on the ``(N, C, 1, 1)`` pooled map:
    the same arithmetic as ``nn.Linear``, without a reshape that would tie the exported graph
    to one batch size.
    """

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(MIN_SE_HIDDEN, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` scaled channel by channel by weights in (0, 1)."""
        weights = torch.sigmoid(self.expand(F.relu(self.reduce(self.pool(x)))))
        return x * weights


class Subsample(nn.Module):
    """Every ``stride``-th pixel of each row and column, from the first.

    Followed by a 1 x 1 convolution this is exactly a 1 x 1 convolution with that stride. It is
    written this way because the strided 1 x 1 convolution's weight gradient is broken in
    oneDNN for channels-last inputs with few channels (the core trains channels-last on the
    CPU): with torch 2.14 a 8 -> 16 channel shortcut freed memory twice and crashed the
    process, and oneDNN reports wrong gradients without a crash in the same case
    (https://github.com/uxlfoundation/oneDNN/issues/6035, "1x1 convolution backward_weights
    writes past the rtus workspace (nhwc, IC < ic_block)"; stride 1 is not affected).
    """

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x[:, :, ::stride, ::stride]``."""
        return x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]


class ResidualSEModule(nn.Module):
    """Two 3 x 3 conv + batch norm with a shortcut, then squeeze-and-excitation.

    Parameters
    ----------
    in_channels, out_channels
        Widths in and out.
    stride
        2 halves the resolution (in the first convolution and in the shortcut).
    se_reduction
        The SE block's squeeze ratio.
    use_se
        False: the residual block alone (the paper's ablation).
    se_position
        ``"residual"``: SE weighs the residual branch before the sum (Hu et al.); ``"output"``:
        the module's output after it (see ``RseUnetSettings.se_position``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        se_reduction: int,
        use_se: bool,
        se_position: str = "residual",
    ) -> None:
        super().__init__()
        # No conv bias: the batch norm right after it has its own shift.
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        else:  # the sum needs the same width and resolution on both branches
            self.shortcut = nn.Sequential(
                Subsample(stride),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.se: nn.Module = (
            SqueezeExcitation(out_channels, se_reduction) if use_se else nn.Identity()
        )
        if se_position not in SE_POSITIONS:
            raise ValueError(f"se_position {se_position!r}; valid: {', '.join(SE_POSITIONS)}")
        self.se_on_residual = se_position == "residual"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The module's output: ``(N, out_channels, H / stride, W / stride)``."""
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.se_on_residual:
            return F.relu(self.se(y) + self.shortcut(x))
        return self.se(F.relu(y + self.shortcut(x)))


class RseEncoder(nn.Module):
    """The encoder modules and the bridge; gives the features of every level, finest first."""

    def __init__(self, settings: RseUnetSettings, in_channels: int) -> None:
        super().__init__()
        widths = [settings.base_channels * 2**level for level in range(settings.depth + 1)]
        blocks = []
        previous = in_channels
        for level, width in enumerate(widths):
            # The first module keeps the input resolution; the others and the bridge halve it.
            blocks.append(
                ResidualSEModule(
                    previous,
                    width,
                    stride=1 if level == 0 else 2,
                    se_reduction=settings.se_reduction,
                    use_se=settings.use_se,
                    se_position=settings.se_position,
                )
            )
            previous = width
        self.blocks = nn.ModuleList(blocks)
        self.widths = widths
        self.bridge_dropout = nn.Dropout2d(settings.dropout)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of each level (``depth`` encoder levels, then the bridge)."""
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        features[-1] = self.bridge_dropout(features[-1])
        return features


class RseUnet(nn.Module):
    """The Residual SE U-Net: ``(N, in_channels, H, W)`` to ``(N, classes, H, W)`` logits.

    ``H`` and ``W`` must be multiples of :attr:`size_multiple` (``2 ** depth``).
    """

    def __init__(self, settings: RseUnetSettings, *, classes: int, in_channels: int) -> None:
        super().__init__()
        self.encoder = RseEncoder(settings, in_channels)
        widths = self.encoder.widths
        self.size_multiple = 2**settings.depth
        # Decoder level i takes level i+1 upsampled and the encoder's level i, coarsest first.
        self.decoder = nn.ModuleList(
            ResidualSEModule(
                widths[level + 1] + widths[level],
                widths[level],
                stride=1,
                se_reduction=settings.se_reduction,
                use_se=settings.use_se,
                se_position=settings.se_position,
            )
            for level in reversed(range(settings.depth))
        )
        self.head = nn.Conv2d(widths[0], classes, 1)
        # He initialisation (torchvision's ResNets' choice) instead of torch's default, whose
        # gain is too small for a ReLU network: on a synthetic set (base 8 and 16, 8 epochs of
        # 2 steps) it took the validation loss from 0.91 / 0.83 to 0.69 / 0.57.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel class logits at the input's resolution."""
        if not torch.jit.is_tracing():  # while exporting, the shape is symbolic
            h, w = x.shape[-2:]
            if h % self.size_multiple or w % self.size_multiple:
                raise ValueError(
                    f"input {h} x {w}: sides must be multiples of {self.size_multiple}"
                )
        features = self.encoder(x)
        y = features[-1]
        for block, skip in zip(self.decoder, reversed(features[:-1]), strict=True):
            # Sides are multiples of 2**depth, so 2x upsampling meets the skip exactly.
            y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        return self.head(y)


@dataclass(frozen=True)
class RseUnetMethod:
    """The ``rse-unet`` segmenter contribution (see ``cytoreview.plugin_api.protocols``).

    ``size_multiple`` is a property of the method, not of one network: it is that of the
    deepest network the settings allow (``2 ** MAX_DEPTH`` = 32), which every shallower one
    accepts too. A network's own is ``RseUnet.size_multiple``.
    """

    size_multiple: int = 2**MAX_DEPTH

    def build(self, settings: RseUnetSettings, *, classes: int, in_channels: int) -> RseUnet:
        """A randomly initialised Residual SE U-Net."""
        return RseUnet(settings, classes=classes, in_channels=in_channels)

    def weight_targets(self, model: RseUnet) -> list[nn.Module]:
        """A weights file may hold the whole network or its encoder alone (with the bridge)."""
        return [model, model.encoder]


RSE_UNET = RseUnetMethod()
