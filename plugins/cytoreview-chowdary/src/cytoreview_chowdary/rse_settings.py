"""Settings of the Residual SE U-Net (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RseUnetSettings:
    """Settings of the Residual SE U-Net (filled in by its implementation)."""
