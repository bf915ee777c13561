"""Segmenter registry and encoders."""

from __future__ import annotations

import pytest
import torch

from cytoreview.errors import ConfigError
from cytoreview.models.devices import describe_device, pick_torch_device
from cytoreview.models.registry import Registry
from cytoreview.models.segmenters import SEG_ENCODERS, SEGMENTERS, build_segmenter, build_unet


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
    with pytest.raises(ConfigError, match="unknown segmenter 'segnet'; valid: unet"):
        SEGMENTERS.create("segnet")
    registry: Registry[int] = Registry("thing")
    registry.register("one", lambda: 1)
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("one", lambda: 2)


def test_build_from_config_alone() -> None:
    model = build_segmenter({"arch": "unet", "encoder": "mobilenet_v2", "class_names": [0, 1, 2]})
    assert type(model.encoder).__name__.lower().startswith("mobilenet")


def test_devices() -> None:
    assert pick_torch_device("cpu").type == "cpu"
    assert pick_torch_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="valid: auto, cpu, cuda"):
        pick_torch_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            pick_torch_device("cuda")
    assert describe_device(torch.device("cpu")).startswith("CPU (")
