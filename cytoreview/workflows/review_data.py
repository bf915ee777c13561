"""Per-image review data: classify every image, explain the calls, measure the cells.

Also everything the review shows of one image (:func:`image_details`).

Each pass is a generator of progress events that can be cancelled between images; what was
finished before a cancel is stored.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

# CAM_METHODS lives in the torch-free choices module (the CLI parser lists it without torch);
# re-exported here, where callers have always found it.
from cytoreview.choices import CAM_METHODS as CAM_METHODS
from cytoreview.defaults import CLS
from cytoreview.errors import CytoReviewError, ImageReadError, UnsafePathError
from cytoreview.inference.classify import ClassifierSpec
from cytoreview.metrics.classification import derive_binary
from cytoreview.models.classifiers import joins_measurements
from cytoreview.morphometry.measure import ImageMeasurements, measure_image
from cytoreview.storage.image_refs import ImageRef
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.predictions import (
    PredictionInput,
    PredictionRecord,
    PredictionStore,
    ReviewRecord,
)
from cytoreview.storage.project import Project
from cytoreview.storage.records import ImageRecord
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows.classification import (
    BINARY_CLASSES,
    NO_ONNX,
    LoadedClassifier,
    current_classifier_id,
    load_classifier,
)
from cytoreview.workflows.classify_worker import (
    ClassifyJob,
    ClassifyModel,
    classify_chunk,
    model_runner,
)
from cytoreview.workflows.cls_runtime import DEFAULT_ENGINE, check_engine
from cytoreview.workflows.executors import Executor, ExecutorSpec, LocalExecutor, using

# Explaining moved to heatmaps (with the rule of which model's map is shown); the names stay
# importable from here, where the CLI, the demo and earlier code find them.
from cytoreview.workflows.heatmaps import ExplainReport as ExplainReport
from cytoreview.workflows.heatmaps import explain_image as explain_image
from cytoreview.workflows.heatmaps import explain_project as explain_project
from cytoreview.workflows.heatmaps import heatmap_model, heatmap_unavailable


def normalised_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy of each row of class probabilities divided by log(K): 0 certain, 1 undecided."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    k = p.shape[1]
    if k < 2:
        return np.zeros(p.shape[0])
    return -(p * np.log(p)).sum(axis=1) / math.log(k)


def _selected(project: Project, image_ids: Sequence[int] | None) -> list[ImageRecord]:
    records = project.images()
    if image_ids is None:
        return records
    wanted = set(image_ids)
    return [r for r in records if r.id in wanted]


# -- classify ------------------------------------------------------------------------------------
@dataclass
class ClassifyReport:
    """What a classification pass did."""

    models: dict[str, str] = field(default_factory=dict)  # task -> model id
    engine: str = DEFAULT_ENGINE
    device: str = ""  # where the main model ran, in words
    classified: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds_per_image: float = 0.0
    cancelled: bool = False
    counts: dict[str, int] = field(default_factory=dict)  # predicted class -> images
    #: Whether the probabilities are the mean of the 8 rotations and mirror images.
    tta: bool = False
    #: Where the batches ran (see :attr:`cytoreview.workflows.executors.Executor.description`).
    driver: str = "this process"
    #: The tasks whose classifier joins a measurement model to its network.
    joined: list[str] = field(default_factory=list)


def classify_project(
    project: Project,
    *,
    actor: str,
    model_id: str | None = None,
    image_ids: Sequence[int] | None = None,
    batch_size: int = 16,
    device: str = "auto",
    engine: str = DEFAULT_ENGINE,
    cancel: CancelToken | None = None,
    compute: ExecutorSpec | Executor | None = None,
    tta: bool = CLS.tta,
) -> Generator[Progress, None, ClassifyReport]:
    """Predict the class (and the binary call) of every image, or of ``image_ids``.

    Uses ``model_id`` or the current Bethesda classifier, plus the current dedicated binary
    classifier when there is one; without a binary model the call is derived from the Bethesda
    probabilities. Images without a mask are skipped by mask-fusion models. ``engine``:
    ``onnx`` (ONNX Runtime, default) or ``torch`` (the reference). ``compute`` says where the
    batches run (see :func:`~cytoreview.workflows.executors.open_executor`); only this process
    writes the predictions. ``tta``: each image's probabilities are the mean over its 8
    rotations and mirror images (8 model calls an image, in one batch).
    """
    check_engine(engine)
    main = load_classifier(project, model_id, engine=engine)
    models = [main]
    binary_id = current_classifier_id(project, "binary")
    if main.task == "bethesda" and binary_id is not None:
        models.append(load_classifier(project, binary_id, task="binary", engine=engine))
    records = _selected(project, image_ids)
    store = PredictionStore(project)
    current = project.current_versions()
    shipped = [_shipped(m, engine) for m in models]
    report = ClassifyReport(
        models={m.task: m.model_id for m in models}, engine=shipped[0][1].engine, tta=tta,
        joined=[m.task for m in models if m.measurements is not None],
    )  # fmt: skip
    chunks: dict[int, tuple[list[ImageRecord], list[int | None]]] = {}

    def items() -> Iterator[list[tuple[ImageRef, np.ndarray | None]]]:
        # Masks are read (the catalog's rule of which is current) as each batch is started.
        for index, start in enumerate(range(0, len(records), batch_size)):
            kept, versions, chunk = [], [], []
            for record in records[start : start + batch_size]:
                found = project.current_mask(record.id) if record.id in current else None
                if found is None and main.uses_mask:
                    report.skipped.append(f"{record.name}: no mask yet (run `cytoreview segment`)")
                    continue
                try:
                    ref = project.image_ref(record)
                except UnsafePathError as exc:
                    where = record.stored_path or record.source_path
                    report.skipped.append(f"{ImageReadError(where, str(exc))}; not classified")
                    continue
                chunk.append((ref, None if found is None else found[1]))
                kept.append(record)
                versions.append(None if found is None else found[0].id)
            chunks[index] = (kept, versions)
            yield chunk

    started, done, seen = time.perf_counter(), 0, 0
    with using(compute, len(records)) as executor:
        job = ClassifyJob(
            tuple(model for _, model in shipped), device, executor.threads_per_task, batch_size,
            tta,
        )  # fmt: skip
        handles = [executor.share(data) for data, _ in shipped]
        report.driver = executor.description
        if isinstance(executor, LocalExecutor):  # built here once; the chunks reuse it
            report.device = _runner_device(model_runner(handles[0], job.models[0], job))
        else:
            report.device = f"{shipped[0][1].engine}, {executor.threads_per_task} thread each"
        if report.engine != engine:  # a method without an ONNX export runs in torch
            report.device = f"{report.device[:-1]}; {NO_ONNX})"
        work = partial(classify_chunk, job=job)
        for index, outcome in executor.map_unordered(work, items(), *handles, cancel=cancel):
            kept, versions = chunks.pop(index)
            report.skipped += [message for _, message in outcome.problems]
            chosen = [kept[p] for p in outcome.kept]
            chosen_versions = [versions[p] for p in outcome.kept]
            if chosen:
                derive = len(models) == 1  # the binary call from the Bethesda probabilities
                for loaded, probs in zip(models, outcome.probs, strict=True):
                    _save_predictions(
                        store, loaded, project, chosen, probs, chosen_versions,
                        actor=actor, with_derived_binary=derive,
                    )  # fmt: skip
            done += len(chosen)
            seen += min(batch_size, len(records) - index * batch_size)
            yield Progress("classify", seen, len(records), f"{done} images classified")
    report.cancelled = cancel is not None and cancel.cancelled and seen < len(records)
    report.classified = done
    report.seconds_per_image = (time.perf_counter() - started) / max(done, 1)
    latest = store.latest_predictions(main.task, model_id=main.model_id)
    for pred in latest.values():
        report.counts[pred.pred_class] = report.counts.get(pred.pred_class, 0) + 1
    return report


def _shipped(loaded: LoadedClassifier, engine: str) -> tuple[bytes, ClassifyModel]:
    """What workers get of a classifier: its ONNX export, or its weights for torch."""
    spec = ClassifierSpec.from_config(loaded.config)
    if engine == "onnx" and loaded.onnx_exportable and loaded.onnx_bytes is not None:
        return loaded.onnx_bytes, ClassifyModel(spec, "onnx")
    buffer = io.BytesIO()  # the torch engine, or a method without an ONNX export
    torch.save(loaded.model.state_dict(), buffer)
    return buffer.getvalue(), ClassifyModel(spec, "torch", loaded.config)


def _runner_device(runner: object) -> str:
    """Where a session or torch network runs, in words (as ClassifierRuntime says it)."""
    if isinstance(runner, torch.nn.Module):
        where = next(runner.parameters()).device
        if where.type == "cuda":
            return f"{torch.cuda.get_device_name(where)} (torch CUDA)"
        return f"CPU (torch, {torch.get_num_threads()} threads)"
    return str(getattr(runner, "device", "CPU (onnxruntime)"))


def _save_predictions(
    store: PredictionStore,
    loaded: LoadedClassifier,
    project: Project,
    records: list[ImageRecord],
    probs: np.ndarray,
    versions: list[int | None],
    *,
    actor: str,
    with_derived_binary: bool,
) -> None:
    entropy = normalised_entropy(probs)
    rows = [
        PredictionInput(
            r.id,
            loaded.class_names[int(np.argmax(p))],
            dict(zip(loaded.class_names, map(float, p), strict=True)),
            float(u),
            v,
        )
        for r, p, u, v in zip(records, probs, entropy, versions, strict=True)
    ]
    store.save_predictions(loaded.model_id, loaded.task, rows, actor=actor)
    if loaded.task == "bethesda" and with_derived_binary:
        # A class the model never learned (no examples) cannot be among its columns.
        normal = project.scheme.not_revisable & set(loaded.class_names)
        p_rev = derive_binary(probs, loaded.class_names, normal)
        binary = np.stack([1 - p_rev, p_rev], axis=1)
        derived = [
            PredictionInput(
                r.id,
                BINARY_CLASSES[int(pr >= 0.5)],
                {BINARY_CLASSES[0]: float(1 - pr), BINARY_CLASSES[1]: float(pr)},
                float(u),
                v,
            )
            for r, pr, u, v in zip(
                records, p_rev, normalised_entropy(binary), versions, strict=True
            )
        ]
        store.save_predictions(loaded.model_id, "binary", derived, actor=actor)


# -- measure -------------------------------------------------------------------------------------
def measure_project(
    project: Project,
    image_ids: Sequence[int] | None = None,
    *,
    problems: list[str] | None = None,
) -> dict[int, ImageMeasurements]:
    """Cell measurements of every image that has a mask, in µm where the pixel size is known.

    An image whose file is missing or damaged is left out; its one-line reason is appended to
    ``problems`` when given.
    """
    current = project.current_versions()
    out: dict[int, ImageMeasurements] = {}
    for record in _selected(project, image_ids):
        if record.id not in current:
            continue
        found = project.current_mask(record.id)
        if found is None:
            continue
        try:
            image = project.load_image(record).rgb
        except ImageReadError as exc:
            if problems is not None:
                problems.append(f"{exc}; not measured")
            continue
        out[record.id] = measure_image(found[1], image, project.pixel_size(record))
    return out


# -- one image's details -------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageDetails:
    """What the review shows of one image: the model's calls, the reviewer's, the cells.

    Attributes
    ----------
    image_id, name, class_label
        The image and its class label (None: unlabelled).
    prediction, binary
        The newest Bethesda prediction and binary call (None: not classified yet).
    review
        The newest class call a reviewer recorded (None: none yet).
    current_classifier
        The current Bethesda classifier's id: the prediction may come from an older one.
    measurements
        The cells of the current mask (None: no mask, or it could not be measured).
    measure_problem
        Why an image with a mask has no measurements (a missing or damaged file), else None.
    heatmap_note
        Why the model whose heatmap would be shown can give none (no CAM layer), else None.
    measurements_joined
        Whether the prediction's classifier joins a measurement model to its network.
    """

    image_id: int
    name: str
    class_label: str | None
    prediction: PredictionRecord | None
    binary: PredictionRecord | None
    review: ReviewRecord | None
    current_classifier: str | None
    measurements: ImageMeasurements | None
    measure_problem: str | None = None
    heatmap_note: str | None = None
    measurements_joined: bool = False

    @property
    def binary_probability(self) -> float | None:
        """The probability of the binary call (None without one)."""
        if self.binary is None:
            return None
        return self.binary.probabilities.get(self.binary.pred_class, 0.0)

    def prediction_source(self) -> str:
        """Which model the probabilities come from, and when (empty without a prediction).

        Says so when it is not the current classifier.
        """
        pred = self.prediction
        if pred is None:
            return ""
        text = f"probabilities from {pred.model_id}"
        if self.measurements_joined:
            text += " and its measurement model"
        text += f", {pred.created_at[:16].replace('T', ' ')} UTC"
        current = self.current_classifier
        if current is not None and current != pred.model_id:
            text += f"; the current classifier is {current}: classify again to see its call"
        return text


def image_details(project: Project, image_id: int, *, measure: bool = True) -> ImageDetails:
    """Everything the review shows of ``image_id``: predictions, the reviewer's call, the cells.

    Measuring reads the image and its mask (tens of milliseconds on a large field): the
    workbench calls this on a worker thread, never on the GUI thread. No Qt here.

    Parameters
    ----------
    project
        The open project.
    image_id
        The image.
    measure
        Also measure the cells of the current mask.

    Returns
    -------
    ImageDetails
        The image's details; a file that cannot be read gives no measurements and says why in
        ``measure_problem``, it does not raise.
    """
    record = project.image(image_id)
    store = PredictionStore(project)
    measurements, problem = None, None
    if measure:
        try:
            found = project.current_mask(record.id)
            if found is not None:
                rgb = project.load_image(record).rgb
                measurements = measure_image(found[1], rgb, project.pixel_size(record))
        except (CytoReviewError, OSError, ValueError) as exc:
            problem = f"{record.name}: not measured ({exc})"
    explainer = heatmap_model(project, record.id)
    prediction = store.latest_predictions("bethesda").get(record.id)
    return ImageDetails(
        image_id=record.id,
        name=record.name,
        class_label=record.class_label,
        prediction=prediction,
        binary=store.latest_predictions("binary").get(record.id),
        review=store.latest_reviews().get(record.id),
        current_classifier=current_classifier_id(project, "bethesda"),
        measurements=measurements,
        measure_problem=problem,
        heatmap_note=None if explainer is None else heatmap_unavailable(project, explainer),
        measurements_joined=prediction is not None and _joins(project, prediction.model_id),
    )


def _joins(project: Project, model_id: str) -> bool:
    """Whether ``model_id`` joins a measurement model, from its training run's record."""
    run = ModelStore(project).run_of(model_id)
    return run is not None and joins_measurements({**run.config.get("training", {}), **run.config})
