"""Pix2Pix as a CytoReview segmenter: the generator, read as class logits.

The core treats every segmenter alike: it exports the network ``build`` returns to ONNX, feeds
it ImageNet-normalised RGB, softmaxes its ``(N, 3, H, W)`` output (background, cytoplasm,
nucleus), averages the flipped and rotated views, takes the arg-max as the mask and scores each
image's uncertainty from the probabilities. Pix2Pix's generator paints a colour map instead
(:mod:`cytoreview_pix2pix.colour_map`), so :class:`Pix2PixSegmenter` wraps it in a fixed,
weight-free layer that turns colours into logits:

    ``d_k = ||g(x) - c_k||^2``, the squared distance (on the generator's [-1, 1] scale) from the
    generated colour ``g(x)`` of a pixel to palette colour ``c_k`` (white, red, black, blue);
    ``logit_k = -d_k / T`` with ``T`` = :data:`TEMPERATURE`;
    background = white's logit, nucleus = blue's, cytoplasm = the larger of red's and black's.

The arg-max is then exactly the nearest palette colour's label (the decoding of the colour map).
The cytoplasm logit is a maximum and not a log-sum-exp of red's and black's: a log-sum-exp can
exceed a nearer white or blue by up to ``T log 2``, and the arg-max would no longer be the
nearest colour.

What uncertainty means for a GAN
--------------------------------
A GAN gives no class probabilities of its own; the softmax of these logits makes one from how
the generator painted. A pixel painted exactly in a palette colour is certain: its nearest other
class is at least 4 away in squared distance (black to blue; red to white is 8), so with
``T = 0.5`` its normalised entropy is below 0.003. A pixel painted halfway between two colours
of different classes (pink between red and white, dark blue between black and blue) has the
two at equal distance: entropy about 0.63. The core's per-image uncertainty (the mean normalised
entropy over the predicted cells grown by a margin, with test-time augmentation the views
averaged first, so that views that disagree raise it too) therefore measures how far the
generated colours lie from a single palette colour, and how much the flipped and rotated views
disagree. The review queue shows first the images the generator painted least cleanly.

Dropout in the decoder's CD512 layers is on only while training (pix2pix also keeps it at test
time, as its noise source; a segmenter must give the same mask twice).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cytoreview.errors import ConfigError
from cytoreview.training.segmentation import EpochStats, SegTrainConfig, SegTrainResult
from cytoreview.types import CancelToken, Progress
from cytoreview_pix2pix.colour_map import PALETTE
from cytoreview_pix2pix.networks import UNetGenerator
from cytoreview_pix2pix.settings import Pix2PixSettings
from cytoreview_pix2pix.trainer import train_pix2pix

__all__ = ["PIX2PIX", "TEMPERATURE", "ColourLogits", "Pix2PixMethod", "Pix2PixSegmenter"]

#: Temperature of the colour-distance softmax, in squared [-1, 1] colour units: a pixel on a
#: palette colour has entropy < 0.003, one halfway between two classes' colours 0.63.
TEMPERATURE = 0.5


def palette_unit() -> torch.Tensor:
    """The palette (white, red, black, blue) on the generator's [-1, 1] scale, ``(4, 3)``."""
    return torch.from_numpy(PALETTE.astype(np.float32) / 127.5 - 1.0)


class ColourLogits(nn.Module):
    """Colour map ``(N, 3, H, W)`` in [-1, 1] to class logits ``(N, 3, H, W)`` (see module)."""

    def __init__(self, temperature: float = TEMPERATURE) -> None:
        super().__init__()
        # A buffer, not a parameter: nothing here is learnt, and it travels with .to(device).
        self.register_buffer("palette", palette_unit().view(4, 3, 1, 1), persistent=False)
        self.temperature = temperature

    def forward(self, colours: torch.Tensor) -> torch.Tensor:
        """Background, cytoplasm and nucleus logits: minus the distance to their colours / T."""
        palette = self.palette.to(colours.dtype)
        # ||g - c||^2 = ||g||^2 - 2 g.c + ||c||^2, the dot products as one 1 x 1 convolution.
        dots = nn.functional.conv2d(colours, palette)
        squared = (colours * colours).sum(dim=1, keepdim=True)
        norms = (palette * palette).sum(dim=1).view(1, 4, 1, 1)
        logits = -(squared - 2.0 * dots + norms) / self.temperature
        white, red, black, blue = logits.unbind(dim=1)
        return torch.stack([white, torch.maximum(red, black), blue], dim=1)


class Pix2PixSegmenter(nn.Module):
    """The generator and its colour decoding: ImageNet-normalised RGB to class logits.

    Attributes
    ----------
    generator
        The U-Net that paints the colour map (the part the trainer learns).
    settings
        The method's settings (the trainer builds the discriminator and reads its rate and
        lambda from them).
    """

    def __init__(self, settings: Pix2PixSettings, in_channels: int = 3) -> None:
        super().__init__()
        self.settings = settings
        self.generator = UNetGenerator(settings, in_channels)
        self.decode = ColourLogits()
        self.size_multiple = UNetGenerator.size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` logits of background, cytoplasm and nucleus."""
        return self.decode(self.generator(x))


@dataclass(frozen=True)
class Pix2PixMethod:
    """The ``pix2pix`` segmenter contribution (see ``cytoreview.plugin_api.protocols``).

    It brings its own trainer (a generator and a discriminator, two losses): the core calls
    :meth:`trainer` instead of its own, with the same arguments and events.
    """

    size_multiple: int = UNetGenerator.size_multiple

    def build(
        self, settings: Pix2PixSettings, *, classes: int, in_channels: int
    ) -> Pix2PixSegmenter:
        """A randomly initialised generator with its colour decoding (a 3-class segmenter)."""
        if classes != 3:
            raise ConfigError(
                f"pix2pix paints background, cytoplasm and nucleus: 3 classes, not {classes}"
            )
        return Pix2PixSegmenter(settings, in_channels)

    def weight_targets(self, model: Pix2PixSegmenter) -> list[nn.Module]:
        """A weights file may hold the whole segmenter or the generator alone."""
        return [model, model.generator]

    def trainer(
        self,
        model: Pix2PixSegmenter,
        train: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
        val: tuple[Sequence[np.ndarray], Sequence[np.ndarray]],
        config: SegTrainConfig,
        *,
        cancel: CancelToken | None = None,
        on_best: Callable[[dict[str, torch.Tensor], EpochStats], None] | None = None,
        unlabelled: Sequence[np.ndarray] = (),
    ) -> Generator[Progress, None, SegTrainResult]:
        """Train generator and discriminator (:func:`cytoreview_pix2pix.trainer.train_pix2pix`)."""
        return (
            yield from train_pix2pix(
                model, train, val, config, cancel=cancel, on_best=on_best, unlabelled=unlabelled
            )
        )


PIX2PIX = Pix2PixMethod()
