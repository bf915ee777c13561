"""The per-chunk function of ``classify``: read a few images by path, return class probabilities.

It runs wherever the executor puts it (this process, or a Dask worker process; see
:mod:`cytoreview.workflows.executors`) and never opens the catalog: images are read through
:func:`cytoreview.storage.image_refs.read_ref`, their current masks come with the chunk (which
mask is current is the catalog's rule, applied by the main process), the classifiers come as
shared bytes (ONNX exports, or torch weights for a method without one), and the probabilities
go back to the main process, which stores them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cytoreview.errors import ImageReadError
from cytoreview.inference.classify import ClassifierSpec, predict_class_probs
from cytoreview.storage.image_refs import ImageRef, read_ref
from cytoreview.workflows.executors import Shared, cached

__all__ = ["ClassifyJob", "ClassifyModel", "ClassifyOutcome", "classify_chunk", "model_runner"]


@dataclass(frozen=True)
class ClassifyModel:
    """One classifier as a chunk runs it.

    Attributes
    ----------
    spec
        Input size, class names and architecture.
    engine
        ``"onnx"`` (the shared bytes are its export) or ``"torch"`` (a state dict saved with
        ``torch.save``, rebuilt from ``config``).
    config
        The checkpoint config (torch engine only).
    """

    spec: ClassifierSpec
    engine: str = "onnx"
    config: dict[str, Any] | None = None


@dataclass(frozen=True)
class ClassifyJob:
    """How every chunk of a ``classify`` pass runs (small: it travels with each chunk).

    ``models`` match the shared handles given to the function, in order; ``threads`` is the
    runtime's intra-op threads (None: its default for this process); ``tta``: probabilities
    are the mean over the 8 rotations and mirror images of each crop.
    """

    models: tuple[ClassifyModel, ...]
    device: str = "auto"
    threads: int | None = None
    batch_size: int = 16
    tta: bool = False


@dataclass
class ClassifyOutcome:
    """What one chunk gave: per model, the probabilities of the images read."""

    #: Positions in the chunk of the images classified, in order.
    kept: list[int] = field(default_factory=list)
    #: One ``(len(kept), K)`` array per model.
    probs: list[np.ndarray] = field(default_factory=list)
    #: (position in the chunk, one line naming the file) of every image not read.
    problems: list[tuple[int, str]] = field(default_factory=list)


def _build(data: bytes, model: ClassifyModel, job: ClassifyJob) -> Any:
    if model.engine == "torch":
        import torch

        from cytoreview.models.classifiers import build_classifier

        if job.threads:
            torch.set_num_threads(job.threads)
        net = build_classifier(dict(model.config or {}))
        net.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))
        return net.eval()
    from cytoreview.inference.cls_session import ClassifierSession

    return ClassifierSession(data, job.device, job.threads)


def model_runner(shared: Shared, model: ClassifyModel, job: ClassifyJob) -> Any:
    """The session (or torch network) of ``model``, built once per process."""
    build: Callable[[bytes], Any] = lambda data: _build(data, model, job)  # noqa: E731
    return cached(shared, build, tag=f"cls/{model.engine}/{job.device}/{job.threads}")


def classify_chunk(
    items: Sequence[tuple[ImageRef, np.ndarray | None]], *models: Shared, job: ClassifyJob
) -> ClassifyOutcome:
    """Read a chunk of images and give every model's class probabilities (a pure function).

    Parameters
    ----------
    items
        Each image (as :meth:`cytoreview.storage.project.Project.image_ref` gives it) with its
        current mask (None for an image-only model's image without one).
    models
        The classifiers' bytes, shared by the executor, in the order of ``job.models``.
    job
        How to run them (bind with :func:`functools.partial`).
    """
    outcome = ClassifyOutcome()
    images, masks = [], []
    for position, (ref, mask) in enumerate(items):
        try:
            images.append(read_ref(ref).rgb)
        except ImageReadError as exc:  # named and skipped; the rest is classified
            outcome.problems.append((position, f"{exc}; not classified"))
            continue
        masks.append(mask)
        outcome.kept.append(position)
    for shared, model in zip(models, job.models, strict=True):
        if not images:
            outcome.probs.append(np.zeros((0, len(model.spec.class_names)), np.float32))
            continue
        runner = model_runner(shared, model, job)
        outcome.probs.append(
            predict_class_probs(
                runner,
                images,
                masks,
                model.spec,
                batch_size=job.batch_size,
                device=job.device,
                tta=job.tta,
            )
        )
    return outcome
