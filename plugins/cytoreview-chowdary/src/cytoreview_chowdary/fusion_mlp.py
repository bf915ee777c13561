"""The feature-fusion MLP classifier of Chowdary et al. (2023), as one torch module.

Deep features of three CNN branches (VGG19, VGG-F and CaffeNet layouts, see
:mod:`cytoreview_chowdary.branches`), a 256-bin LBP histogram and a SIFT bag of visual words
(:mod:`cytoreview_chowdary.features`), each reduced by its own PCA to ``p`` % of its variance,
concatenated, then a multi-layer perceptron with one ReLU hidden layer. Any group can be
switched off in the settings.

The module holds everything (branches, codebook and PCA as buffers, MLP), so a checkpoint
(weights + config) rebuilds it with :meth:`FusionMlpMethod.build` alone. The sizes that are
fitted rather than set (components kept by each PCA, codebook size) are recorded under the
config's ``fitted`` key by the trainer (:mod:`cytoreview_chowdary.trainer`).

Input and output follow the core's classifier contract: ``(N, 6, S, S)`` float32 (channels
0-2 the normalised RGB crop; the mask channels are not read) to ``(N, K)`` logits; ``cam_layer``
is the first enabled CNN branch's last convolution, or None without a CNN branch (the review
then says this classifier has no heatmap). SIFT runs in OpenCV on numpy, so the model has no
ONNX export (``onnx_exportable = False``: the core runs it in torch).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cytoreview.errors import ConfigError
from cytoreview.plugin_api import settings_from
from cytoreview_chowdary.branches import make_branch
from cytoreview_chowdary.features import (
    LBP_BINS,
    PcaProjection,
    SiftBagOfWords,
    grey_from_input,
    lbp_histogram,
)
from cytoreview_chowdary.fusion_settings import FusionMlpSettings

__all__ = ["ARCH", "FEATURE_FUSION_MLP", "FeatureFusionMlp", "FusionMlpMethod"]

ARCH = "feature-fusion-mlp"
_INPUT_CHANNELS = 6


class FeatureFusionMlp(nn.Module):
    """CNN branches + LBP + SIFT bag of words -> PCA per group -> concatenation -> MLP.

    Parameters
    ----------
    settings
        Which groups, branch sizes, codebook size, MLP width.
    num_classes
        K.
    input_size
        Side of the square input the model was trained at (recorded, not enforced).
    fitted
        ``{"pca_dims": {group: k}, "words": n}`` from training; None builds an unfitted model
        (identity PCA, codebook of ``settings.words`` zero words).
    dropout
        Dropout before the MLP's output layer.
    """

    arch = ARCH
    uses_mask = False

    def __init__(
        self,
        settings: FusionMlpSettings,
        num_classes: int,
        input_size: int,
        fitted: Mapping[str, Any] | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if not settings.groups:
            raise ConfigError(f"{ARCH}: every feature group is switched off; keep at least one")
        if num_classes < 2:
            raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.settings, self.num_classes, self.input_size = settings, num_classes, input_size
        self.branches = nn.ModuleDict(
            {b: make_branch(b, settings.width, settings.fc_width, num_classes)
             for b in settings.branches}
        )  # fmt: skip
        fitted = dict(fitted or {})
        words = int(fitted.get("words", settings.words))
        self.bovw = SiftBagOfWords(words, settings.keypoints) if settings.bovw else None
        dims = self.raw_dims()
        pca_dims = dict(fitted.get("pca_dims", {}))
        self.pca = nn.ModuleDict(
            {g: PcaProjection(d, pca_dims.get(g)) for g, d in dims.items()}
        )  # fmt: skip
        #: What the core reads of a classifier (e.g. naming the branch a weights file missed).
        self.config = {"arch": ARCH, "backbone": next(iter(self.branches), "none"),
                       "num_classes": num_classes, "input_size": input_size}  # fmt: skip
        total = sum(p.out_dim for p in self.pca.values())
        self.mlp = nn.Sequential(
            nn.Linear(total, settings.mlp_hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(settings.mlp_hidden, num_classes),
        )

    # -- structure ---------------------------------------------------------------------------
    def raw_dims(self) -> dict[str, int]:
        """Size of every enabled group's features before PCA, in concatenation order."""
        dims = {b: branch.feature_dim for b, branch in self.branches.items()}
        if self.settings.lbp:
            dims["lbp"] = LBP_BINS
        if self.bovw is not None:
            dims["bovw"] = self.bovw.words
        return dims

    @property
    def cam_layer(self) -> nn.Module | None:
        """The first CNN branch's last convolution (its ReLU); None without a CNN branch."""
        for branch in self.branches.values():
            return branch.cam_layer
        return None

    @property
    def image_backbone(self) -> nn.Module:
        """The first CNN branch: where the core loads a user's weights file (``--weights``)."""
        for branch in self.branches.values():
            return branch
        raise ConfigError(f"{ARCH}: no CNN branch is switched on to load weights into")

    # -- forward -----------------------------------------------------------------------------
    def raw_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every enabled group's features of a ``(N, 6, S, S)`` batch, before PCA."""
        if x.ndim != 4 or x.shape[1] != _INPUT_CHANNELS:
            raise ValueError(f"expected a (N, {_INPUT_CHANNELS}, S, S) input, got {tuple(x.shape)}")
        rgb = x[:, :3]
        out = {b: branch.deep_features(rgb) for b, branch in self.branches.items()}
        if self.settings.lbp or self.bovw is not None:
            grey = grey_from_input(rgb)
            if self.settings.lbp:
                out["lbp"] = lbp_histogram(grey).to(x.device)
            if self.bovw is not None:
                out["bovw"] = self.bovw(grey).to(x.device)
        return out

    def fuse(self, raw: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The MLP's input: each group's PCA projection, concatenated."""
        return torch.cat([self.pca[g](raw[g]) for g in self.pca], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, K)`` logits of a ``(N, 6, S, S)`` batch."""
        return self.mlp(self.fuse(self.raw_features(x)))


def settings_of(config: Mapping[str, Any]) -> FusionMlpSettings:
    """The method's settings recorded in a config (defaults for the rest)."""
    return settings_from(FusionMlpSettings, config.get("settings") or {})


def _num_classes(config: Mapping[str, Any]) -> int:
    if "class_names" in config:
        return len(config["class_names"])
    if "num_classes" in config:
        return int(config["num_classes"])
    raise ConfigError("a classifier config needs 'class_names' or 'num_classes'")


@dataclass(frozen=True)
class FusionMlpMethod:
    """The classifier contribution (see :mod:`cytoreview.plugin_api.protocols`)."""

    #: SIFT runs in OpenCV on numpy inside ``forward``: no ONNX graph can hold it.
    onnx_exportable: bool = False

    def build(self, config: dict[str, Any]) -> FeatureFusionMlp:
        """The network from a checkpoint's config (``settings``, ``fitted``, classes, size)."""
        return FeatureFusionMlp(
            settings_of(config),
            _num_classes(config),
            int(config.get("input_size", 64)),
            config.get("fitted"),
            float(config.get("dropout", 0.5)),
        )

    def describe(self, config: dict[str, Any]) -> str:
        """The trained model in words: its feature groups (it has no single backbone)."""
        settings = settings_of(config)
        groups = [name for name, on in (("VGG19", settings.vgg19), ("VGG-F", settings.vgg_f),
                                         ("CaffeNet", settings.caffenet), ("LBP", settings.lbp),
                                         ("SIFT bag of words", settings.bovw)) if on]  # fmt: skip
        return (
            f"feature-fusion-mlp ({' + '.join(groups)}; CNN width {settings.width:g}, PCA "
            f"{settings.variance:g} % of the variance)"
        )

    @property
    def trainer(self) -> Any:
        """The two-stage trainer (imported when training, not when a model is loaded)."""
        from cytoreview_chowdary.trainer import train_feature_fusion

        return train_feature_fusion


FEATURE_FUSION_MLP = FusionMlpMethod()
