"""What every trainer needs from torch: a seeded, repeatable start and the right autocast."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed torch and numpy (and make cuDNN deterministic) so a run can be repeated."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def autocast_for(device: torch.device, enabled: bool) -> Any:
    """Mixed precision on CUDA (bf16 where the GPU has it, else fp16); plain fp32 on the CPU."""
    if device.type == "cuda" and enabled:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)
