"""Chowdary et al.'s Residual SE U-Net and feature-fusion classifier as a CytoReview plugin."""

__version__ = "0.1.0"
