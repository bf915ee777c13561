"""Evaluation metrics: segmentation scores against reference masks (pure compute, no files)."""
