"""Settings of the Pix2Pix segmenter (torch-free: the command-line parser reads them).

The network is Castro Cortes et al.'s (2025) Pix2Pix (Isola et al. 2017): a U-Net generator
that paints a colour map of the cell and a PatchGAN discriminator that judges (image, colour
map) pairs; see :mod:`cytoreview_pix2pix.networks` and :mod:`cytoreview_pix2pix.trainer`.

Why the learning rate is a setting of its own
---------------------------------------------
CytoReview's training request has one ``lr``, the U-Net recipe's (1e-3, Adam). A GAN's two
networks are trained with pix2pix's Adam, betas (0.5, 0.999), at 2e-4: the lower momentum and
rate keep the generator and the discriminator from overshooting each other. This method's
trainer reads its rate from ``lr`` here and leaves the request's ``lr`` unused (its other
fields, epochs, batch size, patience, time budget and the plateau schedule, apply as for any
segmenter).

2e-4 measured best on Herlev (80 painted cells, 530 scored, 6 x 6 filters): Dice cytoplasm /
nucleus 0.751 / 0.856 in 5.9 minutes (early stop at epoch 106), against 0.718 / 0.836 in 12.3
minutes at 2e-3, although 2e-3 had the better scores on the 15 validation cells. A run of a few
dozen steps is another matter: on the tests' synthetic set (base 8, 2 steps an epoch) 2e-4 left
the validation nucleus Dice at 0.52 after 15 epochs where 2e-3 reached 0.85 after 30; the tests
set 2e-3.
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
        Side of every stride-2 filter of the generator (down and up). Pix2pix uses 4 x 4; the
        paper changed it to 6 x 6 "to detect more extensive spatial features". Padding
        ``(kernel - 2) / 2`` halves (and doubles) the sides exactly. The discriminator keeps
        pix2pix's 4 x 4 (see :mod:`cytoreview_pix2pix.networks`). Default 6, the paper's: on
        Herlev (80 painted cells, 530 scored, the other defaults) 6 x 6 gave Dice cytoplasm /
        nucleus 0.751 / 0.856 and 4 x 4 0.727 / 0.832 (at lr 2e-3: 0.718 / 0.836 and 0.719 /
        0.827), at 1.7 times the time an epoch (tests/benchmarks/README.md).
    base_channels
        Filters of the first layer (published: 64, the "C64" of C64-C128-...). The other layers
        have 2, 4 and 8 times as many, at most ``max_channels``. Default 16: on 2 CPU cores a
        training step (batch 8, 128 px, 4 x 4 filters, generator and discriminator) took
        10-12 s at 64 (49 M + 11 M weights), 4 s at 32 and 1.6 s at 16 (3 M + 0.7 M). On
        Herlev with 6 x 6 filters and lr 2e-3 (110 M weights at 64) width 64 made 10 epochs in
        10 minutes, validation Dice cytoplasm / nucleus 0.65 / 0.59, where 16 had 0.70 / 0.63
        after the same 10 epochs and 0.79 / 0.80 after 10 minutes (tests/benchmarks/README.md).
    max_channels
        The widest layer (published: 512).
    l1_weight
        lambda of the generator's loss, adversarial + lambda * L1 (published: 100, after
        pix2pix).
    lr
        Adam's learning rate for both networks (betas 0.5 / 0.999; pix2pix's 2e-4, which measured
        best); replaces the training request's ``lr`` (see the module's docstring).
    """

    kernel: int = option(
        6, "side of the stride-2 filters: 4 (pix2pix) or 6 (Castro Cortes et al.)", choices=KERNELS
    )
    base_channels: int = option(
        16,
        "filters of the first layer (published 64: 11 s a CPU step); deeper layers have up to 8x",
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
        "Adam learning rate of generator and discriminator (pix2pix: 2e-4); replaces --lr",
        low=1e-6,
        high=1e-1,
        label="GAN learning rate",
    )
