"""Wubineh et al.'s Otsu-bootstrapped U-Net as a CytoReview plugin."""

__version__ = "0.1.0"
