"""Self-describing model checkpoints: weights plus a JSON config, written atomically.

A checkpoint file holds ``{"format", "config" (JSON text), "state_dict"}``. It is read with
``torch.load(weights_only=True)``, so a checkpoint from elsewhere can carry tensors and plain
data only, never code. ``config.json`` beside it repeats the config for people and tools.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from cytoreview.errors import CheckpointError
from cytoreview.storage.atomic import atomic_write_bytes

CHECKPOINT_FORMAT = "cytoreview-checkpoint/1"


def save_checkpoint(
    path: str | Path, state_dict: dict[str, torch.Tensor], config: dict[str, Any]
) -> Path:
    """Write weights and config atomically to ``path`` (and ``config.json`` beside it)."""
    path = Path(path)
    text = json.dumps(config, indent=2, sort_keys=True, default=str)
    buffer = io.BytesIO()
    cpu_state = {k: v.detach().to("cpu") for k, v in state_dict.items()}
    torch.save({"format": CHECKPOINT_FORMAT, "config": text, "state_dict": cpu_state}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_bytes(path.with_name("config.json"), text.encode())
    return path


def _safe_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True``: tensors and plain data, never code."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(path, f"cannot read the checkpoint ({exc.strerror or exc})") from exc
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(path, f"not a loadable checkpoint ({first[:200]})") from exc


def _unpack(path: Path, payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    try:
        config = json.loads(payload["config"])
        state = payload["state_dict"]
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise CheckpointError(path, f"checkpoint is incomplete ({exc})") from exc
    return config, state


def _is_tagged(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT


def load_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read a checkpoint safely; return ``(config, state_dict)``.

    Raises
    ------
    CheckpointError
        If the file is missing, damaged, not a CytoReview checkpoint, or would need code to load.
    """
    path = Path(path)
    payload = _safe_load(path)
    if not _is_tagged(payload):
        raise CheckpointError(path, "not a CytoReview checkpoint (no cytoreview format tag)")
    return _unpack(path, payload)


def load_weights(path: str | Path) -> tuple[dict[str, Any] | None, dict[str, torch.Tensor]]:
    """Read a CytoReview checkpoint or a plain ``state_dict`` file (e.g. ImageNet weights).

    Returns
    -------
    tuple
        The config (None for a plain weights file) and the tensors; the file is read once.
    """
    path = Path(path)
    payload = _safe_load(path)
    if _is_tagged(payload):
        return _unpack(path, payload)
    if isinstance(payload, dict) and "state_dict" in payload:
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(
        isinstance(v, torch.Tensor) for v in payload.values()
    ):
        raise CheckpointError(path, "not a weights file (expected a dict of tensors)")
    return None, payload


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from a CytoReview checkpoint or a plain ``state_dict`` file (e.g. ImageNet)."""
    return load_weights(path)[1]


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a model artefact (e.g. an ONNX export) atomically."""
    path = Path(path)
    atomic_write_bytes(path, data)
    return path
