"""Segmentation use cases: train (or fine-tune) on human masks, auto-mask the rest, evaluate.

Human work is sacred here too: only manual, corrected and approved masks train the model, and an
automatic mask is written only where no person's mask is current.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cytoreview import __version__
from cytoreview.choices import PRECISIONS
from cytoreview.data.datasets import choose_input_size
from cytoreview.data.geometry import FIELD_TILE, Geometry, choose_geometry
from cytoreview.data.sampling import stratified_split
from cytoreview.data.transforms import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig
from cytoreview.defaults import COMPUTE, RUN, SEG
from cytoreview.errors import (
    CheckpointError,
    ConfigError,
    ImageReadError,
    InputFileError,
    NotEnoughDataError,
    ProjectError,
    UnsafePathError,
)
from cytoreview.inference.calibration import calibrate_offsets
from cytoreview.inference.decision import OffsetFit
from cytoreview.inference.onnx_export import export_onnx, onnx_providers
from cytoreview.inference.predictors import TorchPredictor
from cytoreview.inference.segment import SegmenterSpec, with_tta
from cytoreview.models.devices import pick_torch_device
from cytoreview.models.segmenters import (
    DEFAULT_SEGMENTER,
    SIZE_MULTIPLE,
    build_segmenter,
    describe_segmenter,
    segmenter_contribution,
    segmenter_method,
    segmenter_settings,
)
from cytoreview.plugin_api import Contribution, Preset, catalog, find
from cytoreview.storage.checkpoints import load_weights
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.names import name_component
from cytoreview.storage.project import Project
from cytoreview.training.losses import classes_present
from cytoreview.training.segmentation import EpochStats, SegTrainConfig, train_segmenter
from cytoreview.training.semi import SemiConfig
from cytoreview.types import LABEL_NAMES, CancelToken, Progress, Provenance
from cytoreview.workflows.checkpointing import BestWeightsWriter, stored_onnx
from cytoreview.workflows.executors import Executor, ExecutorSpec, LocalExecutor, using
from cytoreview.workflows.precision import cpu_onnx_model
from cytoreview.workflows.segment_worker import (
    SegmentJob,
    build_predictor,
    job_predictor,
    segment_chunk,
)

KIND = "segmentation"


@dataclass(frozen=True)
class SegTrainRequest:
    """What the user asked for; ``None`` means "choose from the data / the checkpoint"."""

    #: The segmenter contribution (``cytoreview plugins`` lists them) and its own settings.
    arch: str = SEG.arch
    settings: Mapping[str, Any] = field(default_factory=dict)
    epochs: int = SEG.epochs
    time_budget_min: float | None = None
    device: str = RUN.device
    init: str | None = None  # a model id of this project or a weights/checkpoint file
    input_size: int | None = None
    batch_size: int = SEG.batch_size
    lr: float = SEG.lr
    loss: str = SEG.loss
    patience: int = SEG.patience
    lr_patience: int = SEG.lr_patience
    ema_decay: float = SEG.ema_decay
    #: What early stopping watches: "iou" or "loss" (see cytoreview.defaults.SegRecipe).
    monitor: str = SEG.monitor
    seed: int = RUN.seed
    tile_threshold: int = SEG.tile_threshold
    #: "auto" (from the painted masks, see cytoreview.data.geometry), "crops" or "fields".
    geometry: str = SEG.geometry
    amp: bool = SEG.amp
    cpu_bf16: bool = SEG.cpu_bf16
    #: Also learn from the project's unpainted images (never stored as masks).
    semi: bool = SEG.semi
    #: Choose decision offsets on the validation images after training (see
    #: cytoreview.inference.decision).
    calibrate: bool = SEG.calibrate
    #: CPU threads (None: measured while training) and augmentation workers (None: chosen).
    threads: int | None = None
    loader_workers: int | None = None
    #: Also learn from masks a mask generator made (``cytoreview generate-masks``): how a
    #: project starts with no painting at all. Masks a model made are never learned from.
    include_generated: bool = False
    #: Changes to the training augmentation (fields of
    #: :class:`~cytoreview.data.transforms.AugmentConfig`), e.g. from a paper's preset.
    augment: Mapping[str, Any] = field(default_factory=dict)
    #: The preset this request came from (recorded in the checkpoint), if any.
    preset: str | None = None


def seg_request(preset: str | None = None, **explicit: Any) -> SegTrainRequest:
    """A training request: the defaults, then a preset's recipe, then what the user gave.

    Parameters
    ----------
    preset
        The name of a segmenter's preset (``cytoreview plugins`` lists them), or None.
    explicit
        Request fields the user set (flags given, form fields changed); they win over the
        preset. ``settings`` and ``augment`` are merged key by key.

    Raises
    ------
    ConfigError
        For an unknown preset or field, or a preset of another method than ``arch``.
    """
    known = {f.name for f in fields(SegTrainRequest)}
    values: dict[str, Any] = {}
    if preset is not None:
        owner, recipe = find_preset("segmenter", preset)
        if "arch" in explicit and explicit["arch"] != owner.name:
            raise ConfigError(
                f"preset {preset!r} is a recipe of {owner.name}, not of {explicit['arch']}"
            )
        values = {"arch": owner.name, **dict(recipe.values), "preset": preset}
    unknown = sorted((set(values) | set(explicit)) - known)
    if unknown:
        raise ConfigError(f"unknown training setting(s) {', '.join(unknown)}")
    merged = {**values, **explicit}
    for key in ("settings", "augment"):
        merged[key] = {**dict(values.get(key, {})), **dict(explicit.get(key, {}))}
    return SegTrainRequest(**merged)


def find_preset(kind: str, name: str) -> tuple[Contribution, Preset]:
    """The contribution of ``kind`` that publishes preset ``name``, and the preset."""
    if kind != "segmenter":
        raise ConfigError(f"presets are recipes of segmenters, not of {kind}s")
    everyone = catalog().presets()
    for contribution, recipe, _publisher in everyone:
        if recipe.name == name:
            return contribution, recipe
    valid = ", ".join(p.name for _, p, _ in everyone) or "none installed"
    raise ConfigError(f"unknown preset {name!r}; valid: {valid}")


@dataclass
class SegTrainReport:
    """The result of a training run."""

    model_id: str
    run_id: int
    status: str
    stop_reason: str
    best: EpochStats | None
    history: list[EpochStats]
    n_train: int
    n_val: int
    device: str
    seconds: float
    parent_model: str | None = None
    init_note: str = ""
    #: Images left out because their file is missing or damaged, one line each.
    skipped: list[str] = field(default_factory=list)


#: ``source_model`` of a mask a mask generator made: ``generator:<name>``.
GENERATOR_SOURCE = "generator:"


def is_generated(version: Any) -> bool:
    """Whether a mask version is an automatic mask made by a mask generator (not a model)."""
    source = getattr(version, "source_model", None) or ""
    return not version.provenance.is_human and source.startswith(GENERATOR_SOURCE)


def human_masked(project: Project, include_generated: bool = False) -> list[tuple[Any, Any]]:
    """(image record, current mask version) of every image whose current mask trains a model.

    A person's masks (manual, corrected, approved) always; a mask generator's only when
    ``include_generated``; a model's auto-masks never. The test split never.
    """
    current = project.current_versions()
    return [
        (image, current[image.id])
        for image in project.images()
        if image.id in current and image.split != "test"
        and (current[image.id].provenance.is_human
             or (include_generated and is_generated(current[image.id])))
    ]  # fmt: skip


def _load_training_data(
    project: Project, include_generated: bool = False
) -> tuple[list[str], list[str | None], list[np.ndarray], list[np.ndarray], str, list[str]]:
    """Names, classes, images and masks to learn from, the data hash, and the images skipped."""
    names, labels, images, masks, skipped = [], [], [], [], []
    digest = hashlib.sha256()
    for record, _version in human_masked(project, include_generated):
        found = project.current_mask(record.id)
        if found is None:
            continue  # every version damaged: nothing trustworthy to learn from
        try:
            rgb = project.load_image(record).rgb
        except ImageReadError as exc:  # one missing image must not stop the run
            skipped.append(f"{exc}; left out of training")
            continue
        names.append(record.name)
        labels.append(record.class_label)
        images.append(rgb)
        masks.append(found[1])
        digest.update(f"{record.sha256}:{found[0].sha256}\n".encode())
    return names, labels, images, masks, digest.hexdigest(), skipped


def _load_unpainted(project: Project, limit: int, seed: int) -> list[np.ndarray]:
    """Up to ``limit`` images without a person's mask (seeded choice; never the test split)."""
    current = project.current_versions()
    candidates = [
        im for im in project.images()
        if im.split != "test" and not (im.id in current and current[im.id].provenance.is_human)
    ]  # fmt: skip
    if len(candidates) > limit:
        keep = np.random.default_rng(seed).choice(len(candidates), limit, replace=False)
        candidates = [candidates[int(i)] for i in sorted(keep)]
    images = []
    for record in candidates:
        try:
            images.append(project.load_image(record).rgb)
        except ImageReadError:
            continue  # a damaged image only teaches nothing; segment reports it by name
    return images


def _new_config(request: SegTrainRequest) -> dict[str, Any]:
    """The part of a new model's config that rebuilds its network: method, plugin, settings."""
    contribution = find("segmenter", request.arch)
    return {
        "arch": contribution.name,
        "settings": contribution.settings_record(request.settings),
        "plugin": contribution.provenance(),
    }


def _initial_model(
    store: ModelStore, request: SegTrainRequest
) -> tuple[torch.nn.Module, dict[str, Any] | None, str | None, str]:
    """Build the model (from a checkpoint when fine-tuning).

    Returns
    -------
    tuple
        The model, the parent's config, the parent's id and a note for the user.
    """
    if request.init is None:
        return build_segmenter(_new_config(request)), None, None, ""
    source = request.init
    if (store.root / source).is_dir():  # a model id of this project
        config, state = store.load(source)
        parent = source
    else:
        path = Path(source)
        if not path.is_file():
            known = ", ".join(r.model_id for r in store.runs(KIND)[-3:]) or "none yet"
            raise CheckpointError(
                path, f"no such file, and not a model of this project (latest: {known})"
            )
        loaded_config, state = load_weights(path)  # the file is read once
        if loaded_config is not None:
            config = loaded_config
            parent = config.get("model_id", path.name)
        else:
            # A plain weights file (e.g. ImageNet encoder weights): load what matches.
            new = _new_config(request)
            model = build_segmenter(new)
            # Keys may name the whole network or a part (e.g. a U-Net's encoder alone, as
            # ImageNet weights do): the method says which parts a file may fit.
            parts = segmenter_method(new).weight_targets(model)
            target, fitting = max(((m, _fitting(m, state)) for m in parts), key=lambda t: len(t[1]))
            if not fitting:
                raise CheckpointError(path, f"no tensor fits a {describe_segmenter(new)} network")
            target.load_state_dict(fitting, strict=False)
            return model, None, None, f"{len(fitting)} weight tensors loaded from {path.name}"
    model = build_segmenter(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(
            Path(source), f"weights do not fit their config ({str(exc)[:200]})"
        ) from exc
    return model, config, parent, f"fine-tuning from {parent}"


def _fitting(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The tensors of ``state`` whose names and shapes match ``module``'s own."""
    own = module.state_dict()
    return {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}


def train_segmentation(
    project: Project, request: SegTrainRequest, *, actor: str, cancel: CancelToken | None = None
) -> Generator[Progress, None, SegTrainReport]:
    """Train a new segmenter on the project's human masks (fine-tune when ``request.init``)."""
    names, labels, images, masks, data_hash, skipped = _load_training_data(
        project, request.include_generated
    )
    for message in skipped:
        yield Progress("load", 0, 0, message, level="warning")
    if len(images) < 2:
        raise NotEnoughDataError(
            f"{project.root}: {len(images)} image(s) with a manual, corrected or approved mask"
            + (" or a generated one" if request.include_generated else "")
            + "; training needs at least 2 (paint the seed set first: `cytoreview seeds`, or "
            "generate masks: `cytoreview generate-masks`, then train with --include-generated)"
        )
    train_idx, val_idx = stratified_split(labels, 0.2, request.seed)
    store = ModelStore(project)
    # The initial weights come from torch's global generator: seed it so a run is repeatable.
    torch.manual_seed(request.seed)
    model, parent_config, parent, note = _initial_model(store, request)
    if parent_config is not None:  # fine-tuning keeps the parent's geometry
        input_size = int(parent_config["input_size"])
        geometry = Geometry(
            str(parent_config.get("geometry", "crops")),
            int(parent_config.get("tile_threshold", request.tile_threshold)),
            float(parent_config.get("scale", 1.0)),
            int(parent_config.get("tile_overlap", 64)),
            "the parent model's geometry",
        )
        network = {
            "arch": parent_config.get("arch", DEFAULT_SEGMENTER),
            "settings": segmenter_settings(parent_config),
            "plugin": segmenter_contribution(parent_config).provenance(),
        }
    else:
        try:
            geometry = choose_geometry(masks, request.tile_threshold, mode=request.geometry)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        default_size = (
            FIELD_TILE
            if geometry.mode == "fields"
            else choose_input_size(
                [im.shape for im in images], tile_threshold=request.tile_threshold
            )
        )
        network = _new_config(request)
        # A network with a larger total stride (e.g. Pix2Pix's seven halvings: 128) gets the
        # smallest size it accepts that is at least what the data needs.
        input_size = request.input_size or _round_up(default_size, _size_multiple(network))
    multiple = _size_multiple(network)
    if input_size % multiple:
        raise ConfigError(f"input size must be a multiple of {multiple}, got {input_size}")
    train_cfg = SegTrainConfig(
        input_size=input_size, epochs=request.epochs, batch_size=request.batch_size, lr=request.lr,
        loss=request.loss, patience=request.patience, lr_patience=request.lr_patience,
        ema_decay=request.ema_decay, monitor=request.monitor, device=request.device,
        seed=request.seed, tile_threshold=geometry.tile_threshold, scale=geometry.scale,
        amp=request.amp, cpu_bf16=request.cpu_bf16, threads=request.threads,
        loader_workers=request.loader_workers,
        semi=SemiConfig() if request.semi else None, augment=_augment(request.augment),
        time_budget_s=request.time_budget_min * 60 if request.time_budget_min else None,
    )  # fmt: skip
    present = classes_present(masks)
    model_id = store.new_model_id("seg", _id_tag(network))
    config: dict[str, Any] = {
        "kind": KIND, "model_id": model_id, **network, "in_channels": 3,
        "class_names": [LABEL_NAMES[i] for i in sorted(LABEL_NAMES)],
        "label_map": {str(k): v for k, v in LABEL_NAMES.items()},
        "input_size": input_size, "geometry": geometry.mode,
        "tile_threshold": geometry.tile_threshold, "tile_overlap": geometry.tile_overlap,
        "scale": geometry.scale, "geometry_reason": geometry.reason,
        "classes_present": present,
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "scale": 255},
        "training": train_cfg.to_dict(), "parent_model": parent,
        "data": {"hash": data_hash, "train": [names[i] for i in train_idx],
                 "val": [names[i] for i in val_idx]},
        "package_version": __version__, "author": actor, "preset": request.preset,
        "include_generated": request.include_generated,
    }  # fmt: skip
    run_id = store.start_run(KIND, model_id, config, actor=actor)
    writer = BestWeightsWriter(
        lambda state, stats: store.save_weights(
            model_id, state, {**config, "best_epoch": stats.epoch, "metrics": _stats_dict(stats)}
        )
    )
    unlabelled = (
        _load_unpainted(project, train_cfg.semi.max_images, request.seed) if train_cfg.semi else []
    )
    extra = f"; {len(unlabelled)} unpainted images to learn from" if unlabelled else ""
    recipe = f", preset {request.preset}" if request.preset else ""
    yield Progress("prepare", 1, 1, f"{describe_segmenter(config)}{recipe}: "
                   f"{len(train_idx)} train / {len(val_idx)} validation images, "
                   f"input {input_size} px, {geometry.reason}"
                   f"{extra}"
                   f"{'; ' + note if note else ''}")  # fmt: skip
    # A method may bring its own trainer (e.g. a GAN's two networks and losses); it has the
    # core trainer's signature and events, so everything around it stays the same.
    trainer = getattr(segmenter_method(network), "trainer", None) or train_segmenter
    try:
        result = yield from trainer(
            model,
            ([images[i] for i in train_idx], [masks[i] for i in train_idx]),
            ([images[i] for i in val_idx], [masks[i] for i in val_idx]),
            train_cfg,
            cancel=cancel,
            on_best=writer.offer,
            unlabelled=unlabelled,
        )
    except BaseException as exc:
        writer.flush()  # the best weights so far are kept, also when the run fails
        store.finish_run(
            run_id, "failed", {"error": str(exc)[:500]}, actor=actor, has_checkpoint=writer.any
        )
        raise
    writer.flush()
    decision = None
    if writer.any:
        yield Progress("export", 0, 1, "exporting to ONNX")
        store.save_onnx(model_id, export_onnx(model, input_size))
        yield Progress("export", 1, 1, "ONNX export written")
        if request.calibrate and val_idx:
            yield Progress("calibrate", 0, 1, "choosing decision offsets on the validation images")
            val_images, val_masks = [images[i] for i in val_idx], [masks[i] for i in val_idx]
            decision = _calibrate(store, model_id, model, train_cfg, val_images, val_masks)
            yield Progress("calibrate", 1, 1, decision.describe())
    status = "cancelled" if result.stop_reason == "cancelled" else "finished"
    summary = {
        "stop_reason": result.stop_reason, "seconds": round(result.seconds, 1),
        "device": result.device, "epochs_run": len(result.history),
        "n_train": len(train_idx), "n_val": len(val_idx), "geometry": geometry.reason,
        "thread_decisions": [[n, {str(k): round(v, 4) for k, v in m.items()}]
                             for n, m in result.thread_decisions],
        "history": [{"epoch": h.epoch, **_stats_dict(h)} for h in result.history],
        **({"best_epoch": result.best.epoch, **_stats_dict(result.best)} if result.best else {}),
        **({"decision": decision.to_dict()} if decision is not None else {}),
    }  # fmt: skip
    store.finish_run(run_id, status, summary, actor=actor, has_checkpoint=writer.any)
    return SegTrainReport(
        model_id=model_id, run_id=run_id, status=status, stop_reason=result.stop_reason,
        best=result.best, history=result.history, n_train=len(train_idx), n_val=len(val_idx),
        device=result.device, seconds=result.seconds, parent_model=parent, init_note=note,
        skipped=skipped,
    )  # fmt: skip


def _calibrate(
    store: ModelStore,
    model_id: str,
    model: torch.nn.Module,
    train_cfg: SegTrainConfig,
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
) -> OffsetFit:
    """Choose the kept model's decision offsets on the validation images and store them.

    The masks are made as ``segment`` makes them (the same views: see ``SEG.tta_for``), by the
    weights the checkpoint holds; the offsets join the checkpoint's config, where
    :class:`SegmenterSpec` reads them.
    """
    config, state = store.load(model_id)
    spec = SegmenterSpec.from_config(config)  # a new run's config has no offsets yet
    predictor: Any = TorchPredictor(model, train_cfg.device, train_cfg.amp)
    if SEG.tta_for(spec.fields):
        predictor = with_tta(predictor)
    fit = calibrate_offsets(images, masks, predictor, spec)
    model.to("cpu", memory_format=torch.contiguous_format).eval()
    store.save_weights(
        model_id, state, {**config, "class_offsets": list(fit.offsets), "decision": fit.to_dict()}
    )
    return fit


def _size_multiple(network: Mapping[str, Any]) -> int:
    """What the network's input sides must be multiples of (never less than the core's 32)."""
    return max(SIZE_MULTIPLE, int(segmenter_method(dict(network)).size_multiple))


def _round_up(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def _augment(changes: Mapping[str, Any]) -> AugmentConfig:
    try:
        return replace(AugmentConfig(), **dict(changes))
    except TypeError:
        valid = ", ".join(f.name for f in fields(AugmentConfig))
        raise ConfigError(
            f"unknown augmentation setting(s) {', '.join(sorted(changes))}; valid: {valid}"
        ) from None


def _id_tag(network: dict[str, Any]) -> str:
    """The readable end of a model id: the method and its text settings (``unet-resnet18``)."""
    words = [str(network["arch"])]
    words += [str(v) for v in network["settings"].values() if isinstance(v, str)]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "-".join(words))[:48]


def _stats_dict(stats: EpochStats) -> dict[str, float]:
    return {"train_loss": stats.train_loss, "val_loss": stats.val_loss, **stats.scores}


@dataclass
class SegmentReport:
    """What an auto-segmentation pass did."""

    model_id: str
    engine: str
    device: str
    segmented: list[str] = field(default_factory=list)
    skipped_human: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    uncertainties: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    cancelled: bool = False
    #: Whether the 8 views were averaged.
    tta: bool = False
    #: Where the batches ran (see :attr:`cytoreview.workflows.executors.Executor.description`).
    driver: str = "this process"


def images_to_automask(
    project: Project, names: Sequence[str] | None = None
) -> tuple[list[Any], list[str]]:
    """The images an automatic mask may be written for, and those left alone.

    Every image (or the named ones) whose current mask is not a person's; the names of those
    with a person's mask (manual, corrected, approved) come second: they are never touched.
    """
    current = project.current_versions()
    wanted = set(names) if names is not None else None
    todo, human = [], []
    for image in project.images():
        if wanted is not None and image.name not in wanted:
            continue
        version = current.get(image.id)
        if version is not None and version.provenance.is_human:
            human.append(image.name)
        else:
            todo.append(image)
    return todo, human


@dataclass(frozen=True)
class AutoMaskSave:
    """What :func:`save_auto_mask` did: saved, or why not."""

    saved: bool
    #: One line naming the image when not saved.
    problem: str | None = None
    #: Not saved because a person's mask became current meanwhile (theirs wins).
    person_painted: bool = False


def save_auto_mask(
    project: Project,
    image: Any,
    mask: np.ndarray,
    *,
    actor: str,
    source_model: str,
    not_saved: str,
    uncertainty: float | None = None,
    note: str | None = None,
) -> AutoMaskSave:
    """Write an ``auto`` mask unless a person's mask is current (theirs wins).

    ``not_saved`` ends the problem line of an image whose catalog entry is damaged (a path
    that would lead outside the project is never written).
    """
    try:
        project.save_mask(
            image.id, mask, Provenance.AUTO, actor=actor, source_model=source_model,
            uncertainty=uncertainty, note=note,
        )  # fmt: skip
    except UnsafePathError as exc:  # a damaged catalog: never write outside the project
        return AutoMaskSave(False, f"{exc}; {not_saved}")
    except ProjectError as exc:  # a person painted it meanwhile: theirs wins
        return AutoMaskSave(False, str(exc), person_painted=True)
    return AutoMaskSave(True)


@dataclass(frozen=True)
class SegmenterChoice:
    """Which model a segmentation pass runs, decided in the process that owns the project.

    Attributes
    ----------
    model_id, spec
        The model and its input geometry.
    data
        What the workers get: the ONNX export (in the precision chosen) or, for the torch
        engine, the weights saved with ``torch.save``.
    job
        How each chunk runs (threads are set per executor, see
        :class:`~cytoreview.workflows.segment_worker.SegmentJob`).
    gpus
        GPUs on this machine the pass would use (0 on the CPU).
    """

    model_id: str
    spec: SegmenterSpec
    data: bytes
    job: SegmentJob
    gpus: int = 0

    def describe(self, threads: int | None) -> str:
        """Where it computes, in words, without building the model (for Dask workers)."""
        if self.gpus:
            return f"GPU ({self.job.engine}, one GPU per worker)"
        engine = "onnxruntime " + self.job.precision if self.job.engine == "onnx" else "torch"
        each = f"{threads} thread{'s' if threads != 1 else ''} per worker" if threads else ""
        return f"CPU ({engine}{', ' + each if each else ''})"


def choose_segmenter(
    project: Project,
    model_id: str | None,
    engine: str = "onnx",
    device: str = "auto",
    precision: str = "auto",
) -> SegmenterChoice:
    """The model a project's segmentation runs (the current one by default), not yet built.

    ``precision`` applies to ONNX Runtime on the CPU (see
    :func:`~cytoreview.workflows.precision.cpu_onnx_model`): ``auto`` runs the int8 variant
    when it passed the project's quality gate (built and measured on first use), ``fp32`` and
    ``int8`` force one. CUDA and the torch engine run fp32 as before.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    store = ModelStore(project)
    model_id = model_id or store.current_model(KIND)
    if model_id is None:
        raise NotEnoughDataError(
            f"{project.root}: no trained segmenter yet; run `cytoreview train-seg` first"
        )
    config, state = store.load(model_id)
    spec = SegmenterSpec.from_config(config)
    if engine == "torch":
        if precision == "int8":
            raise ConfigError("int8 runs on ONNX Runtime only; use --engine onnx")
        buffer = io.BytesIO()
        torch.save(state, buffer)
        cuda = pick_torch_device(device).type == "cuda"
        job = SegmentJob(spec, "torch", "cuda" if cuda else "cpu", "fp32", network=config)
        gpus = torch.cuda.device_count() if cuda else 0
        return SegmenterChoice(model_id, spec, buffer.getvalue(), job, gpus)
    if engine != "onnx":
        raise ConfigError(f"unknown engine {engine!r}; valid: onnx, torch")
    data = stored_onnx(store, model_id)
    if data is None:  # e.g. a cancelled run before its export, or a damaged one: export now
        model = build_segmenter(config)
        model.load_state_dict(state)
        data = export_onnx(model, spec.input_size)
        store.save_onnx(model_id, data)
    if "CUDAExecutionProvider" in onnx_providers(device):
        if precision == "int8":
            raise ConfigError("int8 is for the CPU; use --device cpu or --precision auto")
        job = SegmentJob(spec, "onnx", device, "fp32")
        return SegmenterChoice(model_id, spec, data, job, torch.cuda.device_count())
    data, chosen = cpu_onnx_model(project, store, model_id, data, spec, precision)
    return SegmenterChoice(model_id, spec, data, SegmentJob(spec, "onnx", "cpu", chosen))


def load_predictor(
    project: Project,
    model_id: str | None,
    engine: str = "onnx",
    device: str = "auto",
    precision: str = "auto",
) -> tuple[str, Any, SegmenterSpec]:
    """The predictor of a project's segmenter, built in this process.

    See :func:`choose_segmenter` for the model, engine and precision rules.
    """
    choice = choose_segmenter(project, model_id, engine, device, precision)
    return choice.model_id, build_predictor(choice.data, choice.job), choice.spec


def segment_project(
    project: Project,
    *,
    actor: str,
    model_id: str | None = None,
    engine: str = "onnx",
    device: str = "auto",
    precision: str = "auto",
    batch_size: int = 8,
    tta: bool | None = None,
    names: Sequence[str] | None = None,
    cancel: CancelToken | None = None,
    compute: ExecutorSpec | Executor | None = None,
) -> Generator[Progress, None, SegmentReport]:
    """Auto-mask every image without a human mask (or the named ones); yield per batch.

    ``tta`` None: average the 8 views for a crops model, not for a fields model (see
    :class:`cytoreview.defaults.SegRecipe`). ``compute`` says where the batches run: an
    :class:`~cytoreview.workflows.executors.ExecutorSpec` (this process or Dask workers, see
    :func:`~cytoreview.workflows.executors.open_executor`) or an open executor. The masks are
    the same wherever they run, and only this process writes the catalog.
    """
    choice = choose_segmenter(project, model_id, engine, device, precision)
    tta = SEG.tta_for(choice.spec.fields) if tta is None else tta
    todo, skipped_human = images_to_automask(project, names)
    refs, unsafe = [], []
    for image in todo:
        try:
            refs.append((image, project.image_ref(image)))
        except UnsafePathError as exc:  # a damaged catalog: never read outside the project
            where = image.stored_path or image.source_path
            unsafe.append(f"{ImageReadError(where, str(exc))}; not segmented")
    chunks = [refs[first : first + batch_size] for first in range(0, len(refs), batch_size)]
    start = time.perf_counter()
    ahead = COMPUTE.segment_chunks_ahead
    with using(compute, len(refs), gpus=choice.gpus, ahead=ahead) as executor:
        job = replace(choice.job, tta=tta, threads=executor.threads_per_task)
        model = executor.share(choice.data)
        if isinstance(executor, LocalExecutor):  # built here once; the chunks reuse it
            where = job_predictor(model, job).device
        else:
            where = choice.describe(executor.threads_per_task)
        report = SegmentReport(
            model_id=choice.model_id, engine=engine, device=where, tta=tta,
            skipped_human=skipped_human, driver=executor.description,
        )  # fmt: skip
        views = ", averaging 8 views" if tta else ""
        yield Progress(
            "segment", 0, len(todo),
            f"{len(todo)} image(s) to segment on {where}{views}; {executor.description}",
            device=where,
        )  # fmt: skip
        done = len(unsafe)
        report.problems += unsafe
        for message in unsafe:
            yield Progress("segment", done, len(todo), message, level="warning")
        work = partial(segment_chunk, job=job)
        chunk_refs = [[ref for _, ref in chunk] for chunk in chunks]
        for index, outcome in executor.map_unordered(work, chunk_refs, model, cancel=cancel):
            chunk = chunks[index]
            for _, message in outcome.problems:
                report.problems.append(message)
                yield Progress("segment", done, len(todo), message, level="warning")
            for position, mask, uncertainty in outcome.masks:
                image = chunk[position][0]
                saved = save_auto_mask(
                    project, image, mask, actor=actor, source_model=choice.model_id,
                    uncertainty=uncertainty, not_saved="not segmented",
                )  # fmt: skip
                if not saved.saved:
                    report.problems.append(saved.problem or "")
                    if saved.person_painted:
                        report.skipped_human.append(image.name)
                    else:
                        yield Progress("segment", done, len(todo), saved.problem, level="warning")
                    continue
                report.segmented.append(image.name)
                report.uncertainties[image.name] = uncertainty
            done += len(chunk)
            yield Progress("segment", done, len(todo), f"{done}/{len(todo)} segmented")
    report.cancelled = cancel is not None and cancel.cancelled and done < len(todo)
    report.seconds = time.perf_counter() - start
    return report


def with_request(request: SegTrainRequest, **changes: Any) -> SegTrainRequest:
    """A copy of ``request`` with some fields changed (for the CLI and the GUI)."""
    return replace(request, **changes)


@dataclass
class SegEvaluation:
    """Scores of the current masks against ground truth, overall and per provenance."""

    report: Any  # cytoreview.metrics.segmentation.SegmentationReport
    by_provenance: dict[str, Any]
    missing_truth: list[str]
    problems: list[str]


def evaluate_segmentation(
    project: Project,
    truth_dir: str | Path,
    *,
    ignore_dir: str | Path | None = None,
    provenance: Sequence[str] | None = None,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, SegEvaluation]:
    """Score the current mask of every image against ``<truth_dir>/<image name>.png``.

    Parameters
    ----------
    truth_dir
        Ground-truth label images (0/1/2) named like the images.
    ignore_dir
        Optional masks (non-zero = leave the pixel out of every score), e.g. Herlev's
        undetermined borders.
    provenance
        Only masks of these provenances (e.g. ``["auto"]`` to score what the model generated).
    """
    from cytoreview.metrics.segmentation import evaluate_masks

    truth_dir = Path(truth_dir)
    if not truth_dir.is_dir():
        raise ProjectError(f"{truth_dir}: ground-truth folder does not exist")
    wanted = {Provenance(p) for p in provenance} if provenance else None
    current = project.current_versions()
    images = [
        im for im in project.images()
        if im.id in current and (wanted is None or current[im.id].provenance in wanted)
    ]  # fmt: skip
    items: dict[str, list] = {}
    missing, problems = [], []
    for step, image in enumerate(images, start=1):
        if cancel is not None and cancel.cancelled:
            break
        try:
            found_truth = read_truth(image, truth_dir, ignore_dir)
        except InputFileError as exc:  # a bad truth or ignore file: named, the rest is scored
            # Only what a bad file raises: a bug (TypeError, IndexError...) must stop the run,
            # not pass for one more "problem" beside the scores.
            problems.append(str(exc))
            continue
        if found_truth is None:
            missing.append(image.name)
            continue
        truth, ignore = found_truth
        found = project.current_mask(image.id)
        if found is None:
            problems.append(f"{image.name}: mask versions are damaged; not scored")
            continue
        key = found[0].provenance.value
        items.setdefault(key, []).append((image.name, found[1], truth, ignore))
        if step % 20 == 0 or step == len(images):
            yield Progress("evaluate", step, len(images), f"{step}/{len(images)} scored")
    every = [item for group in items.values() for item in group]
    if not every:
        raise NotEnoughDataError(
            f"{truth_dir}: no ground-truth mask matches an image with a current mask "
            f"({len(missing)} without truth)"
        )
    return SegEvaluation(
        report=evaluate_masks(every),
        by_provenance={k: evaluate_masks(v) for k, v in sorted(items.items())},
        missing_truth=missing,
        problems=problems,
    )


def read_truth(
    image: Any, truth_dir: str | Path, ignore_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The ground-truth mask of ``image`` (and its ignore mask), None when there is none.

    Files are named like the image (any extension). Raises
    :class:`~cytoreview.errors.InputFileError` for an unreadable or mis-sized file.
    """
    from cytoreview.storage.images import read_ignore_mask, read_label_mask

    truth_path = _find_by_stem(Path(truth_dir), image.name)
    if truth_path is None:
        return None
    truth = read_label_mask(truth_path, expected_shape=(image.height, image.width))
    ignore = None
    if ignore_dir is not None:
        ignore_path = _find_by_stem(Path(ignore_dir), image.name)
        if ignore_path is not None:
            ignore = read_ignore_mask(ignore_path, (image.height, image.width))
    return truth, ignore


def _find_by_stem(folder: Path, stem: str) -> Path | None:
    try:
        name_component(stem)  # a damaged catalog's name must not reach outside ``folder``
    except UnsafePathError:
        return None
    for ext in (".png", ".tif", ".tiff", ".PNG", ".TIF"):
        candidate = folder / f"{stem}{ext}"
        if candidate.is_file():
            return candidate
    return None
