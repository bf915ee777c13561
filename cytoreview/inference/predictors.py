"""Predictors: batches of normalised images in, class probabilities out (torch or ONNX Runtime).

Both kinds share one call signature, (N, 3, H, W) float32 -> (N, C, H, W) float32 probabilities,
so the batch auto-mask step can run ONNX Runtime while tests keep torch as the reference.
"""

from __future__ import annotations

import contextlib
import os
from typing import Protocol, runtime_checkable

import numpy as np
import onnxruntime as ort
import torch

from cytoreview.inference.onnx_export import OUTPUT_NAME, onnx_providers
from cytoreview.models.devices import pick_torch_device

__all__ = [
    "OnnxPredictor",
    "Predictor",
    "TorchPredictor",
]

_ORT_ERRORS_ONLY = 3


@runtime_checkable
class Predictor(Protocol):
    """Anything that turns a batch of images into class probabilities.

    Attributes
    ----------
    device
        Human-readable description of where it runs, e.g. ``"CPU (onnxruntime int8, 2 threads)"``.
    """

    device: str

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Map (N, 3, H, W) float32 normalised images to (N, C, H, W) float32 probabilities."""
        ...


def _as_batch(batch: np.ndarray) -> np.ndarray:
    """Check a batch's rank and give it as contiguous float32 (what both runtimes expect)."""
    if not isinstance(batch, np.ndarray) or batch.ndim != 4:
        shape = getattr(batch, "shape", None)
        raise ValueError(f"expected a (N, C, H, W) numpy array, got shape {shape}")
    return np.ascontiguousarray(batch, dtype=np.float32)


class TorchPredictor:
    """Run a torch segmenter and return softmax probabilities (the reference implementation).

    Parameters
    ----------
    model
        Maps (N, 3, H, W) images to (N, C, H, W) logits. The predictor takes it over: it is
        moved to the device and put in eval mode in place (a copy would double GPU memory).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (see :func:`pick_torch_device`).
    amp
        Use mixed precision (bfloat16 where the GPU supports it, else float16) on CUDA. Ignored
        on the CPU, where autocast is slower than float32 for convolutions.
    """

    def __init__(self, model: torch.nn.Module, device: str = "auto", amp: bool = True) -> None:
        self.torch_device = pick_torch_device(device)
        self._cuda = self.torch_device.type == "cuda"
        self._amp_dtype: torch.dtype | None = None
        if self._cuda and amp:
            bf16 = torch.cuda.is_bf16_supported()
            self._amp_dtype = torch.bfloat16 if bf16 else torch.float16
        model = model.to(self.torch_device).eval()
        if not self._cuda:
            # oneDNN convolutions run faster on NHWC tensors.
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        if self._cuda:
            precision = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}
            name = torch.cuda.get_device_name(self.torch_device)
            self.device = f"{name} (torch CUDA, {precision[self._amp_dtype]})"
        else:
            self.device = f"CPU (torch, {torch.get_num_threads()} threads)"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch.

        Parameters
        ----------
        batch
            (N, 3, H, W) float32 normalised images; H and W multiples of 32.

        Returns
        -------
        numpy.ndarray
            (N, C, H, W) float32 probabilities that sum to 1 over C.
        """
        x = torch.from_numpy(_as_batch(batch)).to(self.torch_device, non_blocking=True)
        if not self._cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(device_type="cuda", dtype=self._amp_dtype)
            if self._amp_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            logits = self.model(x)
            # Softmax in float32 even under autocast, so probabilities sum to 1 closely.
            probs = torch.softmax(logits.float(), dim=1)
        return np.ascontiguousarray(probs.cpu().numpy(), dtype=np.float32)


class OnnxPredictor:
    """Run an exported ONNX segmenter (see :func:`~cytoreview.inference.onnx_export.export_onnx`).

    Parameters
    ----------
    onnx_bytes
        The serialised model, whose output ``"probs"`` is already a softmax. Bytes only, never
        a path: inference reads no files (storage does).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (see
        :func:`~cytoreview.inference.onnx_export.onnx_providers`).
    threads
        Intra-op threads for the CPU; default: the CPU cores this process may use.
    precision
        What ``onnx_bytes`` computes in, e.g. ``"fp32"`` or ``"int8"`` (a quantised variant):
        a label only, shown in :attr:`device` on the CPU so that the window and the report say
        which model really runs.

    Raises
    ------
    TypeError
        If ``onnx_bytes`` is not bytes (a path string would make ONNX Runtime open a file).
    """

    def __init__(
        self,
        onnx_bytes: bytes,
        device: str = "auto",
        threads: int | None = None,
        precision: str = "fp32",
    ) -> None:
        if not isinstance(onnx_bytes, bytes | bytearray | memoryview):
            raise TypeError(f"onnx_bytes must be bytes, got {type(onnx_bytes).__name__}")
        providers = onnx_providers(device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = _ORT_ERRORS_ONLY
        self.threads = threads or _usable_cpu_count()
        options.intra_op_num_threads = self.threads
        # Waiting pool threads sleep instead of spin-waiting. Segmenting beside other work (the
        # mask writes of the next batch, or another busy process) on 2 cores, spinning threads
        # burnt the cores the others needed: 256 px int8 U-Net 72 -> 52 ms per image, segment
        # end to end 105 -> 72 ms per image without spinning (the classifier session found the
        # same, see cls_session.py).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._session = ort.InferenceSession(bytes(onnx_bytes), options, providers=providers)
        self._input = self._session.get_inputs()[0].name
        self.precision = precision
        if "CUDAExecutionProvider" in self._session.get_providers():
            self.device = f"{torch.cuda.get_device_name()} (onnxruntime CUDA)"
        else:
            self.device = f"CPU (onnxruntime {precision}, {self.threads} threads)"

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for a batch.

        Parameters
        ----------
        batch
            (N, 3, H, W) float32 normalised images; H and W multiples of 32.

        Returns
        -------
        numpy.ndarray
            (N, C, H, W) float32 probabilities that sum to 1 over C.
        """
        (probs,) = self._session.run([OUTPUT_NAME], {self._input: _as_batch(batch)})
        return np.asarray(probs, dtype=np.float32)


def _usable_cpu_count() -> int:
    """CPU cores this process may run on (the affinity mask, which containers narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
