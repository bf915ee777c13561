"""A project's models: ``models/<model id>/`` folders and the ``training_runs`` table.

Each training run gets a new model id and folder, so fine-tuning never overwrites the model it
started from: the old version stays usable and is named in the new one's config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from cytoreview.errors import ProjectError
from cytoreview.storage.catalog import Catalog, utc_now
from cytoreview.storage.checkpoints import load_checkpoint, save_checkpoint, write_bytes
from cytoreview.storage.names import name_component
from cytoreview.storage.project import Project
from cytoreview.storage.run_guard import remove_run_lock, write_run_lock

CHECKPOINT_NAME = "model.pt"
ONNX_NAME = "model.onnx"
#: The int8 (static, QDQ) variant of ``model.onnx`` for ONNX Runtime's CPU provider.
INT8_ONNX_NAME = "model.int8.onnx"
#: Which precision the CPU runs and the measurements behind that choice (the quality gate).
PRECISION_NAME = "precision.json"
#: Runs whose best weights are usable: a cancelled run keeps its last best checkpoint. (An
#: ``interrupted`` run's kept checkpoint can be named with ``--model``; it never becomes current
#: by itself.)
USABLE_STATUSES = ("finished", "cancelled", "stopped")


@dataclass(frozen=True)
class TrainingRun:
    """One row of ``training_runs``."""

    id: int
    kind: str
    model_id: str
    config: dict[str, Any]
    status: str
    started_at: str
    finished_at: str | None
    metrics: dict[str, Any]
    checkpoint: str | None
    author: str


class ModelStore:
    """Model files and training-run records of one open project."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.root = project.root / "models"

    def new_model_id(self, kind: str, tag: str) -> str:
        """A fresh, sortable model id such as ``seg-20261123-120501-resnet18``."""
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        base = f"{kind}-{stamp}-{tag}"
        model_id, n = base, 1
        while (self.root / model_id).exists():
            n += 1
            model_id = f"{base}-{n}"
        (self.root / model_id).mkdir(parents=True)
        return model_id

    def model_dir(self, model_id: str) -> Path:
        """The folder of ``model_id``; an id that would lead outside ``models/`` is refused.

        Raises
        ------
        UnsafePathError
            If the id (from the catalog or a user) is not a plain folder name.
        """
        return self.root / name_component(model_id, "model id")

    def checkpoint_path(self, model_id: str) -> Path:
        """Where the weights of ``model_id`` live."""
        return self.model_dir(model_id) / CHECKPOINT_NAME

    def has_checkpoint(self, model_id: str) -> bool:
        """Whether this project holds the weights of ``model_id`` (so it can be run)."""
        return self.checkpoint_path(model_id).is_file()

    def onnx_path(self, model_id: str) -> Path:
        """Where the ONNX export of ``model_id`` lives."""
        return self.model_dir(model_id) / ONNX_NAME

    def save_weights(
        self, model_id: str, state: dict[str, torch.Tensor], config: dict[str, Any]
    ) -> Path:
        """Write a checkpoint of ``model_id`` atomically (called at every best epoch)."""
        return save_checkpoint(self.checkpoint_path(model_id), state, config)

    def load(self, model_id: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Config and weights of ``model_id``."""
        path = self.checkpoint_path(model_id)
        if not path.is_file():
            raise ProjectError(f"{path}: model {model_id!r} has no checkpoint")
        return load_checkpoint(path)

    def int8_onnx_path(self, model_id: str) -> Path:
        """Where the int8 variant of ``model_id``'s ONNX export lives."""
        return self.model_dir(model_id) / INT8_ONNX_NAME

    def precision_path(self, model_id: str) -> Path:
        """Where the CPU precision decision of ``model_id`` lives (JSON beside the model)."""
        return self.model_dir(model_id) / PRECISION_NAME

    def save_onnx(self, model_id: str, data: bytes) -> Path:
        """Write the ONNX export of ``model_id`` atomically."""
        return write_bytes(self.onnx_path(model_id), data)

    def load_onnx(self, model_id: str) -> bytes | None:
        """The ONNX export's bytes, or None if there is none."""
        path = self.onnx_path(model_id)
        return path.read_bytes() if path.is_file() else None

    def save_int8_onnx(self, model_id: str, data: bytes) -> Path:
        """Write the int8 variant of ``model_id``'s ONNX export atomically."""
        return write_bytes(self.int8_onnx_path(model_id), data)

    def load_int8_onnx(self, model_id: str) -> bytes | None:
        """The int8 variant's bytes, or None if there is none."""
        path = self.int8_onnx_path(model_id)
        return path.read_bytes() if path.is_file() else None

    def save_precision(self, model_id: str, record: dict[str, Any]) -> Path:
        """Write the precision decision of ``model_id`` (JSON) atomically."""
        text = json.dumps(record, indent=2, sort_keys=True, default=str)
        return write_bytes(self.precision_path(model_id), text.encode())

    def load_precision(self, model_id: str) -> dict[str, Any] | None:
        """The stored precision decision, or None if there is none or it cannot be read.

        A damaged or foreign file counts as missing: the decision is then measured again,
        which is always safe.
        """
        path = self.precision_path(model_id)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return record if isinstance(record, dict) else None

    # -- training runs ---------------------------------------------------------------------------
    def start_run(self, kind: str, model_id: str, config: dict[str, Any], *, actor: str) -> int:
        """Record a run as ``running``; return its id.

        The owner record (this process) is written first, so a run whose process is killed is
        recognised as interrupted by whoever opens the project next (see
        :mod:`cytoreview.storage.run_guard`).
        """
        write_run_lock(self.root / model_id)
        with self.project.catalog.write() as conn:
            cursor = conn.execute(
                "INSERT INTO training_runs (kind, model_id, config, status, started_at, author) "
                "VALUES (?, ?, ?, 'running', ?, ?)",
                (kind, model_id, json.dumps(config, sort_keys=True, default=str), utc_now(), actor),
            )
            run_id = int(cursor.lastrowid or 0)
            Catalog.audit(
                conn, actor, "train_start", "training_run", run_id, kind=kind, model_id=model_id
            )
        return run_id

    def finish_run(
        self, run_id: int, status: str, metrics: dict[str, Any], *, actor: str, has_checkpoint: bool
    ) -> None:
        """Close a run with its status and metrics; a usable model becomes the current one."""
        run = self.run(run_id)
        checkpoint = (
            str(self.checkpoint_path(run.model_id).relative_to(self.project.root))
            if has_checkpoint
            else None
        )
        with self.project.catalog.write() as conn:
            conn.execute(
                "UPDATE training_runs SET status = ?, finished_at = ?, metrics = ?, checkpoint = ? "
                "WHERE id = ?",
                (
                    status,
                    utc_now(),
                    json.dumps(metrics, sort_keys=True, default=str),
                    checkpoint,
                    run_id,
                ),
            )
            if checkpoint and status in USABLE_STATUSES:
                Catalog.set_meta(conn, f"current_model_{run.kind}", run.model_id)
            Catalog.audit(
                conn, actor, "train_end", "training_run", run_id, status=status,
                model_id=run.model_id, checkpoint=checkpoint,
            )  # fmt: skip
        remove_run_lock(self.root / run.model_id)

    def run(self, run_id: int) -> TrainingRun:
        """One training run by id."""
        rows = self.project.catalog.query("SELECT * FROM training_runs WHERE id = ?", (run_id,))
        if not rows:
            raise ProjectError(f"no training run {run_id}")
        return _run_from_row(rows[0])

    def runs(self, kind: str | None = None) -> list[TrainingRun]:
        """Training runs, oldest first."""
        if kind is None:
            rows = self.project.catalog.query("SELECT * FROM training_runs ORDER BY id")
        else:
            rows = self.project.catalog.query(
                "SELECT * FROM training_runs WHERE kind = ? ORDER BY id", (kind,)
            )
        return [_run_from_row(r) for r in rows]

    def run_of(self, model_id: str) -> TrainingRun | None:
        """The newest training run that made ``model_id``, or None."""
        rows = self.project.catalog.query(
            "SELECT * FROM training_runs WHERE model_id = ? ORDER BY id DESC LIMIT 1", (model_id,)
        )
        return _run_from_row(rows[0]) if rows else None

    def current_model(self, kind: str) -> str | None:
        """The model id in use for ``kind`` (the latest usable run's), or None."""
        return self.project.catalog.get_meta(f"current_model_{kind}")

    def set_current_model(self, kind: str, model_id: str, *, actor: str, **details: Any) -> None:
        """Make ``model_id`` the one in use for ``kind`` again (audited, with ``details``).

        Raises
        ------
        ProjectError
            If the project holds no weights of ``model_id``.
        """
        if not self.has_checkpoint(model_id):
            raise ProjectError(f"{self.project.root}: no weights of model {model_id!r}")
        with self.project.catalog.write() as conn:
            Catalog.set_meta(conn, f"current_model_{kind}", model_id)
            Catalog.audit(
                conn,
                actor,
                "set_current_model",
                "model",
                None,
                kind=kind,
                model_id=model_id,
                **details,
            )


def _run_from_row(row: Any) -> TrainingRun:
    data = dict(row)
    try:
        data["config"] = json.loads(data["config"])
        data["metrics"] = json.loads(data["metrics"]) if data["metrics"] else {}
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise ProjectError(
            f"training run {data.get('id')} ({data.get('model_id')}) in the catalog is damaged: "
            f"its settings or scores are not JSON ({exc})"
        ) from None
    return TrainingRun(**data)
