"""Stand-in segmenters for the int8 tests: meaningful masks without any training.

A randomly initialised U-Net labels almost every pixel cytoplasm, so its masks say nothing
about quantisation. :class:`GreyNet` is a small network with hand-set weights that segments
the drawn cells of :func:`grey_cell` by brightness (bright background, mid-grey cytoplasm, dark
nucleus), with the operators that matter to the quantiser in a U-Net: 3x3 convolutions, ReLU,
max pooling, nearest-neighbour upsampling (Resize), a skip connection (Concat) and a 1x1 head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from cytoreview.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cytoreview.inference.onnx_export import export_onnx
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from tests.conftest import write_rgb_png


class GreyNet(torch.nn.Module):
    """Per-pixel logits from the local mean brightness g (normalised): dark nucleus, mid
    cytoplasm, bright background: ``8 (g - 1)``, ``-16 |g|``, ``8 (-g - 1)``, from the full
    resolution (3/4) and a 2x pooled copy (1/4)."""

    def __init__(self) -> None:
        super().__init__()
        self.smooth = torch.nn.Conv2d(3, 2, 3, padding=1, bias=False)
        self.pool = torch.nn.MaxPool2d(2)
        self.up = torch.nn.Upsample(scale_factor=2, mode="nearest")
        self.head = torch.nn.Conv2d(4, 3, 1)
        with torch.no_grad():
            self.smooth.weight.fill_(1 / 27)  # mean over 3 channels and 3x3 pixels ...
            self.smooth.weight[1].neg_()  # ... and its negative (ReLU keeps both signs)
            per_sign = torch.tensor([[8.0, -8.0], [-16.0, -16.0], [-8.0, 8.0]])  # on (g+, g-)
            self.head.weight.copy_(
                torch.cat([0.75 * per_sign, 0.25 * per_sign], 1)[:, :, None, None]
            )
            self.head.bias.copy_(torch.tensor([-8.0, 0.0, -8.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) normalised images to (N, 3, H, W) logits; H, W even."""
        fine = torch.relu(self.smooth(x))
        coarse = self.up(self.pool(fine))
        return self.head(torch.cat([fine, coarse], 1))


def grey_cell(h: int, w: int, seed: int) -> np.ndarray:
    """A drawn cell: bright slide, mid-grey cytoplasm, dark nucleus, soft edges and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6)
    r = np.hypot((yy - cy) / rng.uniform(0.8, 1.2), xx - cx)
    cell, nucleus = min(h, w) * rng.uniform(0.3, 0.42), min(h, w) * rng.uniform(0.08, 0.16)
    grey = np.where(r < cell, 120.0, 235.0)
    grey = np.where(r < nucleus, 25.0, grey)
    grey += rng.normal(0, 10, (h, w))
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def grey_cells(n: int, seed: int, sizes: tuple[int, int] = (40, 90)) -> list[np.ndarray]:
    """``n`` cells of random sizes (the letterbox resizes them, as for real crops)."""
    rng = np.random.default_rng(seed)
    return [
        grey_cell(int(rng.integers(*sizes)), int(rng.integers(*sizes)), seed * 1000 + i)
        for i in range(n)
    ]


def grey_net_onnx(input_size: int = 64) -> bytes:
    """The exported :class:`GreyNet` (softmax head included)."""
    return export_onnx(GreyNet().eval(), input_size)


def model_config(model_id: str, input_size: int = 64) -> dict[str, Any]:
    """The parts of a segmenter's config that inference reads."""
    return {
        "kind": "segmentation",
        "model_id": model_id,
        "arch": "unet",
        "encoder": "resnet18",
        "class_names": ["background", "cytoplasm", "nucleus"],
        "input_size": input_size,
        "tile_threshold": 1024,
        "tile_overlap": 16,
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
    }


def add_grey_model(project: Project, onnx_bytes: bytes, input_size: int = 64) -> str:
    """Register ``onnx_bytes`` as the project's current segmenter; return its model id.

    ``model.onnx`` is what inference runs; the checkpoint only carries the config (its empty
    weights are never loaded while the ONNX export exists).
    """
    store = ModelStore(project)
    model_id = store.new_model_id("seg", "grey")
    config = model_config(model_id, input_size)
    store.save_weights(model_id, {}, config)
    store.save_onnx(model_id, onnx_bytes)
    run_id = store.start_run("segmentation", model_id, config, actor="test")
    store.finish_run(run_id, "finished", {}, actor="test", has_checkpoint=True)
    return model_id


def write_grey_cells(folder: Path, n: int, seed: int) -> Path:
    """PNG files of :func:`grey_cells` in ``folder/NILM`` (a class folder, for import)."""
    for i, rgb in enumerate(grey_cells(n, seed)):
        write_rgb_png(folder / "NILM" / f"cell_{seed}_{i:02d}.png", rgb)
    return folder
