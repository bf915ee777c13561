"""Heatmaps of a classifier's calls: computing them, and which model's map may be shown.

The rule. A heatmap explains one model's call, so it is shown only beside that model: the
project's current classifier, or, in a project without one (predictions made elsewhere, or by a
model since removed), the model whose prediction of the image is shown. A stored map of any
other model (an older classifier) is never shown as current; the current model's is computed
instead. Every map carries its model id, method and date (:meth:`Heatmap.label`).

One path. :func:`get_or_compute_heatmap` reads the stored map of that model or computes one
with the quality checks of ``cytoreview explain`` (shares on nucleus / cytoplasm / background,
the pixel-flipping check) and stores it; the workbench calls it for one image, and
:func:`explain_project` (``cytoreview explain``) for every image, recomputing.

A classifier without a CAM layer (``cam_layer`` None, e.g. a method built on hand-crafted
features only) has no heatmap: :func:`heatmap_unavailable` says so in one sentence, which the
review shows, :func:`get_or_compute_heatmap` raises it as a
:class:`~cytoreview.workflows.cls_runtime.NoHeatmapError` and :func:`explain_project` reports
it instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cytoreview.choices import CAM_METHODS, EXPLAIN_FLIPPING_STEPS
from cytoreview.data.cls_dataset import make_input
from cytoreview.data.transforms import letterbox_geometry
from cytoreview.defaults import CLS
from cytoreview.errors import ImageReadError, NotEnoughDataError, ProjectError
from cytoreview.explain.cam import heatmap_to_image, upsample_heatmap
from cytoreview.explain.quality import (
    flipping_auc,
    heatmap_quality,
    pixel_flipping_curve,
    random_flipping_curve,
)
from cytoreview.inference.classify import mean_over_views
from cytoreview.models.classifiers import build_classifier
from cytoreview.morphometry.features import feature_matrix
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.predictions import PredictionStore
from cytoreview.storage.project import Project
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows.classification import (
    LoadedClassifier,
    current_classifier_id,
    load_classifier,
)
from cytoreview.workflows.cls_runtime import (
    DEFAULT_ENGINE,
    NoHeatmapError,
    check_engine,
    classifier_runtime,
    no_heatmap_text,
)

#: The method a heatmap is made with unless asked otherwise.
DEFAULT_METHOD = CAM_METHODS[0]


@dataclass(frozen=True)
class Heatmap:
    """A heatmap of one image and what made it."""

    image_id: int
    pixels: np.ndarray  # float32 in [0, 1], the image's shape
    model_id: str
    method: str
    target_class: str  # the class explained
    created_at: str  # ISO time (UTC) the map was made
    quality: dict[str, Any]
    computed: bool  # made by this call, not read from the store

    @property
    def looks_at_background(self) -> bool:
        """The quality check's flag: the map lies mostly outside the cell."""
        return bool(self.quality.get("looks_at_background"))

    def label(self) -> str:
        """One line naming the map's model and date, e.g. for the layer's status."""
        when = self.created_at[:16].replace("T", " ")
        text = f"{self.method} for {self.target_class}, model {self.model_id}, made {when} UTC"
        if self.quality.get("measurements_joined"):
            text += "; the class is the joint call of the network"
            opinions = (self.quality.get("network_confidence"),
                        self.quality.get("measurements_confidence"))  # fmt: skip
            if None not in opinions:
                text += f" ({100 * opinions[0]:.0f} %) and the measurements "
                text += f"({100 * opinions[1]:.0f} %)"
            else:
                text += " and the measurements"
            text += ", the map shows the network's evidence"
        if self.looks_at_background:
            text += "; looks mostly at the background: check the call"
        return text


def heatmap_model(project: Project, image_id: int) -> str | None:
    """The model whose heatmap may be shown for ``image_id`` (see the module's rule)."""
    current = current_classifier_id(project, "bethesda")
    if current is not None:
        return current
    pred = PredictionStore(project).latest_predictions("bethesda").get(int(image_id))
    return None if pred is None else pred.model_id


def can_compute(project: Project, model_id: str) -> bool:
    """Whether ``model_id`` is a model of this project that can explain an image now."""
    return ModelStore(project).has_checkpoint(model_id)


# (checkpoint path, mtime) -> the sentence, or None when the model has a CAM layer.
_NO_HEATMAP: dict[tuple[str, int], str | None] = {}


def heatmap_unavailable(project: Project, model_id: str) -> str | None:
    """Why ``model_id`` can give no heatmap (it has no CAM layer), or None when it can.

    Builds the network from its config once per checkpoint file (cached).
    """
    store = ModelStore(project)
    if not store.has_checkpoint(model_id):
        return None
    path = store.checkpoint_path(model_id)
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _NO_HEATMAP:
        config, _ = store.load(model_id)
        model = build_classifier(config)
        _NO_HEATMAP[key] = None
        if getattr(model, "cam_layer", None) is None:
            loaded = LoadedClassifier(model_id, str(config.get("task", "")), config, model,
                                      list(config.get("class_names", [])), 0, False)  # fmt: skip
            _NO_HEATMAP[key] = no_heatmap_text(loaded)
    return _NO_HEATMAP[key]


def stored_heatmap(
    project: Project, image_id: int, *, model_id: str | None = None, method: str = DEFAULT_METHOD
) -> Heatmap | None:
    """The stored map of ``image_id`` made by ``model_id`` (default: :func:`heatmap_model`).

    None when that model has none, or its file is missing, unreadable or of another shape:
    a map of another model is never returned in its place.
    """
    model_id = model_id or heatmap_model(project, image_id)
    if model_id is None:
        return None
    store = PredictionStore(project)
    found = store.heatmap_record(int(image_id), model_id=model_id, method=method)
    if found is None:
        return None
    pixels = store.load_heatmap(found)
    record = project.image(int(image_id))
    if pixels is None or pixels.shape != (record.height, record.width):
        return None
    return Heatmap(record.id, pixels, found.model_id, found.method, found.target_class,
                   found.created_at, dict(found.quality), computed=False)  # fmt: skip


def get_or_compute_heatmap(
    project: Project,
    image_id: int,
    *,
    model_id: str | None = None,
    loaded: LoadedClassifier | None = None,
    method: str = DEFAULT_METHOD,
    flipping_steps: int = EXPLAIN_FLIPPING_STEPS,
    device: str = "auto",
    engine: str = DEFAULT_ENGINE,
    recompute: bool = False,
    tta: bool = CLS.tta,
) -> Heatmap:
    """The heatmap of ``image_id`` by the model in use: stored, else computed, checked, stored.

    Parameters
    ----------
    project
        The open project.
    image_id
        The image.
    model_id
        The model to explain with (default: :func:`heatmap_model`).
    loaded
        That model already loaded (a batch loads it once).
    method, flipping_steps, device, engine
        As for :func:`explain_image`; the defaults are ``cytoreview explain``'s.
    recompute
        Compute even when a map of this model is stored (``cytoreview explain`` does).
    tta
        As for :func:`explain_image`.

    Raises
    ------
    ProjectError
        If the project has no classifier to explain with.
    NotEnoughDataError
        If the model needs a mask and the image has none.
    NoHeatmapError
        If the model has no CAM layer (the message is the sentence the review shows).
    """
    if loaded is not None:
        model_id = loaded.model_id
    model_id = model_id or heatmap_model(project, image_id)
    if model_id is None:
        raise ProjectError(
            f"{project.root}: no classifier to explain with; train one (`cytoreview train-cls`)"
        )
    if not recompute:
        stored = stored_heatmap(project, image_id, model_id=model_id, method=method)
        if stored is not None:
            return stored
    if loaded is None:
        loaded = load_classifier(project, model_id, engine=check_engine(engine))
    if getattr(loaded.model, "cam_layer", None) is None:
        raise NoHeatmapError(no_heatmap_text(loaded))
    record = project.image(int(image_id))
    found = project.current_mask(record.id)
    if found is None and loaded.uses_mask:
        raise NotEnoughDataError(f"{record.name}: no mask yet (run `cytoreview segment`)")
    image = project.load_image(record).rgb
    pixels, cls, quality = explain_image(
        loaded, image, None if found is None else found[1], method=method,
        flipping_steps=flipping_steps, device=device, engine=engine, tta=tta,
    )  # fmt: skip
    saved = PredictionStore(project).save_heatmap(
        record.id, loaded.model_id, method, loaded.class_names[cls], pixels, quality
    )
    return Heatmap(record.id, pixels.astype(np.float32), loaded.model_id, method,
                   saved.target_class, saved.created_at, quality, computed=True)  # fmt: skip


# -- explaining ---------------------------------------------------------------------------------
@dataclass
class ExplainReport:
    """What an explanation pass did."""

    model_id: str
    method: str
    engine: str = DEFAULT_ENGINE
    device: str = ""  # where it ran, in words
    closed_form: bool = False  # heatmaps without autograd (ONNX engine, closed-form head)
    explained: int = 0
    skipped: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)  # images whose heatmap is on background
    seconds_per_image: float = 0.0
    cancelled: bool = False


def explain_image(
    loaded: LoadedClassifier,
    image: np.ndarray,
    mask: np.ndarray | None,
    *,
    method: str = "gradcam++",
    target: int | None = None,
    flipping_steps: int = 10,
    device: str = "auto",
    engine: str = DEFAULT_ENGINE,
    tta: bool = CLS.tta,
) -> tuple[np.ndarray, int, dict[str, Any]]:
    """Heatmap of one image at its own size, the class explained and the quality figures.

    Parameters
    ----------
    loaded
        The classifier.
    image, mask
        RGB crop and its label mask (None for image-only models; then no region shares).
    method
        ``gradcam++`` or ``gradcam``.
    target
        Class index to explain; None explains the predicted class.
    flipping_steps
        Steps of the pixel-flipping curve (0 skips it: one forward pass per step is saved).
    device
        ``auto``, ``cpu`` or ``cuda``.
    engine
        ``onnx`` (one ONNX Runtime pass gives the probabilities and, for the usual heads, the
        map in closed form) or ``torch`` (eager with autograd: the reference).
    tta
        The class explained (when ``target`` is None) and the confidence come from the mean
        of the 8 rotations and mirror images, as ``classify`` computes them; the map is of
        the image as it is, and the pixel-flipping check flips that view.
    """
    runtime = classifier_runtime(loaded, engine, device)
    x = make_input(image, mask, loaded.input_size)
    measured = None
    if loaded.measurements is not None and mask is not None:
        features = feature_matrix([image], [mask], loaded.measurements.features)
        measured = loaded.measurements.probs(features)
    probs_batch, cams, targets = runtime.explain(
        x[None], target, method, tta=tta, measured=measured
    )
    probs, cam, cls = probs_batch[0], cams[0], int(targets[0])
    box = letterbox_geometry(image.shape[:2], loaded.input_size)
    heatmap = heatmap_to_image(cam, box)
    auc = random_auc = None
    if flipping_steps:
        predict = runtime.probs
        at_input = upsample_heatmap(cam, loaded.input_size)
        auc = flipping_auc(*pixel_flipping_curve(predict, x, at_input, cls, flipping_steps))
        random_auc = flipping_auc(
            *random_flipping_curve(predict, x, cls, flipping_steps, repeats=1)
        )
    quality = heatmap_quality(
        heatmap,
        mask if mask is not None else np.zeros(heatmap.shape, np.uint8),
        flipping_auc=auc,
        random_flipping_auc=random_auc,
    ).to_dict()
    if mask is None:
        quality["shares"], quality["looks_at_background"] = {}, False
    quality["confidence"] = float(probs[cls])
    quality["measurements_joined"] = measured is not None
    if measured is not None:
        # Each opinion's confidence in the class explained, so that the person sees which one
        # carries the call (one more forward pass of the network, for one image).
        network = mean_over_views(runtime.probs) if tta else runtime.probs
        quality["network_confidence"] = float(network(x[None])[0, cls])
        quality["measurements_confidence"] = float(measured[0, cls])
    return heatmap, cls, quality


def explain_project(
    project: Project,
    *,
    method: str = DEFAULT_METHOD,
    model_id: str | None = None,
    image_ids: Sequence[int] | None = None,
    flipping_steps: int = EXPLAIN_FLIPPING_STEPS,
    device: str = "auto",
    engine: str = DEFAULT_ENGINE,
    cancel: CancelToken | None = None,
    tta: bool = CLS.tta,
) -> Generator[Progress, None, ExplainReport]:
    """Compute, score and store a heatmap for the predicted class of every image.

    Each image goes through :func:`get_or_compute_heatmap` (recomputing), the path the
    workbench takes for one image; ``tta`` as for :func:`explain_image`. ``engine``: ``onnx``
    (default) or ``torch`` (the reference),
    as for :func:`explain_image`.
    """
    loaded = load_classifier(project, model_id, engine=check_engine(engine))
    runtime = classifier_runtime(loaded, engine, device)
    report = ExplainReport(
        model_id=loaded.model_id, method=method, engine=engine, device=runtime.device,
        closed_form=runtime.closed_form,
    )  # fmt: skip
    if getattr(loaded.model, "cam_layer", None) is None:
        report.skipped.append(no_heatmap_text(loaded))
        yield Progress("explain", 0, 0, report.skipped[-1], level="warning")
        return report
    records = project.images()
    if image_ids is not None:
        wanted = set(image_ids)
        records = [r for r in records if r.id in wanted]
    started = time.perf_counter()
    for step, record in enumerate(records, start=1):
        if cancel is not None and cancel.cancelled:
            report.cancelled = True
            break
        try:
            heatmap = get_or_compute_heatmap(
                project, record.id, loaded=loaded, method=method, flipping_steps=flipping_steps,
                device=device, engine=engine, recompute=True, tta=tta,
            )  # fmt: skip
        except NotEnoughDataError as exc:
            report.skipped.append(str(exc))
            yield Progress("explain", step, len(records), report.skipped[-1], level="warning")
            continue
        except ImageReadError as exc:  # a missing or damaged image: named, the others go on
            report.skipped.append(f"{exc}; not explained")
            yield Progress("explain", step, len(records), report.skipped[-1], level="warning")
            continue
        report.explained += 1
        if heatmap.looks_at_background:
            report.flagged.append(record.name)
        yield Progress("explain", step, len(records), f"{record.name}: {heatmap.target_class}")
    report.seconds_per_image = (time.perf_counter() - started) / max(report.explained, 1)
    return report
