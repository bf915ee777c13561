"""Classification use cases: train a classifier, classify every image, explain the calls.

Two tasks share one code path: ``bethesda`` (the project's own classes, NILM / ASC-US / LSIL /
HSIL by default) and ``binary`` (not revisable / revisable, from the scheme's not-revisable
classes). A Bethesda model also gives a derived binary call, P(revisable) = the summed
probability of the revisable classes; a dedicated binary model, when one is trained, wins.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cytoreview import __version__
from cytoreview.choices import TASKS  # torch-free home: the CLI parser lists it without torch
from cytoreview.data.datasets import choose_input_size
from cytoreview.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from cytoreview.defaults import CLS, RUN
from cytoreview.errors import (
    CheckpointError,
    ConfigError,
    ImageReadError,
    NotEnoughDataError,
    ProjectError,
)
from cytoreview.inference.classify import export_classifier_onnx, has_cam_outputs
from cytoreview.metrics.classification import classification_report
from cytoreview.models.classifiers import (
    build_classifier,
    classifier_uses_mask,
    load_backbone_weights,
)
from cytoreview.models.measurement_model import MeasurementModel
from cytoreview.plugin_api import find
from cytoreview.storage.checkpoints import load_state_dict_file
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.training.classification import ClsEpochStats, ClsTrainConfig, train_classifier
from cytoreview.types import CancelToken, ClassScheme, Progress
from cytoreview.workflows.checkpointing import stored_onnx

#: Class names of the binary task, in head order (index 1 is the "needs review" call).
BINARY_CLASSES: tuple[str, ...] = ("not-revisable", "revisable")


def kind_of(task: str) -> str:
    """The ``training_runs.kind`` (and current-model key) of a task."""
    if task not in TASKS:
        raise ConfigError(f"unknown task {task!r}; valid: {', '.join(TASKS)}")
    return f"classification-{task}"


def task_classes(scheme: ClassScheme, task: str) -> list[str]:
    """The classes a model of ``task`` predicts, in head order."""
    kind_of(task)
    return list(scheme.classes) if task == "bethesda" else list(BINARY_CLASSES)


def task_label(scheme: ClassScheme, class_label: str, task: str) -> str:
    """The training label of an image of ``class_label`` for ``task``."""
    if task == "bethesda":
        return scheme.resolve(class_label)
    return BINARY_CLASSES[1] if scheme.is_revisable(class_label) else BINARY_CLASSES[0]


@dataclass
class Examples:
    """Labelled images (with their current masks) gathered for training or evaluation."""

    names: list[str] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    images: list[np.ndarray] = field(default_factory=list)
    masks: list[np.ndarray | None] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    mask_sources: list[str] = field(default_factory=list)  # provenance or "none"
    skipped: list[str] = field(default_factory=list)
    data_hash: str = ""


def collect_examples(
    project: Project,
    task: str,
    *,
    needs_mask: bool,
    human_masks_only: bool = False,
    include_test: bool = False,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, Examples]:
    """Load every labelled image and its current mask (human or auto).

    Images of the ``test`` split are held out unless ``include_test``. Where the model needs a
    mask and an image has none, the image is skipped and named in ``skipped``.
    """
    out = Examples()
    digest = hashlib.sha256()
    current = project.current_versions()
    records = [
        r
        for r in project.images()
        if r.class_label is not None and (include_test or r.split != "test")
    ]
    for step, record in enumerate(records, start=1):
        if cancel is not None and cancel.cancelled:
            break
        version = current.get(record.id)
        if version is not None and human_masks_only and not version.provenance.is_human:
            version = None
        found = project.current_mask(record.id) if version is not None else None
        if found is None and needs_mask:
            out.skipped.append(f"{record.name}: no mask yet (paint it or run `cytoreview segment`)")
            continue
        try:
            rgb = project.load_image(record).rgb
        except ImageReadError as exc:  # named and skipped; one bad file never stops training
            out.skipped.append(f"{exc}; skipped")
            continue
        out.names.append(record.name)
        out.image_ids.append(record.id)
        out.images.append(rgb)
        out.masks.append(None if found is None else found[1])
        out.labels.append(task_label(project.scheme, record.class_label or "", task))
        out.mask_sources.append("none" if found is None else found[0].provenance.value)
        digest.update(f"{record.sha256}:{found[0].sha256 if found else '-'}\n".encode())
        if step % 25 == 0 or step == len(records):
            yield Progress("load", step, len(records), f"{len(out.images)} images loaded")
    out.data_hash = digest.hexdigest()
    return out


# -- training ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClsTrainRequest:
    """What the user asked for (the CLI's and the GUI's options)."""

    task: str = CLS.task
    arch: str = CLS.arch
    #: The architecture's own settings (``cytoreview plugins`` lists each one's).
    settings: Mapping[str, Any] = field(default_factory=dict)
    backbone: str = CLS.backbone
    #: None: the image branch's backbone, or the parent's when fine-tuning
    #: (cytoreview.defaults.ClsRecipe.mask_backbone_for: one rule for the CLI and the GUI).
    mask_backbone: str | None = CLS.mask_backbone
    #: None: from the images (see cytoreview.defaults.ClsRecipe), or the parent model's size.
    input_size: int | None = None
    epochs: int = CLS.epochs
    batch_size: int = CLS.batch_size
    lr: float = CLS.lr
    patience: int = CLS.patience
    lr_patience: int = CLS.lr_patience
    ema_decay: float = CLS.ema_decay
    balance: str = CLS.balance
    #: Join a measurement model to a network that sees masks (cytoreview.defaults.ClsRecipe).
    measurements: bool = CLS.measurements
    time_budget_min: float | None = None
    device: str = RUN.device
    seed: int = RUN.seed
    human_masks_only: bool = False
    weights: str | None = None  # an ImageNet (or other) weights file for the image backbone
    init: str | None = None  # fine-tune from a classifier model id of this project


@dataclass
class ClsTrainReport:
    """The result of a classifier training run."""

    model_id: str
    run_id: int
    task: str
    status: str
    stop_reason: str
    class_names: list[str]
    best: ClsEpochStats | None
    history: list[ClsEpochStats]
    n_train: int
    n_val: int
    device: str
    seconds: float
    validation: dict[str, Any]
    warnings: list[str]


def _init_state(
    store: ModelStore, request: ClsTrainRequest
) -> tuple[dict[str, torch.Tensor] | None, str | None, int | None, str | None]:
    """The parent's weights, id, input size and mask backbone when fine-tuning, else Nones."""
    if request.init is None:
        return None, None, None, None
    if not (store.root / request.init).is_dir():
        known = ", ".join(r.model_id for r in store.runs()[-3:]) or "none yet"
        raise CheckpointError(Path(request.init), f"not a model of this project (latest: {known})")
    config, state = store.load(request.init)
    if config.get("arch") != request.arch:
        raise ConfigError(
            f"{request.init} is a {config.get('arch')} model; fine-tune it with --arch "
            f"{config.get('arch')}"
        )
    size = config.get("input_size")
    mask_backbone = config.get("mask_backbone")
    return state, request.init, int(size) if size else None, mask_backbone or None


def _classifier_input_size(
    request: ClsTrainRequest, parent_size: int | None, images: Sequence[np.ndarray]
) -> int:
    """The user's size, else the parent model's (fine-tuning), else one that fits the images."""
    if request.input_size:
        return request.input_size
    if parent_size:
        return parent_size
    shapes = [image.shape for image in images]
    return choose_input_size(shapes, minimum=CLS.input_min, maximum=CLS.input_max)


def _stats_dict(stats: ClsEpochStats) -> dict[str, float]:
    return {
        "epoch": stats.epoch,
        "train_loss": stats.train_loss,
        "val_loss": stats.val_loss,
        "val_accuracy": stats.val_accuracy,
        "val_macro_f1": stats.val_macro_f1,
    }


def train_classification(
    project: Project, request: ClsTrainRequest, *, actor: str, cancel: CancelToken | None = None
) -> Generator[Progress, None, ClsTrainReport]:
    """Train a classifier on the labelled images and their current masks (human or auto)."""
    kind = kind_of(request.task)
    contribution = find("classifier", request.arch)
    settings = contribution.settings_record(request.settings)
    needs_mask = contribution.uses_mask
    own_trainer = getattr(contribution.load(), "trainer", None)
    examples = yield from collect_examples(
        project, request.task, needs_mask=needs_mask, human_masks_only=request.human_masks_only,
        cancel=cancel,
    )  # fmt: skip
    for line in examples.skipped[:20]:
        yield Progress("load", 0, 0, line, level="warning")
    if len(examples.skipped) > 20:
        yield Progress("load", 0, 0, f"... {len(examples.skipped) - 20} more", level="warning")
    if len(set(examples.labels)) < 2 or len(examples.images) < 4:
        raise NotEnoughDataError(
            f"{project.root}: {len(examples.images)} labelled image(s) usable for a "
            f"{request.arch} classifier in {len(set(examples.labels))} class(es); training needs "
            "at least 4 images in 2 classes (label images with `cytoreview import` class folders"
            + (", and give them masks with `cytoreview segment`)" if needs_mask else ")")
        )
    all_classes = task_classes(project.scheme, request.task)
    store = ModelStore(project)
    init_state, parent, parent_size, parent_mask = _init_state(store, request)
    input_size = _classifier_input_size(request, parent_size, examples.images)
    mask_backbone = CLS.mask_backbone_for(request.backbone, request.mask_backbone, parent_mask)
    config = ClsTrainConfig(
        arch=request.arch, backbone=request.backbone, mask_backbone=mask_backbone,
        input_size=input_size, epochs=request.epochs, batch_size=request.batch_size,
        lr=request.lr, patience=request.patience, balance=request.balance,
        lr_patience=request.lr_patience, ema_decay=request.ema_decay,
        # The core trainer joins the measurement model; a method's own trainer does not, and
        # the record must not say it did.
        measurements=request.measurements and own_trainer is None,
        time_budget_s=request.time_budget_min * 60 if request.time_budget_min else None,
        device=request.device, seed=request.seed, settings=settings,
        plugin=contribution.provenance(),
    )  # fmt: skip
    if request.weights is not None and init_state is None:
        init_state = _backbone_init(request, config, all_classes, examples.labels)
    model_id = store.new_model_id("cls", f"{request.task}-{request.arch}-{request.backbone}")
    present = [c for c in all_classes if c in set(examples.labels)]
    meta: dict[str, Any] = {
        "kind": kind, "task": request.task, "model_id": model_id,
        "scheme": project.scheme.to_dict(), "all_classes": all_classes,
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 255},
        "training": config.to_dict(), "parent_model": parent,
        "data": {"hash": examples.data_hash, "n": len(examples.images), "names": examples.names,
                 "mask_sources": _count(examples.mask_sources)},
        "package_version": __version__, "author": actor,
    }  # fmt: skip
    run_id = store.start_run(kind, model_id, meta, actor=actor)
    saved = {"any": False}

    def on_best(
        state: dict[str, torch.Tensor],
        stats: ClsEpochStats,
        model_config: dict[str, Any] | None = None,
    ) -> None:
        # A method's own trainer may pass the config it fitted (e.g. sizes learned from the
        # data that build() needs); the core trainer passes none.
        model_config = model_config or config.model_config(present)
        store.save_weights(
            model_id,
            state,
            {**meta, **model_config, "best_epoch": stats.epoch, "metrics": _stats_dict(stats)},
        )
        saved["any"] = True

    yield Progress(
        "prepare", 1, 1,
        f"{len(examples.images)} images, classes {', '.join(present)}; {request.arch} on "
        f"{request.backbone}, input {input_size} px"
        + ("" if request.input_size else " (chosen from the images)"),
    )  # fmt: skip
    try:
        # A method may train in its own way (several stages, fitted features); the core
        # trainer otherwise. Both have the same signature and events.
        trainer = own_trainer or train_classifier
        result = yield from trainer(
            examples.images,
            [m if m is not None else np.zeros(im.shape[:2], np.uint8)
             for im, m in zip(examples.images, examples.masks, strict=True)],
            examples.labels, all_classes, config, cancel=cancel, on_best=on_best,
            init_state=init_state,
        )  # fmt: skip
    except BaseException as exc:
        store.finish_run(
            run_id, "failed", {"error": str(exc)[:500]}, actor=actor, has_checkpoint=saved["any"]
        )
        raise
    validation: dict[str, Any] = {}
    if len(result.val_indices) and result.val_probs.shape[0]:
        report = classification_report(
            result.val_labels.tolist(), result.val_probs, result.class_names
        )
        validation = report.to_dict()
        validation["images"] = [examples.names[i] for i in result.val_indices]
    if saved["any"] and not exports_onnx(result.model_config):
        yield Progress("export", 1, 1, f"no ONNX export: {NO_ONNX}")
    elif saved["any"]:
        yield Progress("export", 0, 1, "exporting to ONNX")
        model = build_classifier(result.model_config)
        model.load_state_dict(result.state_dict)
        store.save_onnx(model_id, export_classifier_onnx(model, config.input_size))
        yield Progress("export", 1, 1, "ONNX export written")
    status = "cancelled" if result.stop_reason == "cancelled" else "finished"
    summary = {
        "stop_reason": result.stop_reason, "seconds": round(result.seconds, 1),
        "device": result.device, "epochs_run": len(result.history), "task": request.task,
        "class_names": result.class_names, "validation": validation,
        "history": [_stats_dict(h) for h in result.history],
        **({"best": _stats_dict(result.best)} if result.best else {}),
    }  # fmt: skip
    store.finish_run(run_id, status, summary, actor=actor, has_checkpoint=saved["any"])
    return ClsTrainReport(
        model_id=model_id, run_id=run_id, task=request.task, status=status,
        stop_reason=result.stop_reason, class_names=result.class_names, best=result.best,
        history=result.history, n_train=len(examples.images) - len(result.val_indices),
        n_val=len(result.val_indices), device=result.device, seconds=result.seconds,
        validation=validation, warnings=[*examples.skipped, *result.warnings],
    )  # fmt: skip


def _backbone_init(
    request: ClsTrainRequest, config: ClsTrainConfig, classes: list[str], labels: list[str]
) -> dict[str, torch.Tensor]:
    """Whole-model initial weights with the image backbone taken from a weights file."""
    path = Path(request.weights or "")
    state = load_state_dict_file(path)
    present = [c for c in classes if c in set(labels)]
    model = build_classifier(config.model_config(present))
    report = load_backbone_weights(model, state)
    if not report.loaded:
        raise CheckpointError(path, f"no tensor fits a {request.backbone} backbone")
    return model.state_dict()


def _count(values: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


# -- loading a trained classifier ----------------------------------------------------------------
#: Why a model runs in torch although ONNX Runtime was asked for (said in the device text).
NO_ONNX = "this classifier has no ONNX export"


def exports_onnx(config: Mapping[str, Any]) -> bool:
    """Whether the classifier a config describes can be exported to ONNX.

    A method says it cannot with ``onnx_exportable = False`` (e.g. features computed by
    OpenCV on numpy inside ``forward``); it then runs in torch whatever engine is asked for.
    """
    method = find("classifier", str(config.get("arch", CLS.arch)), config.get("plugin")).load()
    return bool(getattr(method, "onnx_exportable", True))


@dataclass
class LoadedClassifier:
    """A trained classifier ready for inference and explanation.

    ``onnx_bytes`` is its ONNX export with the CAM outputs (None when loaded for the torch
    engine); ``runtimes`` keeps the sessions made from it
    (:func:`cytoreview.workflows.cls_runtime.classifier_runtime`).
    """

    model_id: str
    task: str
    config: dict[str, Any]
    model: torch.nn.Module
    class_names: list[str]
    input_size: int
    uses_mask: bool
    onnx_bytes: bytes | None = field(default=None, repr=False)
    runtimes: dict[tuple[str, str], Any] = field(default_factory=dict, repr=False)
    #: Identity of the ONNX file read (path, mtime, size): sessions are shared between loads.
    onnx_key: tuple[str, int, int] | None = None
    #: False for a method without an ONNX export: it runs in torch whatever engine is asked.
    onnx_exportable: bool = True
    #: The measurement model joined to the network (None: the network alone).
    measurements: MeasurementModel | None = field(default=None, repr=False)


def current_classifier_id(project: Project, task: str) -> str | None:
    """The model id that classification uses now for ``task`` (the newest usable run)."""
    return ModelStore(project).current_model(kind_of(task))


def load_classifier(
    project: Project, model_id: str | None = None, task: str = "bethesda", engine: str = "onnx"
) -> LoadedClassifier:
    """Load a classifier of the project (the current one of ``task`` when no id is given).

    For the ``onnx`` engine its ONNX export is read too; an export without the CAM outputs
    (made before they existed) or a missing one is made again from the checkpoint and saved,
    once, so later loads find it. A classifier whose method has no ONNX export
    (:func:`exports_onnx`) is loaded for torch instead (``onnx_exportable`` False).
    """
    store = ModelStore(project)
    model_id = model_id or current_classifier_id(project, task)
    if model_id is None:
        raise ProjectError(
            f"{project.root}: no {task} classifier trained yet; run `cytoreview train-cls "
            f"{project.root}{'' if task == 'bethesda' else ' --task binary'}` first"
        )
    config, state = store.load(model_id)
    if not str(config.get("kind", "")).startswith("classification"):
        raise ConfigError(f"{model_id} is not a classifier (kind {config.get('kind')!r})")
    model = build_classifier(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            store.checkpoint_path(model_id), f"weights do not fit their config ({str(exc)[:200]})"
        ) from exc
    model.eval()
    onnx_bytes, onnx_key = None, None
    exportable = exports_onnx(config)
    if engine == "onnx" and exportable:
        onnx_bytes = stored_onnx(store, model_id)
        if onnx_bytes is None or not has_cam_outputs(onnx_bytes):
            onnx_bytes = export_classifier_onnx(model, int(config["input_size"]))
            store.save_onnx(model_id, onnx_bytes)
        path = store.onnx_path(model_id)
        stat = path.stat()
        onnx_key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    elif engine not in ("onnx", "torch"):
        raise ConfigError(f"unknown engine {engine!r}; valid: onnx, torch")
    return LoadedClassifier(
        model_id=model_id, task=str(config.get("task", task)), config=config, model=model,
        class_names=list(config["class_names"]), input_size=int(config["input_size"]),
        uses_mask=classifier_uses_mask(config), onnx_bytes=onnx_bytes,
        onnx_key=onnx_key, onnx_exportable=exportable,
        measurements=MeasurementModel.from_config(config),
    )  # fmt: skip


def seconds_since(start: float) -> float:
    """Wall-clock seconds since ``start`` (``time.perf_counter``)."""
    return time.perf_counter() - start
