"""The defaults a user gets without changing anything: one definition for the CLI and the GUI.

Every value here was chosen by a benchmark (``tests/benchmarks/``, results in its README); the
comment beside each says which and what it measured. The training config, the workflows'
request objects, the command-line flags and the workbench's forms all read them from here, so
that they cannot drift apart.

Torch-free on purpose: the CLI parser reads these (see :mod:`cytoreview.choices`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SegRecipe:
    """How a segmenter is trained and applied when the user says nothing.

    Attributes
    ----------
    epochs
        Upper bound; early stopping usually ends the run first.
    lr
        Adam's learning rate. On the Herlev benchmark (80 seeds) 1e-3 beat 1e-4 by +0.03
        cytoplasm / +0.07 nucleus Dice (0.751 / 0.873 vs 0.723 / 0.807).
    patience
        Epochs without a better validation loss before stopping. A small seed set gives a noisy
        validation loss: 20 stopped Herlev runs while they still improved.
    batch_size
        Images (or field windows) per step.
    loss
        Class-weighted soft Dice + focal (the published protocol).
    tile_threshold
        In a crops project, images with a side above this are still tiled as fields.
    tta
        Auto-masks average the 8 rotations and mirror images (Herlev: +0.02 cytoplasm, +0.015
        nucleus Dice; 8x the model calls, 530 cells in 9 s on 2 cores).
    amp
        Mixed precision on GPUs (bf16, else fp16).
    cpu_bf16
        bf16 autocast on CPUs that compute it natively (AVX-512 BF16 / AMX): 2.7x faster
        steps at 256 px, but off until its effect on the masks is measured (the one Herlev run
        with it, on a loaded core, gave 0.742 / 0.898 Dice against 0.779 / 0.914 for the same
        recipe in fp32 in the previous session, with patience 60: not yet separated).
    semi
        Also learn from the unpainted images (mean teacher + confident pseudo-labels, see
        ``cytoreview.training.semi``). Off until the benchmark shows it wins.
    """

    epochs: int = 300
    lr: float = 1e-3
    patience: int = 40
    batch_size: int = 8
    loss: str = "dice_focal"
    tile_threshold: int = 1024
    tta: bool = True
    amp: bool = True
    cpu_bf16: bool = False
    semi: bool = False


#: The segmentation recipe in force.
SEG = SegRecipe()
