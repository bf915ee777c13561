"""The names a user may choose from: devices, encoders, backbones, architectures, losses, tasks.

The command-line parser offers these as ``choices`` and defaults. They used to live next to the
code that uses them (models, training, workflows), which meant building the parser imported
torch, timm and segmentation-models-pytorch: several seconds before even ``cytoreview --help``
could answer. Here they are plain constants with no imports, so the parser is built in
milliseconds; the modules that use them import them from here and still offer them under their
old names.

This module sits at the bottom of the layer stack next to :mod:`cytoreview.settings`: every layer
may import it and it imports nothing (import-linter checks that it never pulls torch and co.).
"""

from __future__ import annotations

# --- Compute device ---------------------------------------------------------------------------
#: ``auto`` picks CUDA when a GPU really works, else the CPU.
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")

# --- Segmentation -----------------------------------------------------------------------------
#: Encoders compared in the literature for cytology U-Nets; resnet18 is the default.
SEG_ENCODERS: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "efficientnet-b2",
    "mobilenet_v2",
    "densenet121",
    "vgg19_bn",
)
DEFAULT_ENCODER = "resnet18"
#: Channels of the U-Net decoder's deepest block (each shallower block has half): 256 is the
#: usual U-Net's (segmentation-models-pytorch's default); 128, the default, makes a training step
#: on Herlev's 64 px cells 0.78x as long (see ``UnetSettings`` in cytoreview.plugin_api.builtin).
DECODER_WIDTHS: tuple[int, ...] = (64, 128, 256)
DEFAULT_DECODER_WIDTH = 128
#: What a U-Net checkpoint written before the setting existed was built with.
LEGACY_DECODER_WIDTH = 256
#: The built-in U-Net's contribution name.
UNET_NAME = "unet"
#: The segmenter contribution a user gets without choosing (the built-in U-Net).
DEFAULT_SEGMENTER = UNET_NAME
#: How images meet the segmenter: from the painted masks (auto), letterboxed crops, or fields
#: tiled at native resolution (cytoreview.data.geometry states the rule).
GEOMETRIES: tuple[str, ...] = ("auto", "crops", "fields")
#: Segmentation losses: class-weighted Dice + cross-entropy (default), Dice + focal (the
#: published protocol), Jaccard, or Dice alone.
LOSSES: tuple[str, ...] = ("dice_ce", "dice_focal", "jaccard", "dice")
#: Numeric precision of ONNX inference on the CPU. ``auto``: the int8 model when it passed the
#: project's quality gate, else fp32; ``fp32`` forces full precision; ``int8`` forces the
#: quantised model (CPU only). CUDA always runs the fp32 export.
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "int8")
DEFAULT_PRECISION = "auto"

# --- Classification ---------------------------------------------------------------------------
#: Backbones compared in the literature for Pap-cell classification (any timm CNN also works).
CLS_BACKBONES: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "xception41",
    "efficientnet_b0",
    "efficientnet_b2",
    "mobilenetv3_large_100",
    "densenet121",
    "convnext_tiny",
)
#: Tiny random-weight backbones for smoke tests and CI (a few hundred thousand parameters).
TINY_BACKBONES: tuple[str, ...] = ("test_resnet", "test_efficientnet", "resnet10t")
TINY_BACKBONE = "test_resnet"
DEFAULT_BACKBONE = "resnet18"
DEFAULT_ARCH = "fusion-gap"
#: ``bethesda``: the project's own classes; ``binary``: needs a pathologist's review or not.
TASKS: tuple[str, ...] = ("bethesda", "binary")

#: Class balancing of a classifier's training epochs (see cytoreview.defaults.ClsRecipe).
BALANCE_MODES: tuple[str, ...] = ("balanced", "oversample", "none")

# --- Explanation ------------------------------------------------------------------------------
#: Heatmap methods of ``cytoreview explain``, the default first.
CAM_METHODS: tuple[str, ...] = ("gradcam++", "gradcam")
#: Steps of the pixel-flipping check of every heatmap (CLI ``explain`` and the workbench alike).
EXPLAIN_FLIPPING_STEPS = 10

#: Averaging the 8 views of each input when auto-masking: "auto" is the recipe's rule
#: (cytoreview.defaults.SegRecipe.tta_for: crops models yes, fields models no).
TTA_CHOICES: dict[str, bool | None] = {"auto": None, "on": True, "off": False}

#: How the cell finder finds nuclei on a slide: the project's segmenter when it was trained on
#: fields (else the Otsu detector), the segmenter, or the model-free Otsu detector.
FINDER_METHODS: tuple[str, ...] = ("auto", "model", "otsu")
