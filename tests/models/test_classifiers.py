"""Classifier architectures: shapes, the Grad-CAM layer, names, rebuilding, backbone weights."""

from __future__ import annotations

import pytest
import timm
import torch

from cytoreview.errors import ConfigError
from cytoreview.models.classifiers import (
    TINY_BACKBONE,
    CellClassifier,
    build_classifier,
    classifier_uses_mask,
    load_backbone_weights,
)

ARCHS = ["image-only", "fusion-flatten", "fusion-gap"]
SIZE = 64


def tiny(arch: str, classes=("NILM", "HSIL", "LSIL"), size: int = SIZE, **extra) -> CellClassifier:
    torch.manual_seed(0)
    config = {
        "arch": arch,
        "backbone": TINY_BACKBONE,
        "mask_backbone": TINY_BACKBONE,
        "class_names": list(classes),
        "input_size": size,
        **extra,
    }
    return build_classifier(config).eval()


def batch(n: int = 3, size: int = SIZE, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, size, size, generator=g)
    labels = torch.randint(0, 3, (n, size, size), generator=g)
    x[:, 3:] = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float()
    return x


def test_the_catalog_has_the_three_published_archs() -> None:
    from cytoreview.plugin_api import catalog

    builtin = [c.name for c in catalog().contributions("classifier") if c.plugin == "cytoreview"]
    assert sorted(builtin) == sorted(ARCHS)
    assert [classifier_uses_mask({"arch": a}) for a in ARCHS] == [False, True, True]


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shape_and_attributes(arch: str) -> None:
    model = tiny(arch)
    assert isinstance(model, CellClassifier)
    assert model.arch == arch and model.num_classes == 3
    assert model.uses_mask is (arch != "image-only")
    logits = model(batch(4))
    assert logits.shape == (4, 3) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("arch", ARCHS)
def test_cam_layer_is_a_4d_map_the_logits_depend_on(arch: str) -> None:
    model = tiny(arch)
    seen = {}

    def hook(_module, _inputs, output):
        output.retain_grad()
        seen["map"] = output

    handle = model.cam_layer.register_forward_hook(hook)
    try:
        logits = model(batch(2))
    finally:
        handle.remove()
    fmap = seen["map"]
    assert fmap.ndim == 4 and fmap.shape[0] == 2 and fmap.shape[2:] == (2, 2)  # 64 px / 32
    logits[:, 1].sum().backward()
    assert fmap.grad is not None and fmap.grad.abs().sum() > 0
    # It is the image branch's layer, not the mask branch's.
    assert any(model.cam_layer is m for m in model.image_backbone.modules())


def test_cam_layer_found_generically_for_other_backbones() -> None:
    model = build_classifier(
        {"arch": "image-only", "backbone": "test_efficientnet", "num_classes": 2, "input_size": 64}
    )
    assert model.cam_layer is model.image_backbone.get_submodule("blocks.4")


@pytest.mark.parametrize("arch", ARCHS)
def test_mask_channels_matter_only_for_fusion(arch: str) -> None:
    model = tiny(arch)
    x = batch(2)
    other = x.clone()
    other[:, 3:] = torch.flip(other[:, 3:], dims=(1,))  # swap background and nucleus channels
    with torch.no_grad():
        diff = (model(x) - model(other)).abs().max().item()
    if arch == "image-only":
        assert diff == 0
    else:
        assert diff > 1e-6


@pytest.mark.parametrize("arch", ARCHS)
def test_rebuild_from_config_round_trips_the_weights(arch: str) -> None:
    model = tiny(arch, dropout=0.3)
    config = {**model.config, "class_names": ["NILM", "HSIL", "LSIL"], "something": "ignored"}
    clone = build_classifier(config).eval()
    clone.load_state_dict(model.state_dict())  # strict: same keys, same shapes
    x = batch(2)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))
    assert clone.config == model.config


def test_flatten_head_depends_on_the_input_size() -> None:
    small, large = tiny("fusion-flatten", size=64), tiny("fusion-flatten", size=96)
    width = {m.head[0].in_features for m in (small, large)}
    assert len(width) == 2
    # test_resnet has 96 channels in its last stage: 2x2 maps at 64 px, 3x3 at 96 px, 2 branches
    assert small.head[0].in_features == 2 * 96 * 2 * 2
    assert large.head[0].in_features == 2 * 96 * 3 * 3
    with pytest.raises(ValueError, match="64x64"):
        small(batch(2, size=96))
    assert tiny("fusion-gap", size=64).head[0].in_features == 2 * 96


def test_defaults_are_the_published_best() -> None:
    model = build_classifier({"class_names": ["NILM", "ASC-US", "LSIL", "HSIL"]})
    assert model.arch == "fusion-gap" and model.num_classes == 4
    assert model.config["backbone"] == "resnet18" and model.config["input_size"] == 128
    assert model.config["mask_backbone"] == "resnet18"


def test_unknown_names_raise_config_errors_listing_valid_ones() -> None:
    with pytest.raises(ConfigError, match="fusion-gap, fusion-flatten, image-only"):
        build_classifier({"arch": "fusion-max", "num_classes": 2})
    with pytest.raises(ConfigError, match=r"resnet18.*xception41"):
        tiny("image-only", backbone="resnet19x")
    with pytest.raises(ConfigError, match="resnet18"):
        tiny("fusion-gap", mask_backbone="not_a_net")
    with pytest.raises(ConfigError, match="class_names"):
        build_classifier({"arch": "image-only"})
    with pytest.raises(ConfigError, match="at least 2 classes"):
        tiny("image-only", classes=("NILM",))
    with pytest.raises(ConfigError, match="feature map"):
        tiny("image-only", backbone="test_vit")


def test_load_backbone_weights_partial_with_a_report() -> None:
    model = tiny("fusion-gap")
    torch.manual_seed(7)
    imagenet = timm.create_model(TINY_BACKBONE, pretrained=False)  # with its 1000-class fc
    state = {f"module.{k}": v for k, v in imagenet.state_dict().items()}
    state["module.extra.weight"] = torch.zeros(3)
    first_conv = next(k for k in state if k.endswith("conv1.weight"))
    state[first_conv] = torch.zeros(1)  # wrong shape: skipped, reported
    report = load_backbone_weights(model, state)
    target = model.image_backbone.state_dict()
    assert report.loaded == len(target) - 1
    assert report.missing == (first_conv.removeprefix("module."),)
    assert set(report.unexpected) == {"module.fc.weight", "module.fc.bias", "module.extra.weight"}
    assert report.mismatched == (first_conv,)
    name = "layer4.0.conv1.weight"
    assert torch.equal(target[name], imagenet.state_dict()[name])
    mask_name = f"mask_backbone.{name}"
    assert not torch.equal(model.state_dict()[mask_name], imagenet.state_dict()[name])
    with pytest.raises(ConfigError, match="right weights file"):
        load_backbone_weights(model, {"fc.weight": torch.zeros(2, 2)})


def test_a_classifier_of_a_missing_plugin_names_the_plugin_and_still_describes_itself() -> None:
    from cytoreview.models.classifiers import describe_classifier

    config = {
        "arch": "svm-fusion", "class_names": ["NILM", "HSIL"], "backbone": "none",
        "settings": {"kernel": "rbf"},
        "plugin": {"kind": "classifier", "name": "svm-fusion", "plugin": "cytoreview-svm",
                   "version": "1.2"},
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"plugin cytoreview-svm 1\.2, which is not installed"):
        build_classifier(config)
    assert describe_classifier(config) == (
        "svm-fusion on none (kernel rbf) from plugin cytoreview-svm 1.2"
    )
    assert describe_classifier({"arch": "fusion-gap", "backbone": "resnet18"}) == (
        "fusion-gap on resnet18"
    )
