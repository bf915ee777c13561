"""Sritharan et al.'s explanation-driven weak segmentation (masks from class labels) as a plugin."""

__version__ = "0.1.0"
