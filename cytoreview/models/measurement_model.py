"""A small classifier on a cell's measurements, and how its call joins the image network's.

The measurements are :data:`cytoreview.morphometry.features.FEATURE_NAMES` (sizes, colour,
nucleus shape and position, texture, at the crop's own resolution); a model keeps the names of
those it was fitted on and is given those, so that one fitted before a measurement was added
still works. The model is a few one-hidden-layer perceptrons trained from different seeds
(:func:`cytoreview.training.measurements.fit_measurement_model`); its probabilities are the
mean of theirs. It weighs a few thousand numbers, so it travels as plain lists inside the
classifier's config (:meth:`MeasurementModel.to_dict`): every place that has the config
(checkpoint, ``classify`` workers, the review) can run it with numpy alone.

Why: on Herlev (5 folds, engine masks, 2026-12-07) the image network and the measurements
alone score Bethesda macro F1 0.734 and 0.768 and err on different cells; joined
(:func:`combine_probs`, what the classifier reports) they score 0.772. Hand-made
features beside a network's follow Chowdary et al. (feature concatenation; paper
``003_8f15fc2d167151c0.txt``); here they are joined at the probabilities, so that the network,
its heatmap and its ONNX export stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["MeasurementModel", "combine_probs"]


@dataclass(frozen=True)
class Perceptron:
    """One member: standardised features -> ReLU hidden layer -> class logits."""

    w1: np.ndarray  # (F, H)
    b1: np.ndarray  # (H,)
    w2: np.ndarray  # (H, K)
    b2: np.ndarray  # (K,)

    def probs(self, z: np.ndarray) -> np.ndarray:
        """Softmax of the logits of standardised features ``z`` (N, F)."""
        hidden = np.maximum(z @ self.w1 + self.b1, 0.0)
        logits = hidden @ self.w2 + self.b2
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class MeasurementModel:
    """Class probabilities from measurement vectors.

    Attributes
    ----------
    features
        Names of the inputs, in order (checked against what the caller measures).
    class_names
        The classes, in the image network's order.
    mean, scale
        Standardisation of the inputs (training set's mean and standard deviation).
    members
        The perceptrons averaged.
    """

    features: tuple[str, ...]
    class_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    members: tuple[Perceptron, ...]

    def probs(self, features: np.ndarray) -> np.ndarray:
        """``(N, K)`` float32 probabilities of ``(N, F)`` measurement vectors."""
        x = np.asarray(features, np.float64)
        if x.ndim != 2 or x.shape[1] != len(self.features):
            raise ValueError(f"expected (N, {len(self.features)}) features, got {x.shape}")
        z = (x - self.mean) / self.scale
        out = np.mean([m.probs(z) for m in self.members], axis=0)
        return out.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and strings (JSON-ready, and safe to load with ``weights_only``)."""
        return {
            "features": list(self.features),
            "class_names": list(self.class_names),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "members": [
                {k: getattr(m, k).tolist() for k in ("w1", "b1", "w2", "b2")} for m in self.members
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MeasurementModel:
        """The inverse of :meth:`to_dict`."""
        members = tuple(
            Perceptron(*(np.asarray(m[k], np.float64) for k in ("w1", "b1", "w2", "b2")))
            for m in data["members"]
        )
        return cls(
            features=tuple(data["features"]),
            class_names=tuple(data["class_names"]),
            mean=np.asarray(data["mean"], np.float64),
            scale=np.asarray(data["scale"], np.float64),
            members=members,
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MeasurementModel | None:
        """The model a classifier config carries (key ``measurements``), or None.

        Raises
        ------
        ValueError
            If its classes are not the network's (``class_names`` of the config).
        """
        data = config.get("measurements")
        if not isinstance(data, dict):  # absent, or a run's record of the setting (a bool)
            return None
        model = cls.from_dict(data)
        network = tuple(config.get("class_names", model.class_names))
        if network != model.class_names:
            raise ValueError(
                f"the measurement model predicts {list(model.class_names)}, "
                f"the image network {list(network)}"
            )
        return model


def combine_probs(image_probs: np.ndarray, measured_probs: np.ndarray) -> np.ndarray:
    """The classifier's call: the normalised geometric mean of the two models' probabilities.

    A geometric mean (the mean of log-probabilities) lets either model veto a class it is sure
    against, and equals either input when both agree.

    Parameters
    ----------
    image_probs, measured_probs
        ``(N, K)`` probabilities of the same cells, same class order.

    Returns
    -------
    numpy.ndarray
        ``(N, K)`` float32, rows summing to 1.
    """
    a = np.asarray(image_probs, np.float64)
    b = np.asarray(measured_probs, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"probabilities of different shapes: {a.shape} and {b.shape}")
    g = np.sqrt(np.clip(a, 1e-12, None) * np.clip(b, 1e-12, None))
    return (g / g.sum(axis=1, keepdims=True)).astype(np.float32)
