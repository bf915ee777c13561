"""Segmenters by contribution name, and the U-Net's encoders."""

from __future__ import annotations

import pytest
import torch

from cytoreview.errors import ConfigError
from cytoreview.models.devices import describe_device, pick_torch_device
from cytoreview.models.segmenters import (
    SEG_ENCODERS,
    build_segmenter,
    build_unet,
    describe_segmenter,
)


@pytest.mark.parametrize("encoder", SEG_ENCODERS)
def test_every_listed_encoder_builds_offline(encoder: str) -> None:
    model = build_unet(encoder)  # encoder_weights=None: nothing is downloaded
    model.eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, 64, 64))
    assert out.shape == (1, 3, 64, 64)


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="valid: resnet18, resnet34"):
        build_unet("resnet1000")
    with pytest.raises(ConfigError, match=r"unknown segmenter 'segnet'; valid: unet"):
        build_segmenter({"arch": "segnet"})
    with pytest.raises(ConfigError, match=r"encoder.*valid: resnet18"):
        build_segmenter({"arch": "unet", "settings": {"encoder": "resnet1000"}})
    with pytest.raises(ConfigError, match=r"unknown setting.*depth; valid: encoder"):
        build_segmenter({"arch": "unet", "settings": {"depth": 4}})
    with pytest.raises(ConfigError, match=r"decoder_width.*64, 128, 256"):
        build_segmenter({"arch": "unet", "settings": {"decoder_width": 100}})


def test_a_model_of_a_missing_plugin_names_the_plugin_to_install() -> None:
    config = {"arch": "segnet", "plugin": {"plugin": "cytoreview-segnet", "version": "2.1"}}
    with pytest.raises(ConfigError, match=r"plugin cytoreview-segnet 2\.1, which is not installed"):
        build_segmenter(config)


def test_build_from_config_alone() -> None:
    config = {"arch": "unet", "settings": {"encoder": "mobilenet_v2"}, "class_names": [0, 1, 2]}
    model = build_segmenter(config)
    assert type(model.encoder).__name__.lower().startswith("mobilenet")
    assert describe_segmenter(config) == "unet (encoder mobilenet_v2, decoder_width 256)"
    # A checkpoint from before plugins existed: a U-Net with a top-level encoder.
    old = build_segmenter({"arch": "unet", "encoder": "mobilenet_v2", "class_names": [0, 1, 2]})
    assert type(old.encoder).__name__.lower().startswith("mobilenet")


def test_decoder_width_and_checkpoints_from_before_it() -> None:
    """New U-Nets have the half-width decoder; a config without the setting is the old one."""
    new = build_segmenter(
        {"arch": "unet", "settings": {"encoder": "resnet18", "decoder_width": 128}}
    )
    widths = [block.conv2[0].out_channels for block in new.decoder.blocks]
    assert widths == [128, 64, 32, 16, 8]
    assert build_unet().decoder.blocks[0].conv2[0].out_channels == 128  # the default
    usual = build_unet("resnet18", decoder_width=256)
    assert [b.conv2[0].out_channels for b in usual.decoder.blocks] == [256, 128, 64, 32, 16]
    # Written before decoder_width existed: rebuilt as it was, so its weights fit.
    old_config = {"arch": "unet", "settings": {"encoder": "resnet18"}, "class_names": [0, 1, 2]}
    build_segmenter(old_config).load_state_dict(usual.state_dict())
    assert "decoder_width 256" in describe_segmenter(old_config)
    with pytest.raises(RuntimeError):
        new.load_state_dict(usual.state_dict())
    model = new.eval()
    with torch.inference_mode():
        assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 3, 64, 64)


def test_devices() -> None:
    assert pick_torch_device("cpu").type == "cpu"
    assert pick_torch_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="valid: auto, cpu, cuda"):
        pick_torch_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            pick_torch_device("cuda")
    assert describe_device(torch.device("cpu")).startswith("CPU (")
