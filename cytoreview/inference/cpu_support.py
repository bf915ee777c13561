"""What this CPU offers for reduced-precision inference: int8 dot products and bfloat16.

Two questions decide how the segmenter may run on the CPU:

* **int8**: ONNX Runtime's QDQ kernels multiply unsigned 8-bit activations by signed 8-bit
  weights. Without a VNNI dot-product instruction (AVX2 only) the 16-bit intermediate sums can
  saturate, so ONNX Runtime advises quantising the weights to 7 bits (``reduce_range``) there.
* **bf16**: the CPU may have bfloat16 instructions (AVX512-BF16, AMX-BF16), but that helps only
  if ONNX Runtime's CPU provider has bfloat16 kernels for the network's operators. It is asked
  with a one-node probe, so the answer is measured on this machine and build, not assumed.

The flags are read from ``/proc/cpuinfo`` (Linux); elsewhere the set is empty, which means
"assume nothing": weights are then quantised with the safe reduced range.
"""

from __future__ import annotations

import functools
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

__all__ = [
    "BF16_FLAGS",
    "INT8_DOT_FLAGS",
    "Bf16Support",
    "bf16_support",
    "cpu_flags",
    "int8_reduce_range",
    "parse_cpu_flags",
]

CPUINFO = Path("/proc/cpuinfo")
#: Instructions that accumulate 8-bit products without 16-bit saturation.
INT8_DOT_FLAGS: tuple[str, ...] = ("avx512_vnni", "avx_vnni", "amx_int8")
#: bfloat16 arithmetic (dot products or AMX tiles).
BF16_FLAGS: tuple[str, ...] = ("avx512_bf16", "amx_bf16")
_X86 = ("x86_64", "amd64", "i386", "i686")
_ORT_FATAL_ONLY = 4


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags of the first processor listed in ``/proc/cpuinfo`` text.

    Parameters
    ----------
    cpuinfo
        The file's text (x86 lists ``flags``, ARM ``Features``).

    Returns
    -------
    frozenset of str
        Lower-case flag names; empty when no flags line is found.
    """
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.lower().split())
    return frozenset()


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (cached); empty where ``/proc/cpuinfo`` is missing."""
    try:
        return parse_cpu_flags(CPUINFO.read_text(encoding="ascii", errors="replace"))
    except OSError:
        return frozenset()


def int8_reduce_range(flags: frozenset[str] | None = None, machine: str | None = None) -> bool:
    """Whether int8 weights should use 7 bits here (ONNX Runtime's advice for x86 without VNNI).

    Parameters
    ----------
    flags
        CPU flags (default: this machine's).
    machine
        ``platform.machine()`` (default: this machine's). Non-x86 CPUs (ARM) accumulate in 32
        bits and need no reduced range.

    Returns
    -------
    bool
        True on x86 without any of :data:`INT8_DOT_FLAGS`, or when the flags are unknown.
    """
    flags = cpu_flags() if flags is None else flags
    machine = (machine or platform.machine()).lower()
    if machine not in _X86:
        return False
    return not any(f in flags for f in INT8_DOT_FLAGS)


@dataclass(frozen=True)
class Bf16Support:
    """Whether bfloat16 inference is possible here, and why it is not used if it is not.

    Attributes
    ----------
    cpu_flags
        The :data:`BF16_FLAGS` this CPU has (empty: no bfloat16 instructions).
    onnxruntime_cpu
        Whether ONNX Runtime's CPU provider opened a session on a bfloat16 ``Conv``.
    reason
        One sentence on why the segmenter does not run in bfloat16 (always set: CytoReview has
        no bfloat16 CPU path; see the module docstring).
    """

    cpu_flags: tuple[str, ...]
    onnxruntime_cpu: bool
    reason: str

    @property
    def cpu(self) -> bool:
        """Whether the CPU has bfloat16 instructions."""
        return bool(self.cpu_flags)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for the precision record."""
        return {**asdict(self), "cpu": self.cpu, "cpu_flags": list(self.cpu_flags)}


def _bf16_conv_model() -> bytes:
    """One 3x3 ``Conv`` in bfloat16 (opset 22, the first that allows bfloat16 for Conv)."""
    shape = [1, 4, 8, 8]
    x = helper.make_tensor_value_info("x", TensorProto.BFLOAT16, shape)
    y = helper.make_tensor_value_info("y", TensorProto.BFLOAT16, shape)
    w = helper.make_tensor("w", TensorProto.BFLOAT16, [4, 4, 3, 3], [0] * 144)
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "bf16_probe", [x], [y], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)], ir_version=10)
    return model.SerializeToString()


def _ort_bf16_conv_error() -> str | None:
    """None if ONNX Runtime's CPU provider runs a bfloat16 Conv, else its one-line error."""
    options = ort.SessionOptions()
    options.log_severity_level = _ORT_FATAL_ONLY
    try:
        session = ort.InferenceSession(
            _bf16_conv_model(), options, providers=["CPUExecutionProvider"]
        )
        # bfloat16 has no numpy dtype: feed its bit pattern, which ORT takes as uint16.
        session.run(None, {"x": np.zeros((1, 4, 8, 8), np.uint16)})
    except Exception as exc:  # noqa: BLE001 - any failure means "no bf16 Conv on this provider"
        return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return None


@functools.cache
def bf16_support() -> Bf16Support:
    """Measure whether bfloat16 could speed up the segmenter on this CPU (cached).

    Returns
    -------
    Bf16Support
        The CPU's bfloat16 flags, the ONNX Runtime probe's answer and the reason bfloat16 is
        not used. On ONNX Runtime 1.31 the probe fails with ``NOT_IMPLEMENTED: Could not find
        an implementation for Conv(22)``: the CPU provider has no bfloat16 convolution, so a
        bfloat16 graph would run nothing faster whatever the CPU offers.
    """
    flags = tuple(f for f in BF16_FLAGS if f in cpu_flags())
    error = _ort_bf16_conv_error()
    version = f"ONNX Runtime {ort.__version__}"
    if error is not None:
        reason = f"{version}'s CPU provider cannot run a bfloat16 Conv ({error})"
    elif not flags:
        reason = "this CPU has no bfloat16 instructions"
    else:
        reason = f"{version} runs a bfloat16 Conv here, but CytoReview has no bfloat16 path yet"
    reason = f"{reason}; CPU bfloat16 flags: {', '.join(flags) or 'none'}"
    return Bf16Support(cpu_flags=flags, onnxruntime_cpu=error is None, reason=reason)
