"""Settings of the feature-fusion MLP classifier (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FusionMlpSettings:
    """Settings of the feature-fusion MLP classifier (filled in by its implementation)."""
