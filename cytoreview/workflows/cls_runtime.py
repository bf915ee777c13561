"""Running a loaded classifier: class probabilities and heatmaps, through ONNX Runtime or torch.

``onnx`` (the default) runs the model's ONNX export in ONNX Runtime; one forward pass gives
the probabilities and, for the usual models (a ResNet-like backbone whose last stage is the
CAM layer, then pooling and a linear or ``Linear, ReLU, Dropout, Linear`` head), the
Grad-CAM++ map too, from the head's weights in closed form
(:mod:`cytoreview.explain.cam_closed_form`). Other models get their maps from torch autograd
(:func:`~cytoreview.explain.cam.class_activation_maps`), targeting the class ONNX predicted.

``torch`` runs the checkpoint in torch eager with autograd for the maps: the reference the ONNX
engine is tested against (same arg-max; probabilities and maps within a few 1e-6). A classifier
whose method has no ONNX export (``LoadedClassifier.onnx_exportable`` False) runs in torch
whatever engine is asked for, and its device text says so.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch

from cytoreview.errors import ConfigError, CytoReviewError
from cytoreview.explain.cam import class_activation_maps
from cytoreview.explain.cam_closed_form import CamHead, cam_head_of, closed_form_cams
from cytoreview.inference.classify import export_classifier_onnx, mean_over_views
from cytoreview.inference.cls_session import ClassifierSession
from cytoreview.inference.views import mean_of_views, stack_views
from cytoreview.models.devices import pick_torch_device
from cytoreview.models.measurement_model import combine_probs
from cytoreview.workflows.classification import NO_ONNX, LoadedClassifier

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "ClassifierRuntime",
    "NoHeatmapError",
    "classifier_runtime",
    "no_heatmap_text",
]

#: Inference engines of classify / explain: ONNX Runtime (default) or torch eager (reference).
ENGINES: tuple[str, ...] = ("onnx", "torch")
DEFAULT_ENGINE = "onnx"


class NoHeatmapError(CytoReviewError):
    """The classifier has no CAM layer (``cam_layer`` None): it cannot give a heatmap."""


def check_engine(engine: str) -> str:
    """Return ``engine`` if known, else raise a ConfigError naming the valid ones."""
    if engine not in ENGINES:
        raise ConfigError(f"unknown engine {engine!r}; valid: {', '.join(ENGINES)}")
    return engine


class ClassifierRuntime:
    """One classifier ready to classify and explain batches of ``(N, 6, S, S)`` inputs.

    Parameters
    ----------
    loaded
        The classifier (its torch model; for ``onnx`` also its export, made in memory from the
        torch model when the loaded one has none).
    engine
        ``"onnx"`` or ``"torch"``.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    threads
        ONNX Runtime intra-op threads (default: see
        :func:`~cytoreview.inference.cls_session.default_threads`).
    spinning
        Let ONNX Runtime's idle threads spin-wait (off by default: see
        :mod:`cytoreview.inference.cls_session`).

    Attributes
    ----------
    device
        Where it runs, in words (e.g. ``"CPU (onnxruntime, 2 threads)"``).
    closed_form
        Whether heatmaps come without autograd (ONNX engine and a closed-form head).
    """

    def __init__(
        self,
        loaded: LoadedClassifier,
        engine: str = DEFAULT_ENGINE,
        device: str = "auto",
        threads: int | None = None,
        spinning: bool = False,
    ) -> None:
        self.loaded = loaded
        self.engine = check_engine(engine)
        fallback = engine == "onnx" and not loaded.onnx_exportable
        if fallback:
            engine = self.engine = "torch"
        self.session: ClassifierSession | None = None
        self.cam_head: CamHead | None = None
        self._device_name = device
        self._torch_device = pick_torch_device(device) if engine == "torch" else None
        if engine == "onnx":
            data = loaded.onnx_bytes
            if data is None:  # loaded for the torch engine: export now, in memory
                data = export_classifier_onnx(loaded.model, loaded.input_size)
            self.session = ClassifierSession(data, device, threads, spinning)
            self.cam_head = cam_head_of(loaded.model) if self.session.has_cam else None
            self.device = self.session.device
        else:
            assert self._torch_device is not None
            loaded.model.to(self._torch_device).eval()
            if self._torch_device.type == "cuda":
                self.device = f"{torch.cuda.get_device_name(self._torch_device)} (torch CUDA)"
            else:
                self.device = f"CPU (torch, {torch.get_num_threads()} threads)"
            if fallback:
                self.device = self.device[:-1] + f"; {NO_ONNX})"
        self.closed_form = self.cam_head is not None

    # -- probabilities ---------------------------------------------------------------------
    def probs(self, batch: np.ndarray) -> np.ndarray:
        """``(N, K)`` float32 probabilities of a ``(N, 6, S, S)`` float32 batch."""
        if self.session is not None:
            return self.session(batch)
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self._torch_device)
        with torch.inference_mode():
            logits = self.loaded.model(x)
        return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def predictor(self) -> torch.nn.Module | ClassifierSession:
        """What :func:`~cytoreview.inference.classify.predict_class_probs` should run."""
        return self.session if self.session is not None else self.loaded.model

    # -- heatmaps --------------------------------------------------------------------------
    def explain(
        self,
        batch: np.ndarray,
        target: int | Sequence[int] | None = None,
        method: str = "gradcam++",
        tta: bool = False,
        measured: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Probabilities and CAM-layer-resolution heatmaps of a batch.

        Parameters
        ----------
        batch
            ``(N, 6, S, S)`` float32 inputs.
        target
            One class for all, one per image, or None for each image's predicted class.
        method
            ``"gradcam++"`` or ``"gradcam"``.
        tta
            The probabilities (and so the class explained when ``target`` is None) are the
            mean over the 8 rotations and mirror images, as ``classify`` computes them; the
            map is always of the image as it is (the first view).
        measured
            ``(N, K)`` probabilities of the classifier's measurement model, joined to the
            network's (:func:`~cytoreview.models.measurement_model.combine_probs`) as
            ``classify`` joins them; the map is the network's, for the class so chosen.

        Returns
        -------
        probs, cams, targets
            ``(N, K)`` float32 probabilities, ``(N, h, w)`` float32 maps in [0, 1] and the
            ``N`` classes explained.
        """
        n = len(batch)
        if getattr(self.loaded.model, "cam_layer", None) is None:
            raise NoHeatmapError(no_heatmap_text(self.loaded))
        if self.cam_head is not None and self.session is not None:
            # One pass over every view; the first n rows are the images as they are.
            fwd = self.session.run_with_cam(stack_views(batch) if tta else batch)
            probs = mean_of_views(fwd.probs, n) if tta else fwd.probs
            if measured is not None:
                probs = combine_probs(probs, measured)
            targets = _targets(target, probs, n)
            hidden = None if fwd.hidden is None else fwd.hidden[:n]
            cams = closed_form_cams(self.cam_head, fwd.features[:n], hidden, targets, method)
            return probs, cams, targets
        probs = mean_over_views(self.probs)(batch) if tta else self.probs(batch)
        if measured is not None:
            probs = combine_probs(probs, measured)
        targets = _targets(target, probs, n)
        model = self.loaded.model
        if self.session is not None:  # ONNX engine, but a head without a closed form
            model.to(pick_torch_device(self._device_name)).eval()
        cams = class_activation_maps(model, model.cam_layer, batch, targets.tolist(), method)
        return probs, cams, targets


def no_heatmap_text(loaded: LoadedClassifier) -> str:
    """The sentence the review shows for a classifier without a CAM layer."""
    arch = loaded.config.get("arch", "?")
    return (
        f"this classifier ({arch}, model {loaded.model_id}) has no heatmap: none of its parts "
        "is a convolutional network Grad-CAM++ could explain"
    )


def _targets(target: int | Sequence[int] | None, probs: np.ndarray, n: int) -> np.ndarray:
    k = probs.shape[1]
    if target is None:
        out = probs.argmax(axis=1)
    elif isinstance(target, int | np.integer):
        out = np.full(n, int(target))
    else:
        out = np.asarray([int(t) for t in target])
        if out.size != n:
            raise ValueError(f"got {out.size} targets for a batch of {n} images")
    if out.size and (out.min() < 0 or out.max() >= k):
        raise ValueError(f"target classes {out.tolist()} out of range for {k} classes")
    return out.astype(np.intp)


# ONNX runtimes of recently loaded model files, shared between loads of the same file: the
# review window loads the classifier for every heatmap it computes, and a session (~0.2 s for
# a fusion model) plus the head check would otherwise be paid each time. Two entries: the
# Bethesda and the binary model.
_SHARED: OrderedDict[tuple[tuple[str, int, int], str], ClassifierRuntime] = OrderedDict()
_SHARED_MAX = 2
_SHARED_LOCK = threading.Lock()


def classifier_runtime(
    loaded: LoadedClassifier, engine: str = DEFAULT_ENGINE, device: str = "auto"
) -> ClassifierRuntime:
    """The runtime of ``loaded`` for an engine and device, made once and kept on ``loaded``.

    An ONNX runtime is also shared with later loads of the same, unchanged ONNX file
    (``loaded.onnx_key``): its session and head weights come from identical bytes.
    """
    key = (check_engine(engine), device)
    runtime = loaded.runtimes.get(key)
    if runtime is not None:
        assert isinstance(runtime, ClassifierRuntime)
        return runtime
    shared_key = (loaded.onnx_key, device) if engine == "onnx" and loaded.onnx_key else None
    if shared_key is not None:
        with _SHARED_LOCK:
            runtime = _SHARED.get(shared_key)
            if runtime is not None:
                _SHARED.move_to_end(shared_key)
    if runtime is None:
        runtime = ClassifierRuntime(loaded, engine, device)
        if shared_key is not None:
            with _SHARED_LOCK:
                _SHARED[shared_key] = runtime
                while len(_SHARED) > _SHARED_MAX:
                    _SHARED.popitem(last=False)
    loaded.runtimes[key] = runtime
    return runtime
