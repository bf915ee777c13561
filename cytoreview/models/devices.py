"""Choosing the torch device: CUDA when a GPU is really there, else all CPU cores."""

from __future__ import annotations

import os

import torch

# DEVICES lives in the torch-free choices module (the CLI parser lists it without torch).
from cytoreview.choices import DEVICES
from cytoreview.errors import ConfigError


def pick_torch_device(device: str = "auto") -> torch.device:
    """The torch device for ``auto`` (CUDA if available), ``cpu`` or ``cuda``.

    Raises
    ------
    ConfigError
        For an unknown name, or ``cuda`` on a machine without a working GPU.
    """
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for, but no CUDA GPU is available here")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def use_all_cpu_cores() -> int:
    """Let torch use every core this process may run on; return how many."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    return cores


def describe_device(device: torch.device) -> str:
    """A short, human-readable name: the GPU's model, or the CPU and its thread count."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA)"
    return f"CPU ({torch.get_num_threads()} threads)"
