"""Inference: torch and ONNX Runtime predictors and ONNX export (pure compute, no files)."""
