"""Static int8 quantisation of an exported segmenter, for ONNX Runtime's CPU provider.

Pure compute: ONNX bytes and calibration batches in, int8 ONNX bytes out. ONNX Runtime's
quantiser works on files only, so it runs in a private temporary folder that is gone when
:func:`quantize_int8` returns; nothing is written into the project (storage does that).

What was measured on a resnet18 U-Net (ONNX Runtime 1.31, 2 cores with AVX512-VNNI), and why
the settings are what they are:

* The exported graph's dynamic N, H and W need no fixing. MinMax calibration runs batches of
  any shape (crops and tiles, a short last batch) and the int8 graph keeps the dynamic axes.
  The histogram calibrators (Percentile, Entropy) fail on batches of different shapes (they
  stack all outputs into one array), so MinMax it is.
* QDQ format, unsigned 8-bit activations and signed 8-bit weights (ONNX Runtime's advice for
  x86); weights with 7 bits only on CPUs without VNNI (see
  :func:`~cytoreview.inference.cpu_support.int8_reduce_range`).
* Per-channel weights: on the synthetic test set they lost 0.0052 / 0.0028 Dice (cytoplasm /
  nucleus) against fp32 masks, per-tensor 0.0057 / 0.0022, at the same speed; per channel is
  kept because it protects layers whose channels differ in scale (ResNet blocks).
* The final Softmax stays in float32. Quantised, the probabilities come out in steps of 1/255,
  which doubled the change in the review queue's uncertainty scores (0.0016 instead of 0.0008)
  for no speed gain. Leaving out more (the first or the last convolution, the last decoder
  block, everything but convolutions) did not reduce the Dice loss and cost up to 30 % speed.
* ``quant_pre_process`` (shape inference and graph clean-up) is ONNX Runtime's recommended
  first step. Here the masks came out the same with and without it; it is run anyway (about a
  second) because the quantiser needs every tensor's type and shape, which other encoders'
  graphs may not carry without it. Its symbolic shape inference is skipped: it gave up on a
  small U-Net-like test graph ("Incomplete symbolic shape inference") and is meant for
  transformers; ONNX's own shape inference does the job.
* Before quantising, :func:`prepare_graph` applies the rewrites of
  :mod:`~cytoreview.inference.graph_rewrites` (softmax by parts, constant 2x upsampling), checked
  to give the same outputs as the original graph on a calibration input.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from cytoreview.inference.graph_rewrites import (
    drop_unused_nodes,
    softmax_by_parts,
    upsample_by_two,
)
from cytoreview.inference.onnx_export import INPUT_NAME
from cytoreview.inference.segment import SegmenterSpec, predict_probs

__all__ = ["Int8Settings", "calibration_batches", "prepare_graph", "quantize_int8"]

#: How close the rewritten graph's probabilities must stay to the original's.
REWRITE_TOLERANCE = 1e-5
_ORT_ERRORS_ONLY = 3


@dataclass(frozen=True)
class Int8Settings:
    """How the int8 model is built (stored with it, so a change triggers a rebuild).

    Attributes
    ----------
    per_channel
        One scale per output channel of each weight tensor.
    reduce_range
        7-bit weights, for x86 CPUs without VNNI.
    excluded_ops
        Operator types left in float32 (the softmax, also when rewritten by parts).
    calibration
        ONNX Runtime's calibration method.
    graph_rewrites
        Apply :func:`prepare_graph` first.
    """

    per_channel: bool = True
    reduce_range: bool = False
    excluded_ops: tuple[str, ...] = ("Softmax", "ReduceMax", "Sub", "Exp", "ReduceSum", "Div")
    calibration: str = "MinMax"
    graph_rewrites: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the precision record."""
        return {
            **asdict(self),
            "excluded_ops": list(self.excluded_ops),
            "format": "QDQ",
            "activations": "uint8",
            "weights": "int8",
        }


def calibration_batches(
    images: Sequence[np.ndarray], spec: SegmenterSpec, batch_size: int = 8, limit: int = 64
) -> list[np.ndarray]:
    """The model inputs that segmenting ``images`` feeds the network, batch by batch.

    The inputs are captured from :func:`~cytoreview.inference.segment.predict_probs` itself
    (with a stand-in model), so calibration sees exactly what inference sees: letterboxed crops,
    or tiles of large fields, normalised, in batches of up to ``batch_size`` images.

    Parameters
    ----------
    images
        RGB uint8 images of any size.
    spec
        The model's input size, tiling and normalisation.
    batch_size
        Images per call, as in ``segment``.
    limit
        Stop once this many model inputs (crops or tiles) are collected.

    Returns
    -------
    list of numpy.ndarray
        (N, 3, S, S) float32 batches, at most ``limit`` inputs in all.
    """
    batches: list[np.ndarray] = []
    count = 0

    def record(batch: np.ndarray) -> np.ndarray:
        nonlocal count
        keep = batch[: max(0, limit - count)]
        if len(keep):
            batches.append(np.ascontiguousarray(keep, dtype=np.float32))
            count += len(keep)
        # Any valid probabilities will do: the caller's results are thrown away.
        return np.full((len(batch), 2, *batch.shape[2:]), 0.5, np.float32)

    for first in range(0, len(images), batch_size):
        if count >= limit:
            break
        predict_probs(images[first : first + batch_size], record, spec)
    return batches


def _run(onnx_bytes: bytes, batch: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_ERRORS_ONLY
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: batch})[0]


def prepare_graph(onnx_bytes: bytes, probe: np.ndarray) -> tuple[bytes, tuple[str, ...]]:
    """The fp32 graph with the rewrites of :mod:`~cytoreview.inference.graph_rewrites`.

    Parameters
    ----------
    onnx_bytes
        The fp32 export.
    probe
        A small (N, 3, S, S) batch of real inputs: the rewritten graph must give the same
        probabilities on it (within :data:`REWRITE_TOLERANCE`), else the original is kept.

    Returns
    -------
    tuple
        The graph to quantise and the names of the rewrites applied (empty: the original).
    """
    model = onnx.load_from_string(onnx_bytes)
    applied = []
    if softmax_by_parts(model):
        applied.append("softmax_by_parts")
    if upsample_by_two(model):
        drop_unused_nodes(model)
        applied.append("upsample_by_two")
    if not applied:
        return onnx_bytes, ()
    rewritten = model.SerializeToString()
    probe = np.ascontiguousarray(probe, dtype=np.float32)
    want = _run(onnx_bytes, probe)
    try:
        got = _run(rewritten, probe)
    except Exception:  # noqa: BLE001 - a graph the rewrites do not fit: keep the original
        return onnx_bytes, ()
    if got.shape != want.shape or not np.allclose(got, want, atol=REWRITE_TOLERANCE):
        return onnx_bytes, ()
    return rewritten, tuple(applied)


class _Batches(CalibrationDataReader):
    """Hands ONNX Runtime's calibrator one recorded batch at a time."""

    def __init__(self, batches: Sequence[np.ndarray]) -> None:
        self._batches: Iterator[np.ndarray] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Keep ONNX Runtime's quantiser from configuring and filling the root logger.

    The quantiser logs through module-level ``logging.warning`` / ``logging.info``, which call
    ``logging.basicConfig()`` when the root logger has no handler: a library would otherwise
    install a stderr handler for the whole program and print advice such as "consider
    pre-processing" in the middle of a progress bar.
    """
    root = logging.getLogger()
    level = root.level
    guard = logging.NullHandler() if not root.handlers else None
    if guard is not None:
        root.addHandler(guard)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        if guard is not None:
            root.removeHandler(guard)


def quantize_int8(
    onnx_bytes: bytes, batches: Sequence[np.ndarray], settings: Int8Settings | None = None
) -> bytes:
    """Build the int8 (static, QDQ) variant of an exported segmenter.

    Parameters
    ----------
    onnx_bytes
        The fp32 export (:func:`~cytoreview.inference.onnx_export.export_onnx`).
    batches
        Calibration inputs, e.g. from :func:`calibration_batches`.
    settings
        How to quantise (default: :class:`Int8Settings`).

    Returns
    -------
    bytes
        The int8 model: same input and output names, dtypes and dynamic axes as the fp32 one.

    Raises
    ------
    ValueError
        If there are no calibration batches.
    """
    if not batches:
        raise ValueError("int8 calibration needs at least one batch of model inputs")
    settings = settings or Int8Settings()
    with tempfile.TemporaryDirectory(prefix="cytoreview-int8-") as scratch, _quiet_root_logger():
        source, prepared, target = (Path(scratch, n) for n in ("in.onnx", "pre.onnx", "q.onnx"))
        source.write_bytes(onnx_bytes)
        quant_pre_process(source, prepared, skip_symbolic_shape=True)
        graph = onnx.load(prepared, load_external_data=False).graph
        excluded = [n.name for n in graph.node if n.op_type in settings.excluded_ops]
        quantize_static(
            prepared,
            target,
            _Batches(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            reduce_range=settings.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=excluded,
            calibrate_method=getattr(CalibrationMethod, settings.calibration),
            # No "CalibMaxIntermediateOutputs": in ONNX Runtime 1.31 it drops the collected
            # batches instead of merging them. Not needed either: MinMax calibration keeps
            # only each tensor's ReduceMin / ReduceMax per batch, a few numbers.
        )
        return target.read_bytes()
