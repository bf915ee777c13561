"""Pix2Pix's two networks: the U-Net generator and the PatchGAN discriminator.

Following Castro Cortes et al. (2025), after Isola et al. (2017). ``Ck`` is a convolution with
``k`` filters, batch norm and an activation; ``CDk`` adds 50 % dropout after the batch norm.

Generator (``G``)::

    encoder  C64 - C128 - C256 - C512 - C512 - C512 - C512      (stride-2 convolutions)
    decoder  CD512 - CD512 - CD512 - C512 - C256 - C128 - C64   (stride-2 transposed ones)
    head     1 x 1 convolution to 3 colour channels, tanh

Each decoder layer but the first takes the previous layer's output concatenated with the
encoder features of the same resolution (the skips). The encoder's activations are LeakyReLU
(slope 0.2), the decoder's ReLU, as in pix2pix. No batch norm on the first encoder layer (the
paper) nor on the innermost one (pix2pix's code: at a 128 px input it is 1 x 1, and a batch of
one would have no statistics). Seven halvings: input sides must be multiples of 128. The widths
are ``base_channels`` times 1, 2, 4, 8, ... capped at ``max_channels`` (64 and 512 give the
published C64 ... C512).

The filters are ``kernel`` x ``kernel`` (4 in pix2pix, 6 in the paper) with stride 2 and padding
``(kernel - 2) / 2``, so a side ``s`` becomes exactly ``s / 2`` (and ``2 s`` going up) for both.

Discriminator (``D``), a PatchGAN on the image and a colour map concatenated (6 channels)::

    C64 (stride 2, no batch norm) - C128 (stride 2) - C256 - C512 - C512 - C512 (stride 1)
    then a convolution to one logit per patch

Pix2pix's 70 x 70 PatchGAN strides three of its four layers; this six-layer one strides only the
first two, so that each output logit still judges a patch of about 70 x 70 pixels (exactly 70
with 4 x 4 filters, 116 with 6 x 6: :func:`receptive_field`), not the whole 128 px cell crop as
five stride-2 layers would. Stride-1 layers keep pix2pix's padding (one pixel per side for
4 x 4), so each shrinks the map by one pixel; the loss averages whatever map comes out.

Initialisation: torch's default, not pix2pix's N(0, 0.02). Pix2pix's small weights need many
thousands of Adam steps before the tanh output reaches the palette's +-1; a CPU run makes a few
hundred. On a synthetic set (base 8, 30 epochs of 2 steps at 128 px, lr 2e-3) N(0, 0.02) left
the validation nucleus Dice at 0.00 (cytoplasm 0.93), torch's default reached 0.85 (0.94).
"""

from __future__ import annotations

import torch
from torch import nn

from cytoreview_pix2pix.settings import KERNELS, Pix2PixSettings

__all__ = [
    "DECODER_WIDTHS",
    "DISCRIMINATOR_STRIDES",
    "DOWNSAMPLINGS",
    "ENCODER_WIDTHS",
    "PatchDiscriminator",
    "UNetGenerator",
    "receptive_field",
    "widths",
]

#: Widths of the published layers, in multiples of C64 (before the ``max_channels`` cap).
ENCODER_WIDTHS = (64, 128, 256, 512, 512, 512, 512)
DECODER_WIDTHS = (512, 512, 512, 512, 256, 128, 64)
#: Decoder layers with 50 % dropout (the three CD512).
DROPOUT_LAYERS = 3
DOWNSAMPLINGS = len(ENCODER_WIDTHS)
DISCRIMINATOR_WIDTHS = (64, 128, 256, 512, 512, 512)
DISCRIMINATOR_STRIDES = (2, 2, 2, 1, 1, 1)
#: The discriminator's filters: pix2pix's 4 x 4 whatever the generator's ``kernel``.
DISCRIMINATOR_KERNEL = 4
LEAKY_SLOPE = 0.2


def widths(published: tuple[int, ...], settings: Pix2PixSettings) -> list[int]:
    """The published widths scaled to ``base_channels`` (per 64) and capped at ``max_channels``."""
    return [min(settings.max_channels, w * settings.base_channels // 64) for w in published]


def _padding(kernel: int) -> int:
    if kernel not in KERNELS:
        raise ValueError(f"kernel {kernel}; valid: {', '.join(map(str, KERNELS))}")
    # (s + 2p - k) / 2 + 1 = s / 2 for even s exactly when 2p = k - 2.
    return (kernel - 2) // 2


def receptive_field(kernel: int, strides: tuple[int, ...] = DISCRIMINATOR_STRIDES) -> int:
    """Side in pixels of the patch one discriminator logit sees (its last layer included)."""
    field = kernel  # the final stride-1 convolution to one logit
    for stride in reversed(strides):
        field = (field - 1) * stride + kernel
    return field


class Down(nn.Module):
    """Encoder layer ``Ck``: stride-2 convolution, optional batch norm, LeakyReLU 0.2."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, norm: bool) -> None:
        super().__init__()
        # No conv bias before a batch norm: the norm has its own shift.
        self.conv = nn.Conv2d(c_in, c_out, kernel, 2, _padding(kernel), bias=not norm)
        self.norm = nn.BatchNorm2d(c_out) if norm else nn.Identity()
        self.act = nn.LeakyReLU(LEAKY_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Half the sides, ``c_out`` channels."""
        return self.act(self.norm(self.conv(x)))


class Up(nn.Module):
    """Decoder layer ``Ck`` / ``CDk``: stride-2 transposed conv, batch norm, dropout, ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, dropout: float) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(c_in, c_out, kernel, 2, _padding(kernel), bias=False)
        self.norm = nn.BatchNorm2d(c_out)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Twice the sides, ``c_out`` channels."""
        return self.act(self.drop(self.norm(self.conv(x))))


class UNetGenerator(nn.Module):
    """Pix2Pix's U-Net generator: ``(N, in_channels, H, W)`` to ``(N, 3, H, W)`` in [-1, 1].

    ``H`` and ``W`` must be multiples of :attr:`size_multiple` (128).
    """

    size_multiple = 2**DOWNSAMPLINGS

    def __init__(self, settings: Pix2PixSettings, in_channels: int = 3) -> None:
        super().__init__()
        enc, dec = widths(ENCODER_WIDTHS, settings), widths(DECODER_WIDTHS, settings)
        k, last = settings.kernel, len(enc) - 1
        self.down = nn.ModuleList(
            Down(in_channels if i == 0 else enc[i - 1], w, k, norm=0 < i < last)
            for i, w in enumerate(enc)
        )
        ups = []
        for i, w in enumerate(dec):
            # Layer i gets the previous decoder output, and from the second on the encoder
            # features of the same resolution (encoder layer last - i).
            c_in = enc[-1] if i == 0 else dec[i - 1] + enc[last - i]
            ups.append(Up(c_in, w, k, dropout=0.5 if i < DROPOUT_LAYERS else 0.0))
        self.up = nn.ModuleList(ups)
        self.head = nn.Conv2d(dec[-1], 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The colour map in [-1, 1] (R, G, B), at the input's resolution."""
        if not torch.jit.is_tracing():  # while exporting, the shape is symbolic
            h, w = x.shape[-2:]
            if h % self.size_multiple or w % self.size_multiple:
                raise ValueError(
                    f"input {h} x {w}: sides must be multiples of {self.size_multiple}"
                )
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        y = self.up[0](skips[-1])
        for layer, skip in zip(self.up[1:], reversed(skips[:-1]), strict=True):
            y = layer(torch.cat([y, skip], dim=1))
        return torch.tanh(self.head(y))


class PatchDiscriminator(nn.Module):
    """PatchGAN: ``(N, 6, H, W)`` (image and colour map) to ``(N, 1, h, w)`` patch logits."""

    def __init__(self, settings: Pix2PixSettings, in_channels: int = 6) -> None:
        super().__init__()
        k = DISCRIMINATOR_KERNEL
        pad = _padding(k)
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, (w, stride) in enumerate(
            zip(widths(DISCRIMINATOR_WIDTHS, settings), DISCRIMINATOR_STRIDES, strict=True)
        ):
            norm = i > 0  # pix2pix: no batch norm on the first layer
            layers.append(nn.Conv2d(c_in, w, k, stride, pad, bias=not norm))
            if norm:
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.LeakyReLU(LEAKY_SLOPE))
            c_in = w
        layers.append(nn.Conv2d(c_in, 1, k, 1, pad))
        self.layers = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
        """One real/fake logit per patch of the pair."""
        return self.layers(torch.cat([image, colours], dim=1))
