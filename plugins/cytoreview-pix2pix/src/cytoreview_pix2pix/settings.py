"""Settings of the Pix2Pix segmenter (torch-free: the command-line parser reads them).

The network is Castro Cortes et al.'s (2025) Pix2Pix (Isola et al. 2017): a U-Net generator
that paints a colour map of the cell and a PatchGAN discriminator that judges (image, colour
map) pairs; see :mod:`cytoreview_pix2pix.networks` and :mod:`cytoreview_pix2pix.trainer`.

Why the learning rate is a setting of its own
---------------------------------------------
CytoReview's training request has one ``lr``, the U-Net recipe's (1e-3, Adam). A GAN's two
networks are trained with pix2pix's Adam at 2e-4 and betas (0.5, 0.999): the lower momentum
keeps the generator and the discriminator from overshooting each other. This method's trainer
reads its rate from ``lr`` here and leaves the request's ``lr`` unused (its other fields,
epochs, batch size, patience, time budget and the plateau schedule, apply as for any segmenter).
"""

from __future__ import annotations

from dataclasses import dataclass

from cytoreview.plugin_api import option

__all__ = ["KERNELS", "Pix2PixSettings"]

#: Side of the stride-2 filters: 4 (pix2pix) or 6 (Castro Cortes et al.).
KERNELS = (4, 6)


@dataclass(frozen=True)
class Pix2PixSettings:
    """Settings of the Pix2Pix segmenter.

    Attributes
    ----------
    kernel
        Side of every stride-2 filter of the generator (down and up) and of the discriminator.
        Pix2pix uses 4 x 4; the paper changed it to 6 x 6 "to detect more extensive spatial
        features". Padding ``(kernel - 2) / 2`` halves (and doubles) the sides exactly.
    base_channels
        Filters of the first layer (published: 64, the "C64" of C64-C128-...). The other layers
        have 2, 4 and 8 times as many, at most ``max_channels``.
    max_channels
        The widest layer (published: 512).
    l1_weight
        lambda of the generator's loss, adversarial + lambda * L1 (published: 100, after
        pix2pix).
    lr
        Adam's learning rate for both networks (pix2pix: 2e-4, betas 0.5 / 0.999); replaces the
        training request's ``lr`` (see the module's docstring).
    """

    kernel: int = option(
        4, "side of the stride-2 filters: 4 (pix2pix) or 6 (Castro Cortes et al.)", choices=KERNELS
    )
    base_channels: int = option(
        64,
        "filters of the first layer (published 64); the deeper layers have up to 8x",
        low=4,
        high=128,
    )
    max_channels: int = option(
        512, "filters of the widest layers (published 512)", low=8, high=1024
    )
    l1_weight: float = option(
        100.0,
        "lambda: weight of the L1 colour loss against the adversarial loss (published 100)",
        low=0.0,
        high=1000.0,
        label="L1 weight",
    )
    lr: float = option(
        2e-4,
        "Adam learning rate of generator and discriminator (pix2pix 2e-4; replaces --lr)",
        low=1e-6,
        high=1e-1,
        label="GAN learning rate",
    )
