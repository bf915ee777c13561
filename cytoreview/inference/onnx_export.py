"""Export a segmenter to ONNX (as bytes) and choose ONNX Runtime's execution providers.

Pure compute: the model leaves here as ``bytes``; writing it to the project is storage's job.

The exported graph takes ``image`` (N, 3, H, W) float32, normalised like the training data, and
gives ``probs`` (N, C, H, W) float32, the softmax over classes. N, H and W are dynamic, but an
smp U-Net halves the resolution five times, so H and W must be multiples of 32 (pad or tile
larger images to such sizes before inference).
"""

from __future__ import annotations

import functools
import io
import logging
import time
import warnings
from copy import deepcopy

import onnx
import onnxruntime as ort
import torch
from google.protobuf.message import DecodeError
from onnx import TensorProto, helper

from cytoreview.errors import ConfigError

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "SIZE_MULTIPLE",
    "export_onnx",
    "onnx_gpu_available",
    "onnx_model_problem",
    "onnx_providers",
]

INPUT_NAME = "image"
OUTPUT_NAME = "probs"
SIZE_MULTIPLE = 32  # five 2x poolings in the U-Net encoder

_CPU = "CPUExecutionProvider"
_CUDA = "CUDAExecutionProvider"
_ORT_FATAL_ONLY = 4
_ORT_DEFAULT_SEVERITY = 2  # warnings and above

log = logging.getLogger(__name__)

# Warnings from the legacy exporter that say nothing about this export (see export_onnx):
# - torch >= 2.9 announces that the dynamo exporter is now the default; we choose the legacy one
#   on purpose (no onnxscript dependency, 4x faster, silent) and pin it with dynamo=False;
# - torch calls its own deprecated ``exporter_context`` helper internally.
_HARMLESS_EXPORT_WARNINGS = (
    r"You are using the legacy TorchScript-based ONNX export",
    r"The feature will be removed\. Please remove usage of this function",
)


def onnx_model_problem(data: bytes) -> str | None:
    """Why ``data`` is not a usable ONNX model (damaged, cut off, not ONNX), or None if it is.

    A stored export is derived from the weights; one that does not parse or check would
    otherwise fail later inside ONNX Runtime with a message that names no file.
    """
    try:
        onnx.checker.check_model(onnx.load_from_string(bytes(data)))
    except DecodeError:
        return "not a valid ONNX file (damaged, cut off or of another kind)"
    except onnx.checker.ValidationError as exc:
        return f"not a valid ONNX model ({(str(exc).splitlines() or ['?'])[0][:160]})"
    return None


class SoftmaxHead(torch.nn.Module):
    """Wrap a logits model so the exported graph gives probabilities, not logits."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Class probabilities: the softmax of the model's logits over dim 1."""
        return torch.softmax(self.model(image), dim=1)


def export_onnx(model: torch.nn.Module, input_size: int, opset: int = 17) -> bytes:
    """Export a segmentation model to ONNX, with a softmax head, as bytes.

    The exported graph has one input ``"image"`` (N, 3, H, W) float32, normalised, and one
    output ``"probs"`` (N, C, H, W) float32 that sums to 1 over C. The batch size N and the
    spatial size H, W are dynamic axes; H and W must be multiples of 32 for a U-Net.

    Parameters
    ----------
    model
        A torch module that maps (N, 3, H, W) images to (N, C, H, W) logits. It is not changed:
        a copy is exported in eval mode, on the CPU, in float32.
    input_size
        Side of the square example input used for tracing; a positive multiple of 32 (the
        size the model was trained at is a good choice).
    opset
        ONNX operator set version.

    Returns
    -------
    bytes
        The serialised ONNX model, checked by ``onnx.checker``.

    Raises
    ------
    ValueError
        If ``input_size`` is not a positive multiple of 32.
    """
    if input_size <= 0 or input_size % SIZE_MULTIPLE:
        raise ValueError(
            f"input_size must be a positive multiple of {SIZE_MULTIPLE}, got {input_size}"
        )
    # A copy, so a model that is training on a GPU keeps its device, dtype and mode.
    wrapper = SoftmaxHead(deepcopy(model)).to(device="cpu", dtype=torch.float32).eval()
    # Batch 2, not 1: a size-1 example invites the tracer to fold the batch into constants.
    example = torch.zeros(2, 3, input_size, input_size, dtype=torch.float32)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    buffer = io.BytesIO()
    start = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        for message in _HARMLESS_EXPORT_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        # The legacy TorchScript exporter: the dynamo exporter needs the extra onnxscript
        # package, took ~16 s instead of ~4 s for a resnet18 U-Net and prints progress lines.
        torch.onnx.export(
            wrapper,
            (example,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    data = buffer.getvalue()
    onnx.checker.check_model(onnx.load_from_string(data))
    log.debug("ONNX export: %.1f MB in %.1f s", len(data) / 1e6, time.perf_counter() - start)
    return data


def _probe_model() -> bytes:
    """A one-node ONNX model (y = x + x), just enough to see whether a provider loads."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return model.SerializeToString()


def _cuda_session_works() -> bool:
    """Whether ONNX Runtime really opens a session on the CUDA provider."""
    if hasattr(ort, "preload_dlls"):
        # Lets ORT find the CUDA/cuDNN libraries that come with torch's nvidia-* wheels.
        try:
            ort.preload_dlls()
        except Exception:  # a failed preload only means the check below fails
            log.debug("onnxruntime.preload_dlls failed", exc_info=True)
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_FATAL_ONLY
    # A provider that fails to load reports through ORT's process-wide default logger (a red
    # multi-line dump on stderr), not the session's: mute it for the probe and say it in one
    # line below instead. ORT has no getter, so it goes back to ORT's own default afterwards.
    ort.set_default_logger_severity(_ORT_FATAL_ONLY)
    try:
        session = ort.InferenceSession(_probe_model(), options, providers=[_CUDA, _CPU])
        # ORT falls back to the CPU when the CUDA provider cannot load: ask what it got.
        works = _CUDA in session.get_providers()
    except Exception:  # any failure to build the session means "no usable GPU"
        log.debug("ONNX Runtime CUDA probe failed", exc_info=True)
        works = False
    finally:
        ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)
    if not works:
        log.warning(
            "ONNX Runtime cannot use the CUDA GPU (its CUDA/cuDNN libraries did not load); "
            "ONNX inference will run on the CPU"
        )
    return works


@functools.cache
def onnx_gpu_available() -> bool:
    """Whether ONNX Runtime can really run on a CUDA GPU here (the answer is cached).

    The GPU build of onnxruntime lists ``CUDAExecutionProvider`` as available on machines
    without a GPU, so the list alone proves nothing: torch must see a GPU, and a tiny probe
    session must really get the CUDA provider.

    Returns
    -------
    bool
        True only if a CUDA session works.
    """
    if not torch.cuda.is_available():
        return False
    if _CUDA not in ort.get_available_providers():
        return False
    return _cuda_session_works()


def onnx_providers(device: str = "auto") -> list[str]:
    """ONNX Runtime execution providers for a device choice, in order of preference.

    Parameters
    ----------
    device
        ``"auto"`` (the CUDA GPU when one really works, else the CPU), ``"cpu"`` or ``"cuda"``.

    Returns
    -------
    list of str
        Provider names; the CPU provider always comes last, as ORT's fallback for any node the
        CUDA provider does not implement.

    Raises
    ------
    ConfigError
        If ``"cuda"`` is asked for and no usable CUDA GPU is present, or for an unknown name.
    """
    if device == "cpu":
        return [_CPU]
    if device == "auto":
        return [_CUDA, _CPU] if onnx_gpu_available() else [_CPU]
    if device == "cuda":
        if not onnx_gpu_available():
            raise ConfigError(
                "ONNX Runtime cannot use a CUDA GPU on this machine (no GPU found, or its "
                "CUDA/cuDNN libraries do not load); use device 'cpu' or 'auto'"
            )
        return [_CUDA, _CPU]
    raise ConfigError(f"unknown device {device!r}; valid: auto, cpu, cuda")
