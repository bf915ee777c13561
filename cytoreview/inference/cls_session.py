"""An ONNX Runtime session for an exported cell classifier, safe beside other busy processes.

The graph comes from :func:`~cytoreview.inference.classify.export_classifier_onnx`: ``image``
``(N, 6, S, S)`` in, ``probs`` out, and for a cell classifier also the CAM layer's activations
(``cam_features``) and the dense head's hidden activations (``head_hidden``), from which a
Grad-CAM++ map follows without autograd (:mod:`cytoreview.explain.cam_closed_form`).

Threads. The classifier's convolutions are small (a 128 px crop leaves a 4 x 4 map in the last
stage), so ONNX Runtime splits each one into short parallel sections and its threads meet at a
barrier many times per image. With the default spin-waiting, a thread that reaches the barrier
burns its core waiting for one that the kernel has descheduled in favour of another busy
process; measured on 2 cores beside one CPU-bound process, 2 spinning threads took twice as long
per image as 1 thread. Waiting threads therefore sleep instead of spinning
(``session.intra_op.allow_spinning = 0``), which costs nothing measurable on an idle machine,
and the pool has as many threads as the cores this process may use (its affinity mask).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch

from cytoreview.inference.classify import CAM_FEATURES, HEAD_HIDDEN
from cytoreview.inference.onnx_export import INPUT_NAME, OUTPUT_NAME, onnx_providers

__all__ = [
    "CamForward",
    "ClassifierSession",
    "default_threads",
]

_ORT_ERRORS_ONLY = 3


def default_threads() -> int:
    """Intra-op threads for a classifier session: the cores this process may run on.

    ``CYTOREVIEW_CLS_THREADS`` overrides it (e.g. 1 on a machine shared with a long job).
    """
    override = os.environ.get("CYTOREVIEW_CLS_THREADS", "").strip()
    if override.isdigit() and int(override) > 0:
        return int(override)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class CamForward:
    """One forward pass with what a closed-form Grad-CAM++ needs.

    Attributes
    ----------
    probs
        ``(N, K)`` float32 class probabilities.
    features
        ``(N, C, h, w)`` float32 activations of the CAM layer.
    hidden
        ``(N, H)`` float32 hidden activations of the dense head (after its ReLU), or None for
        a model without a hidden layer.
    """

    probs: np.ndarray
    features: np.ndarray
    hidden: np.ndarray | None


def session_options(threads: int, spinning: bool = False) -> ort.SessionOptions:
    """Session options of a classifier session (see the module notes on threads).

    Parameters
    ----------
    threads
        Intra-op threads (>= 1).
    spinning
        Whether idle pool threads spin-wait for work (ONNX Runtime's default) or sleep.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = _ORT_ERRORS_ONLY
    options.intra_op_num_threads = threads
    # One graph branch at a time: the fusion model's two CNNs in parallel would double the
    # threads, and with them the contention the intra-op setting avoids.
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class ClassifierSession:
    """Run an exported cell classifier in ONNX Runtime.

    Parameters
    ----------
    onnx_bytes
        The serialised graph (bytes, never a path: inference reads no files).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (see
        :func:`~cytoreview.inference.onnx_export.onnx_providers`).
    threads
        Intra-op threads on the CPU; default :func:`default_threads`.
    spinning
        Let idle threads spin (faster only on a machine with cores to spare).

    Attributes
    ----------
    device
        Where it runs, e.g. ``"CPU (onnxruntime, 2 threads)"``.
    has_cam
        Whether the graph gives the CAM layer's activations (exports before this one did not).
    """

    def __init__(
        self,
        onnx_bytes: bytes,
        device: str = "auto",
        threads: int | None = None,
        spinning: bool = False,
    ) -> None:
        if not isinstance(onnx_bytes, bytes | bytearray | memoryview):
            raise TypeError(f"onnx_bytes must be bytes, got {type(onnx_bytes).__name__}")
        self.threads = threads or default_threads()
        options = session_options(self.threads, spinning)
        self._session = ort.InferenceSession(
            bytes(onnx_bytes), options, providers=onnx_providers(device)
        )
        outputs = [o.name for o in self._session.get_outputs()]
        self.has_cam = CAM_FEATURES in outputs
        self._cam_outputs = [OUTPUT_NAME, CAM_FEATURES] + (
            [HEAD_HIDDEN] if HEAD_HIDDEN in outputs else []
        )
        if "CUDAExecutionProvider" in self._session.get_providers():
            self.device = f"{torch.cuda.get_device_name()} (onnxruntime CUDA)"
        else:
            self.device = f"CPU (onnxruntime, {self.threads} threads)"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """``(N, K)`` float32 probabilities of a ``(N, 6, S, S)`` float32 batch."""
        (probs,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: _as_batch(batch)})
        return np.asarray(probs, np.float32)

    def run_with_cam(self, batch: np.ndarray) -> CamForward:
        """Probabilities plus the activations a closed-form Grad-CAM++ needs, in one pass.

        Raises
        ------
        ValueError
            If the graph has no CAM output (an export made before it had one).
        """
        if not self.has_cam:
            raise ValueError(f"this ONNX graph has no {CAM_FEATURES!r} output; export it again")
        outs = self._session.run(self._cam_outputs, {INPUT_NAME: _as_batch(batch)})
        hidden = np.asarray(outs[2], np.float32) if len(outs) > 2 else None
        return CamForward(np.asarray(outs[0], np.float32), np.asarray(outs[1], np.float32), hidden)


def _as_batch(batch: np.ndarray) -> np.ndarray:
    if not isinstance(batch, np.ndarray) or batch.ndim != 4:
        shape = getattr(batch, "shape", None)
        raise ValueError(f"expected a (N, 6, S, S) numpy array, got shape {shape}")
    return np.ascontiguousarray(batch, dtype=np.float32)
