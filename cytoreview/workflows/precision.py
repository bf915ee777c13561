"""Which precision a project's segmenter runs in on the CPU: build int8, gate it, remember.

The first time a model runs on the CPU with precision ``auto``, an int8 variant is calibrated
on some of the project's images, and the other images decide (the quality gate of
:mod:`cytoreview.inference.precision_gate`) whether it may replace fp32. The int8 model and the
decision with its numbers are stored beside ``model.onnx`` (``model.int8.onnx``,
``precision.json``), so later runs reuse them without measuring again. They are measured again
only when what they depend on changes: the fp32 export, the ONNX Runtime version, or whether
this CPU needs reduced-range weights.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import numpy as np
import onnxruntime as ort

from cytoreview.choices import PRECISIONS
from cytoreview.errors import ConfigError, ProjectError
from cytoreview.inference import precision_gate
from cytoreview.inference.cpu_support import (
    INT8_DOT_FLAGS,
    bf16_support,
    cpu_flags,
    int8_reduce_range,
)
from cytoreview.inference.predictors import OnnxPredictor
from cytoreview.inference.quantize import (
    Int8Settings,
    calibration_batches,
    prepare_graph,
    quantize_int8,
)
from cytoreview.inference.segment import SegmenterSpec
from cytoreview.storage.catalog import utc_now
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project

__all__ = [
    "RECORD_FORMAT",
    "cpu_onnx_model",
    "cpu_onnx_predictor",
    "int8_settings",
    "measure_int8",
]

log = logging.getLogger(__name__)

RECORD_FORMAT = "cytoreview-precision/1"
#: Images for calibration and, separately, for the gate. 16 + 16 keep the first CPU run of a
#: model to a few seconds; MinMax ranges from more images changed the masks no further.
CALIBRATION_IMAGES = 16
GATE_IMAGES = 16
#: Model inputs (crops or tiles) for calibration at most: a few large fields give many tiles.
MAX_CALIBRATION_INPUTS = 64


def int8_settings() -> Int8Settings:
    """The int8 settings for this machine (7-bit weights on x86 without VNNI)."""
    return Int8Settings(reduce_range=int8_reduce_range())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sample(project: Project) -> tuple[list[tuple[str, np.ndarray]], list[tuple[str, np.ndarray]]]:
    """Calibration images and other (held-out) images for the gate, both from the project.

    Images are taken in the order of their content hashes: a fixed, class-blind shuffle, so the
    same project always gives the same sample. Alternate images go to each side; with a single
    image both sides get it (nothing is held out then, as the record says).
    """
    records = sorted(project.images(), key=lambda r: r.sha256)
    loaded: list[tuple[str, np.ndarray]] = []
    for record in records:
        if len(loaded) >= CALIBRATION_IMAGES + GATE_IMAGES:
            break
        try:
            loaded.append((record.name, project.load_image(record).rgb))
        except (ProjectError, OSError):  # a damaged image is skipped here, reported by segment
            continue
    if len(loaded) < 2:
        return loaded, loaded
    return loaded[0::2], loaded[1::2]


def measure_int8(
    project: Project, fp32: bytes, spec: SegmenterSpec, settings: Int8Settings
) -> tuple[bytes, dict[str, Any]]:
    """Build the int8 variant on the project's images and gate it against fp32.

    Returns
    -------
    tuple
        The int8 model's bytes and the precision record (decision and measurements).

    Raises
    ------
    ConfigError
        If the project has no readable image to calibrate on.
    """
    start = time.perf_counter()
    calibration, held_out = _sample(project)
    if not calibration:
        raise ConfigError(f"{project.root}: no readable image to calibrate an int8 model on")
    batches = calibration_batches(
        [rgb for _, rgb in calibration], spec, limit=MAX_CALIBRATION_INPUTS
    )
    prepared, rewrites = fp32, ()
    if settings.graph_rewrites:
        prepared, rewrites = prepare_graph(fp32, batches[0][:2])
    int8 = quantize_int8(prepared, batches, settings)
    built = time.perf_counter() - start
    result = precision_gate.gate(
        [rgb for _, rgb in held_out],
        OnnxPredictor(fp32, device="cpu"),
        OnnxPredictor(int8, device="cpu", precision="int8"),
        spec,
    )
    gate = result.to_dict()
    losses = ", ".join(f"{k} {v:.4f}" for k, v in gate["dice_loss"].items())
    verdict = "within" if result.passed else "above"
    reason = (
        f"int8 masks lose Dice {losses} against fp32 on {result.n_images} held-out image(s), "
        f"{verdict} the {result.max_dice_loss} limit"
    )
    record = {
        "format": RECORD_FORMAT,
        "decision": "int8" if result.passed else "fp32",
        "reason": reason,
        "fp32_sha256": _sha256(fp32),
        "int8_sha256": _sha256(int8),
        "onnxruntime": ort.__version__,
        "settings": settings.to_dict(),
        "graph_rewrites": list(rewrites),
        "cpu_int8_flags": sorted(f for f in INT8_DOT_FLAGS if f in cpu_flags()),
        "calibration": {
            "images": [name for name, _ in calibration],
            "inputs": int(sum(len(b) for b in batches)),
            "seconds": round(built, 2),
        },
        "gate": {
            **gate,
            "images": [name for name, _ in held_out],
            "held_out": {n for n, _ in calibration}.isdisjoint(n for n, _ in held_out),
        },
        "bf16": bf16_support().to_dict(),
        "created_at": utc_now(),
    }
    log.info("model precision: %s (%s)", record["decision"], reason)
    return int8, record


def _usable(record: dict[str, Any] | None, fp32: bytes, settings: Int8Settings) -> bool:
    """Whether a stored record still describes this fp32 model, runtime and CPU."""
    return (
        record is not None
        and record.get("format") == RECORD_FORMAT
        and record.get("onnxruntime") == ort.__version__
        and record.get("settings") == settings.to_dict()
        and record.get("fp32_sha256") == _sha256(fp32)
    )


def _stored_int8(store: ModelStore, model_id: str, record: dict[str, Any]) -> bytes | None:
    """The stored int8 model if it is the one the record measured."""
    data = store.load_int8_onnx(model_id)
    if data is None or _sha256(data) != record.get("int8_sha256"):
        return None
    return data


def cpu_onnx_predictor(
    project: Project,
    store: ModelStore,
    model_id: str,
    fp32: bytes,
    spec: SegmenterSpec,
    precision: str = "auto",
    *,
    threads: int | None = None,
) -> OnnxPredictor:
    """The ONNX Runtime CPU predictor of a project's segmenter, in the chosen precision.

    Parameters
    ----------
    project, store, model_id, fp32, spec, precision
        As for :func:`cpu_onnx_model`.
    threads
        Intra-op threads (default: the usable cores).

    Returns
    -------
    OnnxPredictor
        Its ``device`` says which precision runs, e.g. ``"CPU (onnxruntime int8, 2 threads)"``.
    """
    data, chosen = cpu_onnx_model(project, store, model_id, fp32, spec, precision)
    return OnnxPredictor(data, device="cpu", threads=threads, precision=chosen)


def cpu_onnx_model(
    project: Project,
    store: ModelStore,
    model_id: str,
    fp32: bytes,
    spec: SegmenterSpec,
    precision: str = "auto",
) -> tuple[bytes, str]:
    """The ONNX model a project's segmenter runs on the CPU, and its precision.

    The decision is made here, in the process that owns the project; batch workers get the
    chosen bytes (see :mod:`cytoreview.workflows.segment_worker`).

    Parameters
    ----------
    project, store, model_id
        Where the model lives; the int8 variant and the decision are stored beside it.
    fp32
        The fp32 ONNX export.
    spec
        The model's input geometry (calibration prepares images as inference does).
    precision
        ``"auto"`` (int8 when its gate passed, measured once per model), ``"fp32"`` (nothing
        is built or measured) or ``"int8"`` (the int8 variant even if its gate failed).

    Returns
    -------
    tuple
        The model's bytes and ``"fp32"`` or ``"int8"``.

    Raises
    ------
    ConfigError
        For an unknown precision, or ``"int8"`` in a project without readable images.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if precision == "fp32":
        return fp32, "fp32"
    settings = int8_settings()
    record = store.load_precision(model_id)
    usable = _usable(record, fp32, settings)
    int8 = None
    if usable and (precision == "int8" or record["decision"] == "int8"):
        int8 = _stored_int8(store, model_id, record)
        usable = int8 is not None  # missing or replaced: build it again
    if not usable:
        try:
            int8, record = measure_int8(project, fp32, spec, settings)
        except Exception as exc:
            if precision == "int8":
                raise
            # auto must always segment: fall back to fp32 and say why in the log. Nothing is
            # stored, so the next run tries again (e.g. once the project has images).
            log.warning("int8 model not built (%s); running fp32", exc)
            return fp32, "fp32"
        store.save_int8_onnx(model_id, int8)
        store.save_precision(model_id, record)
    assert record is not None
    if precision == "int8" or record["decision"] == "int8":
        assert int8 is not None
        return int8, "int8"
    return fp32, "fp32"
