"""The per-chunk function of ``segment``: read a few images by path, segment them, return masks.

It runs wherever the executor puts it (this process, or a Dask worker process; see
:mod:`cytoreview.workflows.executors`) and never opens the catalog: images are read through
:func:`cytoreview.storage.image_refs.read_ref`, the model comes as shared bytes (the ONNX
export in the precision the main process chose, or torch weights), and the masks go back to
the main process, which saves them. Chunks are the batches of the in-process path, so that a
model sees the same batches wherever it runs and the masks are the same bit for bit.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cytoreview.errors import ImageReadError
from cytoreview.inference.predictors import OnnxPredictor, Predictor, TorchPredictor
from cytoreview.inference.segment import SegmenterSpec, segment_images, with_tta
from cytoreview.storage.image_refs import ImageRef, read_ref
from cytoreview.workflows.executors import Shared, cached

__all__ = ["ChunkOutcome", "SegmentJob", "build_predictor", "job_predictor", "segment_chunk"]


@dataclass(frozen=True)
class SegmentJob:
    """How every chunk of a ``segment`` pass runs (small: it travels with each chunk).

    Attributes
    ----------
    spec
        The model's input geometry and classes.
    engine
        ``"onnx"`` (the shared bytes are an ONNX model) or ``"torch"`` (a state dict saved
        with ``torch.save``, rebuilt from ``network``).
    device
        ``"cpu"``, ``"cuda"`` or ``"auto"``; on a GPU worker, its one visible GPU.
    precision
        ``"fp32"`` or ``"int8"``: what the ONNX bytes compute in (a label, decided by the main
        process's quality gate).
    tta
        Average the 8 rotations and mirror images.
    threads
        Intra-op threads of the runtime (None: all the cores of the process).
    network
        The checkpoint config that rebuilds a torch network (torch engine only).
    """

    spec: SegmenterSpec
    engine: str = "onnx"
    device: str = "cpu"
    precision: str = "fp32"
    tta: bool = False
    threads: int | None = None
    network: dict[str, Any] | None = None

    def runtime_tag(self) -> str:
        """What distinguishes two predictors built from the same bytes."""
        return f"{self.engine}/{self.device}/{self.precision}/{self.threads}"


@dataclass
class ChunkOutcome:
    """What one chunk gave: masks by position in the chunk, and images that failed."""

    #: (position in the chunk, label mask, uncertainty) of every image segmented.
    masks: list[tuple[int, np.ndarray, float]] = field(default_factory=list)
    #: (position in the chunk, one line naming the file) of every image not read.
    problems: list[tuple[int, str]] = field(default_factory=list)


def build_predictor(data: bytes, job: SegmentJob) -> Predictor:
    """A predictor from a model's bytes (see :attr:`SegmentJob.engine`)."""
    if job.engine == "torch":
        import torch

        from cytoreview.models.segmenters import build_segmenter

        if job.threads:
            torch.set_num_threads(job.threads)
        model = build_segmenter(dict(job.network or {}))
        model.load_state_dict(torch.load(io.BytesIO(data), weights_only=True))
        return TorchPredictor(model, device=job.device)
    return OnnxPredictor(data, device=job.device, threads=job.threads, precision=job.precision)


def job_predictor(model: Shared, job: SegmentJob) -> Predictor:
    """The predictor of ``job``, built once per process from the shared model bytes."""
    return cached(model, lambda data: build_predictor(data, job), tag=job.runtime_tag())


def segment_chunk(refs: Sequence[ImageRef], model: Shared, *, job: SegmentJob) -> ChunkOutcome:
    """Read and segment a chunk of images (a pure function: the caller saves the masks).

    Parameters
    ----------
    refs
        The images, as :meth:`cytoreview.storage.project.Project.image_ref` gives them.
    model
        The model's bytes, shared by the executor.
    job
        How to run it (bind with :func:`functools.partial`).

    Returns
    -------
    ChunkOutcome
        An image that cannot be read is named in ``problems``; the others are segmented.
    """
    outcome = ChunkOutcome()
    loaded: list[tuple[int, np.ndarray]] = []
    for position, ref in enumerate(refs):
        try:
            loaded.append((position, read_ref(ref).rgb))
        except ImageReadError as exc:  # skipped and named; the rest is segmented
            outcome.problems.append((position, f"{exc}; not segmented"))
    if not loaded:
        return outcome
    predictor = job_predictor(model, job)
    predict = with_tta(predictor) if job.tta else predictor
    results = segment_images([rgb for _, rgb in loaded], predict, job.spec)
    for (position, _), result in zip(loaded, results, strict=True):
        outcome.masks.append((position, result.mask, result.uncertainty))
    return outcome
