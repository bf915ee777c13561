"""Building blocks of the cell classifiers: timm backbones by name, their last conv stage.

Weights are never downloaded (``pretrained=False``): clinical sites are often offline. An
ImageNet weights file can be loaded afterwards (see
:func:`cytoreview.models.classifiers.load_backbone_weights`).
"""

from __future__ import annotations

import difflib
import functools

import timm
import torch
from torch import nn

# The backbone names live in the torch-free choices module (the CLI parser lists them without
# importing timm); they are re-exported here, where callers have always found them.
from cytoreview.choices import CLS_BACKBONES, TINY_BACKBONES
from cytoreview.choices import DEFAULT_BACKBONE as DEFAULT_BACKBONE
from cytoreview.choices import TINY_BACKBONE as TINY_BACKBONE
from cytoreview.errors import ConfigError


@functools.cache
def _timm_names() -> frozenset[str]:
    return frozenset(timm.list_models())


def check_backbone(name: str) -> str:
    """Return ``name`` if timm knows it, else raise a ConfigError listing suggestions.

    Raises
    ------
    ConfigError
        For a name timm does not know; the message lists the usual backbones, close matches
        and the tiny test ones.
    """
    base = name.split(".", 1)[0]  # "resnet18.a1_in1k": the tag only names pretrained weights
    if base in _timm_names():
        return name
    close = difflib.get_close_matches(base, sorted(_timm_names()), n=5, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}" if close else ""
    raise ConfigError(
        f"unknown backbone {name!r}; valid: {', '.join(CLS_BACKBONES + TINY_BACKBONES)} "
        f"(or any timm CNN name){hint}"
    )


def create_backbone(name: str, in_chans: int = 3) -> nn.Module:
    """A randomly initialised timm CNN without pooling and head: images to a feature map.

    Parameters
    ----------
    name
        A timm model name (see :data:`CLS_BACKBONES`).
    in_chans
        Input channels (3 for RGB, 3 for a one-hot mask too).

    Raises
    ------
    ConfigError
        For an unknown name.
    """
    check_backbone(name)
    return timm.create_model(
        name, pretrained=False, num_classes=0, global_pool="", in_chans=in_chans
    )


def feature_shape(backbone: nn.Module, input_size: int, in_chans: int = 3) -> tuple[int, int, int]:
    """``(C, h, w)`` of the backbone's final feature map for a square input of ``input_size``.

    Found by a forward pass rather than from timm's metadata: ``num_features`` is wrong for
    some models (MobileNetV3 adds a 1x1 conv head) and the spatial size depends on padding.

    Raises
    ------
    ConfigError
        If the backbone does not give a 4D feature map (a vision transformer, say).
    """
    was_training = backbone.training
    backbone.eval()  # batch statistics of one zero image would be degenerate
    try:
        with torch.no_grad():
            out = backbone(torch.zeros(1, in_chans, input_size, input_size))
    finally:
        backbone.train(was_training)
    if out.ndim != 4:
        raise ConfigError(
            f"backbone {type(backbone).__name__} gives a {tuple(out.shape)} output, not a "
            "(N, C, h, w) feature map; choose a convolutional backbone"
        )
    return int(out.shape[1]), int(out.shape[2]), int(out.shape[3])


def last_conv_stage(backbone: nn.Module) -> nn.Module:
    """The module that outputs the backbone's last (deepest) feature stage, for Grad-CAM.

    timm's ``feature_info`` names that module for every CNN it builds; for a model without it,
    the last direct child that holds a convolution is used.
    """
    info = getattr(backbone, "feature_info", None)
    if info:
        name = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
        for candidate in (name, name.replace("_", ".")):
            try:
                return backbone.get_submodule(candidate)
            except AttributeError:
                continue
    for child in reversed(list(backbone.children())):
        if any(isinstance(m, nn.Conv2d) for m in child.modules()):
            return child
    raise ConfigError(f"cannot find a convolutional stage in {type(backbone).__name__}")
