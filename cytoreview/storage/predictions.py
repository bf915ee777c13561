"""Classifier outputs of a project: predictions, heatmaps, review calls and trainee answers.

Predictions are appended (the newest per image and task is current, older ones stay as history).
Heatmaps are derived data: regenerating one replaces its file and row. The expert's own class
calls go to ``reviews`` beside the model's predictions, so disagreements can be listed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from cytoreview.errors import ProjectError, UnsafePathError
from cytoreview.storage.atomic import atomic_write_bytes
from cytoreview.storage.catalog import Catalog, utc_now
from cytoreview.storage.names import name_component, path_inside
from cytoreview.storage.png_chunks import pixel_chunks_only
from cytoreview.storage.project import Project

#: Heatmaps are stored as 8-bit PNGs: 1/255 of relevance is finer than any colormap shows.
HEATMAP_LEVELS = 255


@dataclass(frozen=True)
class PredictionRecord:
    """One stored prediction of one image."""

    id: int
    image_id: int
    model_id: str
    task: str
    pred_class: str
    probabilities: dict[str, float]
    uncertainty: float | None
    mask_version_id: int | None
    created_at: str


@dataclass(frozen=True)
class PredictionInput:
    """What a classification run hands to :meth:`PredictionStore.save_predictions`."""

    image_id: int
    pred_class: str
    probabilities: dict[str, float]
    uncertainty: float | None = None
    mask_version_id: int | None = None


@dataclass(frozen=True)
class HeatmapRecord:
    """One stored heatmap and its quality figures."""

    id: int
    image_id: int
    model_id: str
    method: str
    target_class: str
    path: str
    quality: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class ReviewRecord:
    """A person's decision on an image: class call and/or mask decision."""

    id: int
    image_id: int
    reviewer: str
    class_call: str | None
    mask_version_id: int | None
    decision: str | None
    comment: str | None
    created_at: str


@dataclass(frozen=True)
class TraineeAnswer:
    """One answer of a trainee in teaching mode."""

    id: int
    trainee: str
    image_id: int
    answer: str
    truth: str
    model_pred: str | None
    seconds: float | None
    created_at: str

    @property
    def correct(self) -> bool:
        """True when the trainee's call equals the expert label."""
        return self.answer == self.truth


def _prediction(row: Any) -> PredictionRecord:
    data = dict(row)
    data["probabilities"] = json.loads(data["probabilities"])
    return PredictionRecord(**data)


def _heatmap(row: Any) -> HeatmapRecord:
    data = dict(row)
    data["quality"] = json.loads(data["quality"])
    return HeatmapRecord(**data)


class PredictionStore:
    """Predictions, heatmaps, reviews and trainee answers of one open project."""

    def __init__(self, project: Project) -> None:
        self.project = project

    # -- predictions -----------------------------------------------------------------------------
    def save_predictions(
        self, model_id: str, task: str, items: Sequence[PredictionInput], *, actor: str
    ) -> int:
        """Append one prediction per item in a single transaction; return how many."""
        now = utc_now()
        rows = [
            (
                it.image_id,
                model_id,
                task,
                it.pred_class,
                json.dumps({k: float(v) for k, v in it.probabilities.items()}),
                None if it.uncertainty is None else float(it.uncertainty),
                it.mask_version_id,
                now,
            )
            for it in items
        ]
        with self.project.catalog.write() as conn:
            conn.executemany(
                "INSERT INTO predictions (image_id, model_id, task, pred_class, probabilities, "
                "uncertainty, mask_version_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            Catalog.audit(
                conn, actor, "classify", "model", None, model_id=model_id, task=task, n=len(rows)
            )
        return len(rows)

    def latest_predictions(
        self, task: str, model_id: str | None = None
    ) -> dict[int, PredictionRecord]:
        """The newest prediction of each image for ``task`` (of ``model_id`` if given)."""
        sql = "SELECT id, image_id, model_id, task, pred_class, probabilities, uncertainty, "
        sql += "mask_version_id, created_at FROM predictions WHERE task = ?"
        args: list[Any] = [task]
        if model_id is not None:
            sql += " AND model_id = ?"
            args.append(model_id)
        out: dict[int, PredictionRecord] = {}
        for row in self.project.catalog.query(sql + " ORDER BY id", tuple(args)):
            out[int(row["image_id"])] = _prediction(row)  # later rows replace earlier ones
        return out

    def prediction_history(self, image_id: int) -> list[PredictionRecord]:
        """Every prediction ever made for an image, oldest first."""
        rows = self.project.catalog.query(
            "SELECT id, image_id, model_id, task, pred_class, probabilities, uncertainty, "
            "mask_version_id, created_at FROM predictions WHERE image_id = ? ORDER BY id",
            (image_id,),
        )
        return [_prediction(r) for r in rows]

    # -- heatmaps --------------------------------------------------------------------------------
    def save_heatmap(
        self,
        image_id: int,
        model_id: str,
        method: str,
        target_class: str,
        heatmap: np.ndarray,
        quality: dict[str, Any],
    ) -> HeatmapRecord:
        """Store a heatmap in [0, 1] with the image's own shape, replacing an older one."""
        record = self.project.image(image_id)
        if heatmap.shape != (record.height, record.width):
            raise ProjectError(
                f"{record.name}: heatmap {heatmap.shape} does not match the image "
                f"({record.height}, {record.width})"
            )
        values = np.nan_to_num(heatmap.astype(np.float32), nan=0.0)
        quantised = np.round(np.clip(values, 0, 1) * HEATMAP_LEVELS).astype(np.uint8)
        ok, encoded = cv2.imencode(".png", quantised)
        if not ok:
            raise ProjectError(f"{record.name}: could not encode the heatmap")
        safe_method = name_component(method.replace("+", "pp"), "method")
        rel = f"heatmaps/{name_component(model_id, 'model id')}/{safe_method}/"
        rel += f"{name_component(record.name)}.png"
        atomic_write_bytes(path_inside(self.project.root, rel), encoded.tobytes())
        with self.project.catalog.write() as conn:
            conn.execute(
                "INSERT INTO heatmaps (image_id, model_id, method, target_class, path, quality, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (image_id, model_id, method)"
                " DO UPDATE SET target_class = excluded.target_class, path = excluded.path, "
                "quality = excluded.quality, created_at = excluded.created_at",
                (
                    image_id,
                    model_id,
                    method,
                    target_class,
                    rel,
                    json.dumps(quality, default=float),
                    utc_now(),
                ),
            )
        found = self.heatmap_record(image_id, model_id=model_id, method=method)
        assert found is not None  # just written inside the same process
        return found

    def heatmap_record(
        self, image_id: int, *, model_id: str | None = None, method: str | None = None
    ) -> HeatmapRecord | None:
        """The newest heatmap row of an image (of a model / method if given)."""
        sql = "SELECT * FROM heatmaps WHERE image_id = ?"
        args: list[Any] = [image_id]
        if model_id is not None:
            sql += " AND model_id = ?"
            args.append(model_id)
        if method is not None:
            sql += " AND method = ?"
            args.append(method)
        rows = self.project.catalog.query(sql + " ORDER BY created_at DESC, id DESC", tuple(args))
        return _heatmap(rows[0]) if rows else None

    def heatmap_records(self, model_id: str | None = None) -> dict[int, HeatmapRecord]:
        """The newest heatmap row per image."""
        sql, args = "SELECT * FROM heatmaps", ()
        if model_id is not None:
            sql, args = sql + " WHERE model_id = ?", (model_id,)
        out: dict[int, HeatmapRecord] = {}
        for row in self.project.catalog.query(sql + " ORDER BY created_at, id", args):
            out[int(row["image_id"])] = _heatmap(row)
        return out

    def load_heatmap(self, record: HeatmapRecord) -> np.ndarray | None:
        """The heatmap as float32 in [0, 1], or None when its file is missing or unreadable."""
        try:
            path = path_inside(self.project.root, record.path)
        except UnsafePathError:
            return None  # a damaged catalog row: treated like a missing file
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        # Checked first: libpng would print a damaged file's defect to stderr by itself.
        png, _ = pixel_chunks_only(raw)
        data = (
            None
            if png is None
            else cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        )
        if data is None or data.ndim != 2:
            return None
        return data.astype(np.float32) / HEATMAP_LEVELS

    # -- reviews (the expert's own calls) --------------------------------------------------------
    def add_review(
        self,
        image_id: int,
        *,
        reviewer: str,
        class_call: str | None = None,
        mask_version_id: int | None = None,
        decision: str | None = None,
        comment: str | None = None,
    ) -> int:
        """Record a review decision; a class call is resolved against the project's scheme."""
        call = self.project.scheme.resolve(class_call) if class_call else None
        with self.project.catalog.write() as conn:
            cursor = conn.execute(
                "INSERT INTO reviews (image_id, reviewer, class_call, mask_version_id, decision, "
                "comment, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (image_id, reviewer, call, mask_version_id, decision, comment, utc_now()),
            )
            review_id = int(cursor.lastrowid or 0)
            Catalog.audit(
                conn, reviewer, "review", "image", image_id, class_call=call, decision=decision
            )
        return review_id

    def latest_reviews(self) -> dict[int, ReviewRecord]:
        """The newest review with a class call per image."""
        out: dict[int, ReviewRecord] = {}
        rows = self.project.catalog.query(
            "SELECT * FROM reviews WHERE class_call IS NOT NULL ORDER BY id"
        )
        for row in rows:
            out[int(row["image_id"])] = ReviewRecord(**dict(row))
        return out

    # -- teaching --------------------------------------------------------------------------------
    def add_trainee_answer(
        self,
        trainee: str,
        image_id: int,
        answer: str,
        truth: str,
        *,
        model_pred: str | None = None,
        seconds: float | None = None,
    ) -> TraineeAnswer:
        """Store one answer of a trainee (both class names resolved against the scheme)."""
        scheme = self.project.scheme
        row = (trainee, image_id, scheme.resolve(answer), scheme.resolve(truth), model_pred)
        with self.project.catalog.write() as conn:
            cursor = conn.execute(
                "INSERT INTO trainee_answers (trainee, image_id, answer, truth, model_pred, "
                "seconds, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (*row, seconds, utc_now()),
            )
            answer_id = int(cursor.lastrowid or 0)
            Catalog.audit(conn, trainee, "teach_answer", "image", image_id, answer=row[2])
        found = self.trainee_answers(trainee, answer_id=answer_id)
        return found[0]

    def trainee_answers(self, trainee: str, *, answer_id: int | None = None) -> list[TraineeAnswer]:
        """A trainee's answers, oldest first."""
        sql, args = "SELECT * FROM trainee_answers WHERE trainee = ?", [trainee]
        if answer_id is not None:
            sql += " AND id = ?"
            args.append(answer_id)
        rows = self.project.catalog.query(sql + " ORDER BY id", tuple(args))
        return [TraineeAnswer(**dict(r)) for r in rows]

    def trainees(self) -> list[str]:
        """Names of everyone who has answered in teaching mode."""
        rows = self.project.catalog.query("SELECT DISTINCT trainee FROM trainee_answers")
        return sorted(r[0] for r in rows)
