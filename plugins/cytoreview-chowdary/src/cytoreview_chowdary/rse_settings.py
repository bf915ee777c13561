"""Settings of the Residual SE U-Net (torch-free: the command-line parser reads them).

The network is Chowdary et al.'s (2023): an encoder and a decoder of ``depth`` residual
squeeze-and-excitation modules each, a bridge between them, stride-2 convolutions instead of
pooling, upsampling with skip concatenation, a 1 x 1 head. See
:mod:`cytoreview_chowdary.rse_unet`.

Why the training recipe is not the paper's
------------------------------------------
The paper trains with Dice loss, Adam at lr 1e-5, batch 16, for 300 epochs of 100 steps (30 000
steps). CytoReview trains every segmenter with one recipe (``cytoreview.defaults.SEG``:
class-weighted soft Dice + cross-entropy, Adam at lr 1e-3 halved on a validation plateau, a moving
average of the weights, early stopping), and this network with it, because lr 1e-5 does not
converge in the few hundred steps a CPU runs in minutes: on a synthetic set (base 8, 10 epochs
of 2 steps at 64 px) lr 1e-5 left the validation loss at 1.00 (from 1.12) and nucleus Dice at
0.06, where lr 1e-3 reached 0.59 and 0.80. On Herlev (80 painted cells, 2 shared CPU cores) the
recipe (with Dice + focal then) stopped early after 80 epochs of 9 steps (best 50) in 2.9
minutes. The class weights keep the rare nucleus pixels from being drowned by the background,
the job the paper's Dice loss does. The paper's recipe stays one flag away: ``train-seg --lr
1e-5 --loss dice --batch-size 16``.

The widths are not in the paper; ``base_channels`` 16 (16-256 channels over five levels, about
2 M weights, against 14 M for the default resnet18 U-Net) keeps an epoch of 80 small cell crops
to a few seconds on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from cytoreview.plugin_api import option

__all__ = ["MAX_DEPTH", "SE_POSITIONS", "RseUnetSettings"]

#: The deepest network offered: five stride-2 levels, so input sides stay multiples of 32 (the
#: size every CytoReview segmenter already pads and tiles to).
MAX_DEPTH = 5
#: Where the SE block sits in a residual module (see ``RseUnetSettings.se_position``).
SE_POSITIONS = ("residual", "output")


@dataclass(frozen=True)
class RseUnetSettings:
    """Settings of the Residual SE U-Net.

    Attributes
    ----------
    base_channels
        Channels of the first (full-resolution) level; each level down doubles them.
    depth
        Residual SE modules per path (encoder and decoder; the paper: 4). The bridge adds one
        more level, so the network halves the resolution ``depth`` times and input sides must
        be multiples of ``2 ** depth``.
    se_reduction
        Squeeze ratio of the SE blocks: the hidden layer has ``channels / se_reduction`` units
        (at least 4). The paper does not state it; 16 is Hu et al.'s default.
    use_se
        False removes the SE blocks: the paper's ablation "UNet + residual module without SE
        block" (nucleus ZSI 0.90 against 0.97 with it on Herlev). Here (Herlev, 80 painted
        seeds, the core recipe) it went the other way: without SE 0.781 / 0.889 Dice
        (cytoplasm / nucleus, 300 epochs), with SE 0.729 / 0.846 (early stop at epoch 77, its
        validation loss rising after ~50); on because the method is the SE U-Net
        (tests/benchmarks/README.md).
    se_position
        ``"residual"``: the SE block weighs the residual branch before the shortcut is added,
        as in Hu et al.'s SE-ResNet module. ``"output"``: it weighs the module's output, the
        literal reading of the paper's "an SE block is used after the residual block" (its
        figure is not in the text we have). ``"output"`` scales the identity path too, by
        about one half in each of the nine modules at first, and trained more slowly: on a
        synthetic set (base 8, 10 epochs of 2 steps) validation loss 0.67 against 0.59 and
        cytoplasm Dice 0.48 against 0.75 (nucleus 0.85 / 0.80). On Herlev (80 painted cells,
        530 scored) both end alike: Dice cytoplasm / nucleus 0.720 / 0.856 (output) and
        0.724 / 0.849 (residual).
    dropout
        Channel dropout on the bridge while training (0: none; the paper uses none).
    """

    base_channels: int = option(
        16, "channels of the first level; each level down doubles them", low=4, high=128
    )
    depth: int = option(
        4,
        "residual SE modules per path (paper: 4); input sides must be multiples of 2**depth",
        low=2,
        high=MAX_DEPTH,
    )
    se_reduction: int = option(
        16,
        "SE squeeze ratio: hidden units = channels / ratio (at least 4)",
        low=1,
        high=64,
        label="SE reduction",
    )
    use_se: bool = option(
        True,
        "squeeze-and-excitation in each residual module (off: the paper's ablation)",
        label="Use SE",
    )
    se_position: str = option(
        "residual",
        "where SE weighs the channels: 'residual' branch before the shortcut is added "
        "(Hu et al.), or the module's 'output' after it",
        choices=SE_POSITIONS,
        label="SE position",
    )
    dropout: float = option(0.0, "channel dropout on the bridge while training", low=0.0, high=0.9)
