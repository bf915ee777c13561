"""Cell classifiers: a CNN on the RGB crop, optionally fused with a CNN on its label mask.

Three architectures after the published comparison of image-only and image + segmentation-mask
fusion networks for Pap-smear cells:

* ``image-only``: backbone on the RGB crop, global average pooling, dropout, linear head;
* ``fusion-flatten``: an image branch and a mask branch, each final feature map flattened,
  concatenated, dense head (the flatten size depends on the input size);
* ``fusion-gap`` (default, the best published): the same two branches, each globally average
  pooled, concatenated, dense head.

Every classifier takes one ``(N, 6, S, S)`` float32 tensor: channels 0-2 the normalised RGB
crop, channels 3-5 the one-hot mask (background, cytoplasm, nucleus); it gives ``(N, K)``
logits. Image-only models ignore channels 3-5, so all share one input layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

# The architecture names live in the torch-free choices module (the CLI parser lists them).
from cytoreview.choices import DEFAULT_ARCH
from cytoreview.data.cls_dataset import INPUT_CHANNELS
from cytoreview.errors import ConfigError
from cytoreview.models.classifier_blocks import (
    CLS_BACKBONES,
    DEFAULT_BACKBONE,
    TINY_BACKBONE,
    TINY_BACKBONES,
    create_backbone,
    feature_shape,
    last_conv_stage,
)
from cytoreview.plugin_api import find

__all__ = [
    "CLS_BACKBONES",
    "DEFAULT_ARCH",
    "DEFAULT_BACKBONE",
    "FUSION_FLATTEN",
    "FUSION_GAP",
    "IMAGE_CHANNELS",
    "IMAGE_ONLY",
    "INPUT_CHANNELS",
    "TINY_BACKBONE",
    "TINY_BACKBONES",
    "BackboneLoadReport",
    "CellClassifier",
    "build_classifier",
    "classifier_uses_mask",
    "describe_classifier",
    "joins_measurements",
    "load_backbone_weights",
]

IMAGE_CHANNELS = 3
DEFAULT_INPUT_SIZE = 128
DEFAULT_DROPOUT = 0.5
DEFAULT_HIDDEN = 256


class CellClassifier(nn.Module):
    """Base class of every cell classifier: ``(N, 6, S, S)`` input to ``(N, K)`` logits.

    Attributes
    ----------
    arch
        Registry name of the architecture.
    num_classes
        K, the number of logits.
    uses_mask
        Whether channels 3-5 (the one-hot mask) are read.
    image_backbone
        The CNN of the image branch.
    config
        Everything :func:`build_classifier` needs to rebuild this model (no weights).
    """

    arch: str
    num_classes: int
    uses_mask: bool
    image_backbone: nn.Module
    config: dict[str, Any]

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolutional stage of the image branch (Grad-CAM hooks it)."""
        return last_conv_stage(self.image_backbone)

    def _check_input(self, x: torch.Tensor) -> None:
        if torch.jit.is_tracing():  # ONNX export: shapes are fixed by the example input
            return
        if x.ndim != 4 or x.shape[1] != INPUT_CHANNELS:
            raise ValueError(f"expected a (N, {INPUT_CHANNELS}, S, S) input, got {tuple(x.shape)}")


def _dense_head(in_features: int, hidden: int, dropout: float, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


def _check_common(num_classes: int, input_size: int, dropout: float) -> None:
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    if input_size < 32:
        raise ConfigError(f"input_size must be at least 32 pixels, got {input_size}")
    if not 0 <= dropout < 1:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")


class ImageOnlyClassifier(CellClassifier):
    """Backbone on the RGB channels, global average pooling, dropout, linear head."""

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        num_classes: int = 4,
        input_size: int = DEFAULT_INPUT_SIZE,
        dropout: float = DEFAULT_DROPOUT,
    ) -> None:
        super().__init__()
        _check_common(num_classes, input_size, dropout)
        self.arch, self.num_classes, self.uses_mask = "image-only", num_classes, False
        self.image_backbone = create_backbone(backbone)
        channels, _, _ = feature_shape(self.image_backbone, input_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)
        self.config = {
            "arch": self.arch,
            "backbone": backbone,
            "num_classes": num_classes,
            "input_size": input_size,
            "dropout": dropout,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` from the RGB channels of a ``(N, 6, S, S)`` batch."""
        self._check_input(x)
        features = self.image_backbone(x[:, :IMAGE_CHANNELS])
        return self.head(self.dropout(features.mean(dim=(2, 3))))


class FusionClassifier(CellClassifier):
    """Image branch + mask branch, pooled (``gap``) or flattened (``flatten``), dense head."""

    def __init__(
        self,
        fusion: str = "gap",
        backbone: str = DEFAULT_BACKBONE,
        mask_backbone: str = DEFAULT_BACKBONE,
        num_classes: int = 4,
        input_size: int = DEFAULT_INPUT_SIZE,
        dropout: float = DEFAULT_DROPOUT,
        hidden: int = DEFAULT_HIDDEN,
    ) -> None:
        super().__init__()
        _check_common(num_classes, input_size, dropout)
        if fusion not in ("gap", "flatten"):
            raise ConfigError(f"unknown fusion {fusion!r}; valid: gap, flatten")
        if hidden < 1:
            raise ConfigError(f"hidden must be >= 1, got {hidden}")
        self.fusion = fusion
        self.arch, self.num_classes, self.uses_mask = f"fusion-{fusion}", num_classes, True
        self.input_size = input_size
        self.image_backbone = create_backbone(backbone)
        self.mask_backbone = create_backbone(mask_backbone)
        ci, hi, wi = feature_shape(self.image_backbone, input_size)
        cm, hm, wm = feature_shape(self.mask_backbone, input_size)
        width = ci + cm if fusion == "gap" else ci * hi * wi + cm * hm * wm
        self.head = _dense_head(width, hidden, dropout, num_classes)
        self.config = {
            "arch": self.arch,
            "backbone": backbone,
            "mask_backbone": mask_backbone,
            "num_classes": num_classes,
            "input_size": input_size,
            "dropout": dropout,
            "hidden": hidden,
        }

    def _reduce(self, features: torch.Tensor) -> torch.Tensor:
        if self.fusion == "gap":
            return features.mean(dim=(2, 3))
        return features.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, K)`` from a ``(N, 6, S, S)`` batch (RGB + one-hot mask)."""
        self._check_input(x)
        if (
            self.fusion == "flatten"
            and not torch.jit.is_tracing()
            and x.shape[-2:] != (self.input_size, self.input_size)
        ):
            raise ValueError(
                f"a fusion-flatten model takes {self.input_size}x{self.input_size} inputs only, "
                f"got {tuple(x.shape[-2:])}"
            )
        image = self._reduce(self.image_backbone(x[:, :IMAGE_CHANNELS]))
        mask = self._reduce(self.mask_backbone(x[:, IMAGE_CHANNELS:]))
        return self.head(torch.cat([image, mask], dim=1))


def _fusion_gap(**params: Any) -> CellClassifier:
    return FusionClassifier("gap", **params)


def _fusion_flatten(**params: Any) -> CellClassifier:
    return FusionClassifier("flatten", **params)


@dataclass(frozen=True)
class BuiltinClassifier:
    """A built-in classifier contribution (see :mod:`cytoreview.plugin_api.protocols`).

    Trained by the core trainer (``trainer`` None).
    """

    factory: Any
    uses_mask: bool
    trainer: Any = None

    def build(self, config: dict[str, Any]) -> CellClassifier:
        """The network from a checkpoint config (random weights)."""
        params: dict[str, Any] = {
            "backbone": str(config.get("backbone", DEFAULT_BACKBONE)),
            "num_classes": _num_classes(config),
            "input_size": int(config.get("input_size", DEFAULT_INPUT_SIZE)),
            "dropout": float(config.get("dropout", DEFAULT_DROPOUT)),
        }
        if self.uses_mask:
            params["mask_backbone"] = str(config.get("mask_backbone", DEFAULT_BACKBONE))
            params["hidden"] = int(config.get("hidden", DEFAULT_HIDDEN))
        return self.factory(**params)


FUSION_GAP = BuiltinClassifier(_fusion_gap, uses_mask=True)
FUSION_FLATTEN = BuiltinClassifier(_fusion_flatten, uses_mask=True)
IMAGE_ONLY = BuiltinClassifier(ImageOnlyClassifier, uses_mask=False)


def _num_classes(config: dict[str, Any]) -> int:
    if "class_names" in config:
        return len(config["class_names"])
    if "num_classes" in config:
        return int(config["num_classes"])
    raise ConfigError("a classifier config needs 'class_names' or 'num_classes'")


def build_classifier(config: dict[str, Any]) -> CellClassifier:
    """Rebuild a classifier from a checkpoint's config alone (random weights).

    Parameters
    ----------
    config
        ``arch`` (default ``fusion-gap``), ``class_names`` (or ``num_classes``),
        ``input_size``, and what the architecture reads (``backbone``, ``mask_backbone``,
        ``dropout``, ``hidden``, ``settings``); a ``plugin`` record names the plugin to install
        when the architecture is missing.

    Raises
    ------
    ConfigError
        For an unknown architecture or backbone (the message lists valid names) or when the
        number of classes is missing.
    """
    _num_classes(config)
    arch = str(config.get("arch", DEFAULT_ARCH))
    return find("classifier", arch, config.get("plugin")).load().build(config)


def joins_measurements(config: dict[str, Any]) -> bool:
    """Whether the classifier a config describes joins a measurement model to its network.

    A trained model's config carries the measurement model itself; a training run's record
    (its settings merged in) says whether one was asked for, which only a network that sees
    masks gets.
    """
    measured = config.get("measurements")
    if isinstance(measured, dict):
        return True
    if measured is not True:
        return False
    try:
        method = find("classifier", str(config.get("arch", DEFAULT_ARCH)), config.get("plugin"))
    except ConfigError:  # a plugin's method, not installed here
        return False
    return bool(method.uses_mask)


def describe_classifier(config: dict[str, Any]) -> str:
    """A trained classifier in words, from its config (no plugin needs to be installed).

    The method's own ``describe(config)`` when it has one (a plugin that ignores the backbone
    says what it is made of instead), else ``ARCH on BACKBONE`` and the settings; then whether
    a measurement model is joined to it (:mod:`cytoreview.models.measurement_model`).
    """
    arch = str(config.get("arch", DEFAULT_ARCH))
    made_by = config.get("plugin") or {}
    try:
        method = find("classifier", arch, made_by).load()
    except ConfigError:  # not installed here: the config alone still says what it was
        method = None
    describe = getattr(method, "describe", None)
    if describe is not None:
        text = str(describe(config))
    else:
        text = f"{arch} on {config.get('backbone', '?')}"
        settings = config.get("settings") or {}
        if settings:
            text += " (" + ", ".join(f"{k} {v}" for k, v in settings.items()) + ")"
    if joins_measurements(config):
        text += ", joined to a measurement model"
    if made_by.get("plugin") and made_by["plugin"] != "cytoreview":
        text += f" from plugin {made_by['plugin']} {made_by.get('version', '')}".rstrip()
    return text


def classifier_uses_mask(config: dict[str, Any]) -> bool:
    """Whether the model a config describes reads the mask channels."""
    arch = str(config.get("arch", DEFAULT_ARCH))
    return find("classifier", arch, config.get("plugin")).uses_mask


@dataclass(frozen=True)
class BackboneLoadReport:
    """What :func:`load_backbone_weights` did: tensors loaded and the keys left out."""

    loaded: int
    missing: tuple[str, ...]  # backbone weights the file did not have (left random)
    unexpected: tuple[str, ...]  # file entries the backbone has no place for (ignored)
    mismatched: tuple[str, ...]  # same name, other shape (e.g. a 1000-class head; ignored)


_WRAPPER_PREFIXES = ("module.", "model.", "backbone.", "image_backbone.")


def load_backbone_weights(
    model: CellClassifier, state_dict: dict[str, torch.Tensor]
) -> BackboneLoadReport:
    """Load ImageNet (or other) weights into the image branch's backbone, as far as they fit.

    Parameters
    ----------
    model
        The classifier; only ``model.image_backbone`` changes.
    state_dict
        Weights of a timm model of the same backbone (the file is read by storage). Wrapper
        prefixes (``module.``, ``model.``...) are stripped; classifier-head entries and tensors
        of another shape are skipped.

    Returns
    -------
    BackboneLoadReport
        Counts and key lists, for a warning when much is missing.

    Raises
    ------
    ConfigError
        If not a single tensor fits (wrong file or wrong backbone).
    """
    target = model.image_backbone.state_dict()
    usable: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    for key, value in state_dict.items():
        name = key
        for prefix in _WRAPPER_PREFIXES:
            name = name.removeprefix(prefix)
        if name not in target:
            unexpected.append(key)
        elif tuple(value.shape) != tuple(target[name].shape):
            mismatched.append(key)
        else:
            usable[name] = value
    if not usable:
        raise ConfigError(
            f"none of the {len(state_dict)} weights fits backbone "
            f"{model.config.get('backbone')!r}; is it the right weights file?"
        )
    model.image_backbone.load_state_dict(usable, strict=False)
    missing = tuple(k for k in target if k not in usable)
    return BackboneLoadReport(len(usable), missing, tuple(unexpected), tuple(mismatched))


def hidden_activation_layer(model: nn.Module) -> nn.Module | None:
    """The ReLU of a ``Linear, ReLU, Dropout, Linear`` head (fusion models), else None.

    Its output's sign is the ReLU's gradient, which the closed-form Grad-CAM++ needs.
    """
    head = getattr(model, "head", None)
    if (
        isinstance(head, nn.Sequential)
        and len(head) == 4
        and isinstance(head[0], nn.Linear)
        and isinstance(head[1], nn.ReLU)
        and isinstance(head[2], nn.Dropout)
        and isinstance(head[3], nn.Linear)
    ):
        return head[1]
    return None
