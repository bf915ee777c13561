"""Comparing U-Net encoders with one recipe on one split (Wubineh et al.'s backbone table).

Each encoder is trained as an ordinary segmentation run (:func:`train_segmentation`: same
masks, same seed, hence the same stratified validation split, same recipe; only the
``encoder`` setting differs), then its best weights are scored on that split's validation
images at their native resolution through the predictor every auto-mask goes through (torch,
one view: the network itself, as the paper scores it). The table (pixel accuracy; Dice, IoU,
precision and sensitivity of cytoplasm and nucleus; training time) is written as CSV and JSON
under the project's ``exports/`` folder.

Rules:

- The split is the same for every encoder; the stored configs prove it (``data.val``), and a
  run whose split differs (masks changed meanwhile) stops the comparison with an error.
- Cancel stops the encoder being trained; the rows done so far are kept, that encoder's row is
  marked ``cancelled`` (its partial model is not scored: it is not comparable), the encoders
  not started get no row, and the table is written.
- An encoder whose training fails at run time (e.g. out of memory) gets a ``failed`` row and
  the next one runs.
- Comparing does not change which segmenter the project uses: when one was in use before, it
  is in use again afterwards (audited); the compared models stay in ``models/`` and can be
  chosen with ``segment --model ID``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from cytoreview.errors import ConfigError, NotEnoughDataError, ProjectError
from cytoreview.inference.segment import segment_images
from cytoreview.metrics.segmentation import OVERALL, evaluate_masks
from cytoreview.plugin_api import describe_settings, find
from cytoreview.storage.files import write_files
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows.export import csv_cell
from cytoreview.workflows.segmentation import (
    KIND,
    SegTrainReport,
    SegTrainRequest,
    human_masked,
    load_predictor,
    train_segmentation,
)

__all__ = [
    "PAPER_ENCODERS",
    "SCORE_KEYS",
    "EncoderComparison",
    "EncoderResult",
    "compare_encoders",
]

#: Wubineh et al.'s five backbones, by their segmentation-models-pytorch names (VGG19 with
#: batch norm, as smp offers it; MobileNet as MobileNetV2).
PAPER_ENCODERS: tuple[str, ...] = (
    "vgg19_bn",
    "resnet50",
    "mobilenet_v2",
    "efficientnet-b2",
    "densenet121",
)
#: The scores of a row, in table order: pixel accuracy, then per class (cytoplasm, nucleus).
SCORE_KEYS: tuple[str, ...] = (
    "accuracy",
    *(
        f"{metric}_{cls}"
        for cls in ("cytoplasm", "nucleus")
        for metric in ("dice", "iou", "precision", "sensitivity")
    ),
)
_TABLE_COLUMNS = ("encoder", "status", "train_seconds", *SCORE_KEYS, "model_id")
#: Validation images segmented per model call batch.
_SCORE_BATCH = 8


@dataclass
class EncoderResult:
    """One row of the table.

    Attributes
    ----------
    status
        ``finished`` (scored), ``cancelled``, ``failed`` or ``no model`` (no epoch finished).
    seconds
        Training time (the training loop, as the run reports it).
    scores
        :data:`SCORE_KEYS` (mean over the validation images); empty when not scored.
    """

    encoder: str
    model_id: str | None
    status: str
    seconds: float
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class EncoderComparison:
    """The table, the split it was measured on and where it was written."""

    rows: list[EncoderResult]
    n_train: int
    n_val: int
    recipe: dict
    table_csv: Path | None
    table_json: Path | None
    cancelled: bool


def _recipe(base: SegTrainRequest) -> dict[str, Any]:
    """The shared recipe as plain values (the encoder left out: it is what varies)."""
    out: dict[str, Any] = {}
    for f in fields(base):
        value = getattr(base, f.name)
        out[f.name] = dict(value) if isinstance(value, Mapping) else value
    out["settings"] = {k: v for k, v in out["settings"].items() if k != "encoder"}
    return out


def _checked(base: SegTrainRequest, encoders: Sequence[str]) -> list[str]:
    """The encoders, checked against the method's settings before anything is trained."""
    wanted = list(encoders)
    if not wanted:
        raise ConfigError("no encoder to compare")
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"an encoder is named twice: {', '.join(wanted)}")
    if base.init is not None:
        raise ConfigError(
            "encoders are compared from scratch; fine-tuning (init) keeps the parent's encoder"
        )
    method = find("segmenter", base.arch)
    if "encoder" not in {s.name for s in describe_settings(method.settings)}:
        raise ConfigError(f"segmenter {base.arch!r} has no encoder setting to compare")
    for encoder in wanted:
        method.make_settings({**dict(base.settings), "encoder": encoder})  # names the valid ones
    return wanted


def _tagged(
    job: Generator[Progress, None, SegTrainReport], tag: str
) -> Generator[Progress, None, SegTrainReport]:
    """The training's events with ``tag`` (encoder, k/n) in front of each message."""
    try:
        while True:
            event = next(job)
            yield replace(event, message=f"{tag}: {event.message}" if event.message else tag)
    except StopIteration as stop:
        return stop.value


def _validation_data(
    project: Project, names: Sequence[str], include_generated: bool
) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """The validation images and the masks they were trained against, by name."""
    records = {image.name: image for image, _ in human_masked(project, include_generated)}
    kept, images, masks = [], [], []
    for name in names:
        record = records.get(name)
        found = project.current_mask(record.id) if record is not None else None
        if found is None:
            raise ProjectError(f"{name}: its training mask is gone; run the comparison again")
        kept.append(name)
        images.append(project.load_image(record).rgb)
        masks.append(found[1])
    return kept, images, masks


def _score(
    project: Project,
    model_id: str,
    val: tuple[list[str], list[np.ndarray], list[np.ndarray]],
    device: str,
    cancel: CancelToken | None,
) -> dict[str, float] | None:
    """Mean scores of ``model_id`` on the validation images (None when cancelled meanwhile)."""
    _, predictor, spec = load_predictor(project, model_id, engine="torch", device=device)
    names, images, truths = val
    predicted: list[np.ndarray] = []
    for first in range(0, len(images), _SCORE_BATCH):
        if cancel is not None and cancel.cancelled:
            return None
        batch = images[first : first + _SCORE_BATCH]
        predicted += [r.mask for r in segment_images(batch, predictor, spec)]
    report = evaluate_masks(
        (n, p, t, None) for n, p, t in zip(names, predicted, truths, strict=True)
    )
    mean = report.mean
    scores = {"accuracy": mean[OVERALL].accuracy}
    for cls in ("cytoplasm", "nucleus"):
        s = mean[cls]
        scores |= {f"dice_{cls}": s.dice, f"iou_{cls}": s.iou}
        scores |= {f"precision_{cls}": s.precision, f"sensitivity_{cls}": s.recall}
    return {k: float(v) for k, v in scores.items()}


def _table_files(comparison: EncoderComparison, val_names: list[str]) -> dict[str, bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_TABLE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in comparison.rows:
        cells = {
            "encoder": row.encoder,
            "status": row.status,
            "model_id": row.model_id or "",
            "train_seconds": round(row.seconds, 1),
            **row.scores,
        }
        writer.writerow({k: csv_cell(v) for k, v in cells.items()})
    data = {
        "rows": [asdict(row) for row in comparison.rows],
        "n_train": comparison.n_train,
        "n_val": comparison.n_val,
        "val_images": val_names,
        "recipe": comparison.recipe,
        "cancelled": comparison.cancelled,
    }
    text = json.dumps(data, indent=2, default=str, allow_nan=False)
    return {"encoders.csv": buffer.getvalue().encode(), "encoders.json": text.encode()}


def _json_safe(scores: dict[str, float]) -> dict[str, float]:
    """Scores without NaN (an undefined score, e.g. precision with nothing predicted)."""
    return {k: v for k, v in scores.items() if v == v}


def compare_encoders(
    project: Project,
    encoders: Sequence[str] = PAPER_ENCODERS,
    *,
    base: SegTrainRequest | None = None,
    actor: str,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, EncoderComparison]:
    """Train the U-Net with each encoder on one recipe and split, score each, write the table.

    Parameters
    ----------
    encoders
        Encoder names of the segmenter's ``encoder`` setting (default: the paper's five).
    base
        The recipe shared by every run (default: CytoReview's; e.g.
        ``seg_request("wubineh2024")`` for the paper's). Its ``settings["encoder"]`` is
        replaced per run; ``init`` must be None.
    actor
        Recorded in the audit log.
    cancel
        Stops the current training; see the module docstring for what is kept.

    Yields
    ------
    Progress
        The training events, each message prefixed with ``[k/n encoder]``; a ``compare`` event
        after each encoder with its scores.

    Raises
    ------
    ConfigError
        For an unknown or repeated encoder, or a recipe that cannot compare encoders.
    NotEnoughDataError
        If the project has fewer than 2 masks to train on.
    ProjectError
        If the validation split changed between two encoders.
    """
    base = base or SegTrainRequest()
    wanted = _checked(base, encoders)
    store = ModelStore(project)
    in_use = store.current_model(KIND)
    comparison = EncoderComparison(
        rows=[],
        n_train=0,
        n_val=0,
        recipe=_recipe(base),
        table_csv=None,
        table_json=None,
        cancelled=False,
    )
    val_names: list[str] | None = None
    val_data = None
    total = len(wanted)
    for k, encoder in enumerate(wanted, start=1):
        if cancel is not None and cancel.cancelled:
            comparison.cancelled = True
            break
        tag = f"[{k}/{total} {encoder}]"
        request = replace(base, settings={**dict(base.settings), "encoder": encoder})
        try:
            report = yield from _tagged(
                train_segmentation(project, request, actor=actor, cancel=cancel), tag
            )
        except (NotEnoughDataError, ConfigError):
            raise  # the recipe or the data, not this encoder: no other encoder would run
        except RuntimeError as exc:  # this encoder only (e.g. out of memory): the next one runs
            comparison.rows.append(EncoderResult(encoder, None, "failed", 0.0))
            yield Progress("compare", k, total, f"{tag}: training failed: {exc}", level="warning")
            continue
        row = EncoderResult(encoder, report.model_id, report.status, report.seconds)
        comparison.rows.append(row)
        if report.status == "cancelled":
            comparison.cancelled = True
            break
        if report.best is None:
            row.status = "no model"
            continue
        config, _ = store.load(report.model_id)
        if val_names is None:
            val_names = list(config["data"]["val"])
            comparison.n_train, comparison.n_val = report.n_train, report.n_val
            val_data = _validation_data(project, val_names, base.include_generated)
        elif list(config["data"]["val"]) != val_names:
            raise ProjectError(
                f"{project.root}: the validation split of {report.model_id} differs from the "
                "first encoder's (masks changed during the comparison); run it again"
            )
        yield Progress("compare", k - 1, total, f"{tag}: scoring {len(val_names)} images")
        scores = _score(project, report.model_id, val_data, base.device, cancel)
        if scores is None:
            row.status = "cancelled"
            comparison.cancelled = True
            break
        row.scores = _json_safe(scores)
        yield Progress(
            "compare",
            k,
            total,
            f"{tag}: Dice cytoplasm {scores['dice_cytoplasm']:.3f}, nucleus "
            f"{scores['dice_nucleus']:.3f}; {row.seconds:.0f} s training",
            metrics=row.scores,
        )
    if in_use is not None and store.current_model(KIND) != in_use and store.has_checkpoint(in_use):
        store.set_current_model(KIND, in_use, actor=actor, reason="compare-encoders finished")
    if comparison.rows:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")
        folder = project.root / "exports" / f"compare-encoders-{stamp}"
        written = write_files(folder, _table_files(comparison, val_names or []))
        comparison.table_csv = next(p for p in written if p.suffix == ".csv")
        comparison.table_json = next(p for p in written if p.suffix == ".json")
    return comparison
