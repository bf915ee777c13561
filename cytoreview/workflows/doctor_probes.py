"""The facts ``cytoreview doctor`` gathers: what is installed and what really runs here.

Each probe returns a small frozen dataclass and judges nothing (:mod:`cytoreview.workflows.doctor`
does, in pure functions the tests feed with made-up facts). Probes catch what they look for (an
import that fails, a kernel that does not run) and report it as a fact; the heavy libraries are
imported inside the probes, never when this module loads, so ``cytoreview --help`` stays fast.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import cytoreview
from cytoreview.settings import SCHEDULER_ENV
from cytoreview.storage.health import normal_name, read_constraints

#: The distributions whose versions matter most for a working install (the rest follow them).
KEY_PACKAGES = (
    "numpy",
    "torch",
    "torchvision",
    "segmentation-models-pytorch",
    "timm",
    "onnxruntime-gpu",
    "onnxruntime",
    "opencv-python-headless",
    "scikit-image",
    "tifffile",
    "zarr",
    "dask",
    "distributed",
    "napari",
    "PySide6-Essentials",
)
#: Every distribution that installs the ``onnxruntime`` module: two of them overwrite each
#: other's files, and which one wins depends on the order pip ran in.
ORT_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
)
#: Longest wait for the Qt/OpenGL probe: a display that does not answer must not hang doctor.
QT_PROBE_TIMEOUT_S = 30.0
#: Longest wait for the Dask scheduler in $CYTOREVIEW_SCHEDULER (and for its first worker).
SCHEDULER_TIMEOUT_S = 5.0


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@dataclass(frozen=True)
class PythonFacts:
    """The interpreter and what CytoReview's metadata asks of it."""

    version: tuple[int, int, int]
    executable: str
    #: ``Requires-Python`` of the installed cytoreview (None: run from a source folder).
    requires: str | None
    cytoreview: str


def python_facts() -> PythonFacts:
    """The running interpreter."""
    try:
        requires = metadata.metadata("cytoreview").get("Requires-Python")
    except metadata.PackageNotFoundError:
        requires = None
    v = sys.version_info
    return PythonFacts(
        (v.major, v.minor, v.micro), sys.executable, requires, cytoreview.__version__
    )


@dataclass(frozen=True)
class PackageFact:
    """One key distribution: installed version, the range cytoreview asks for, the tested pin."""

    name: str
    installed: str | None
    #: The version specifier of cytoreview's requirement ("" when it has none for this platform).
    required: str
    #: The version in installer/constraints.txt (None without a source folder or pin).
    tested: str | None


def package_facts() -> list[PackageFact]:
    """The key distributions that cytoreview requires on this platform."""
    from packaging.requirements import Requirement

    try:
        requirements = metadata.requires("cytoreview") or []
    except metadata.PackageNotFoundError:
        requirements = []
    wanted: dict[str, str] = {}
    for line in requirements:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            wanted[normal_name(req.name)] = str(req.specifier)
    # A source checkout has the tested pins; an installed wheel has no installer/ folder.
    pins = read_constraints(Path(cytoreview.__file__).parents[1] / "installer" / "constraints.txt")
    out = []
    for name in KEY_PACKAGES:
        key = normal_name(name)
        if wanted and key not in wanted:
            continue  # e.g. onnxruntime-gpu on macOS, onnxruntime elsewhere
        out.append(PackageFact(name, _version(name), wanted.get(key, ""), (pins or {}).get(key)))
    return out


@dataclass(frozen=True)
class TorchFacts:
    """torch, its CUDA build and what a tiny kernel does on each device."""

    version: str | None
    import_error: str | None = None
    #: The CUDA version torch was built for (None: a CPU-only build).
    cuda_build: str | None = None
    cuda_available: bool = False
    #: (name, total memory in bytes) per visible GPU.
    gpus: tuple[tuple[str, int], ...] = ()
    #: None when the test kernel (an add and a 3x3 convolution) gave the right answer.
    cpu_error: str | None = None
    gpu_error: str | None = None
    #: An NVIDIA driver is installed (``nvidia-smi`` on the PATH) whether or not torch sees it.
    nvidia_driver: bool = False


def _kernel(device: str) -> str | None:
    """Run an add and a convolution (cuDNN on a GPU) on ``device``; None when both are right."""
    import torch as t

    try:
        x = t.ones(1, 1, 8, 8, device=device)
        conv = t.nn.functional.conv2d(x, t.ones(1, 1, 3, 3, device=device))
        total = float((x * 2).sum().item())
        centre = float(conv[0, 0, 3, 3].item())
        if device != "cpu":
            t.cuda.synchronize()
    except Exception as exc:  # noqa: BLE001 - any failure is the answer
        return _reason(exc)
    if total != 128.0 or centre != 9.0:
        return f"wrong result ({total:g}, {centre:g} instead of 128, 9)"
    return None


def torch_facts() -> TorchFacts:
    """Import torch and run a tiny kernel on the CPU and on the first GPU."""
    driver = shutil.which("nvidia-smi") is not None
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - a broken install raises anything
        return TorchFacts(None, _reason(exc), nvidia_driver=driver)
    available = bool(torch.cuda.is_available())
    gpus: tuple[tuple[str, int], ...] = ()
    gpu_error = None
    if available:
        try:
            gpus = tuple(
                (
                    torch.cuda.get_device_name(i),
                    int(torch.cuda.get_device_properties(i).total_memory),
                )
                for i in range(torch.cuda.device_count())
            )
        except Exception as exc:  # noqa: BLE001
            gpu_error = _reason(exc)
        gpu_error = gpu_error or _kernel("cuda:0")
    return TorchFacts(
        torch.__version__,
        None,
        torch.version.cuda,
        available,
        gpus,
        _kernel("cpu"),
        gpu_error,
        driver,
    )


@dataclass(frozen=True)
class OrtFacts:
    """ONNX Runtime: which distributions installed it, its providers, and whether CUDA works."""

    version: str | None
    import_error: str | None = None
    providers: tuple[str, ...] = ()
    #: Installed distributions that provide the ``onnxruntime`` module, with versions.
    distributions: dict[str, str] = field(default_factory=dict)
    #: torch sees a GPU (ONNX Runtime should then use it too).
    gpu: bool = False
    #: A probe session really got the CUDA provider (None: not tried, no GPU).
    cuda_works: bool | None = None


def ort_facts() -> OrtFacts:
    """Import onnxruntime; with a GPU, open a one-node session on its CUDA provider."""
    dists = {d: v for d in ORT_DISTRIBUTIONS if (v := _version(d)) is not None}
    try:
        import onnxruntime as ort
    except Exception as exc:  # noqa: BLE001
        return OrtFacts(None, _reason(exc), distributions=dists)
    providers = tuple(ort.get_available_providers())
    cuda_works = None
    gpu = False
    try:
        import torch

        gpu = bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - the torch check says why
        gpu = False
    if gpu and "CUDAExecutionProvider" in providers:
        from cytoreview.inference import onnx_export

        # Its warning would repeat what the verdict says, on a line of its own.
        quiet = logging.getLogger(onnx_export.__name__)
        level, quiet.level = quiet.level, logging.ERROR
        try:
            cuda_works = onnx_export.onnx_gpu_available()
        finally:
            quiet.setLevel(level)
    return OrtFacts(ort.__version__, None, providers, dists, gpu, cuda_works)


@dataclass(frozen=True)
class QtFacts:
    """Qt and OpenGL as napari would find them, probed in a child process."""

    #: $DISPLAY or $WAYLAND_DISPLAY on Linux ("" when neither is set; None on other systems).
    display: str | None
    platform: str | None = None
    gl_version: str | None = None
    gl_renderer: str | None = None
    #: Why Qt or OpenGL did not start (a crash, a timeout, no context).
    error: str | None = None
    timed_out: bool = False


# Run by a child interpreter: a missing display makes Qt abort the process (not raise), and a
# display that does not answer can block; the parent survives both.
_QT_SCRIPT = r"""
import json, sys
out = {}
from qtpy.QtWidgets import QApplication
from qtpy.QtGui import QOffscreenSurface, QOpenGLContext
app = QApplication.instance() or QApplication(["cytoreview-doctor"])
out["platform"] = app.platformName()
ctx = QOpenGLContext()
if not ctx.create():
    out["error"] = "no OpenGL context could be created"
else:
    surface = QOffscreenSurface()
    surface.setFormat(ctx.format())
    surface.create()
    if not ctx.makeCurrent(surface):
        out["error"] = "an OpenGL context was created but could not be made current"
    else:
        gl = ctx.functions()
        out["gl_version"] = str(gl.glGetString(0x1F02))  # GL_VERSION
        out["gl_renderer"] = str(gl.glGetString(0x1F01))  # GL_RENDERER
        ctx.doneCurrent()
print("CYTOREVIEW-DOCTOR " + json.dumps(out))
"""


def qt_facts(timeout_s: float = QT_PROBE_TIMEOUT_S) -> QtFacts:
    """Start a QApplication and an OpenGL context in a child process (``timeout_s`` at most)."""
    display = None
    if sys.platform.startswith("linux"):
        display = os.environ.get("WAYLAND_DISPLAY") or os.environ.get("DISPLAY") or ""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _QT_SCRIPT], capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return QtFacts(display, error=f"Qt did not start within {timeout_s:g} s", timed_out=True)
    except OSError as exc:
        return QtFacts(display, error=_reason(exc))
    for line in done.stdout.splitlines():
        if line.startswith("CYTOREVIEW-DOCTOR "):
            got = json.loads(line.split(" ", 1)[1])
            return QtFacts(
                display,
                got.get("platform"),
                got.get("gl_version"),
                got.get("gl_renderer"),
                got.get("error"),
            )
    # Qt's own last words (e.g. 'could not connect to display', 'Could not load the Qt
    # platform plugin "xcb"'), else the exit status.
    lines = [s.strip() for s in done.stderr.splitlines() if s.strip()]
    said = next((s for s in lines if "qt.qpa" in s or "platform plugin" in s), None)
    said = said or (lines[-1] if lines else f"exit status {done.returncode}")
    return QtFacts(display, error=f"Qt could not start ({said[:200]})")


@dataclass(frozen=True)
class DaskFacts:
    """Dask distributed, and the scheduler named by $CYTOREVIEW_SCHEDULER if any."""

    version: str | None
    import_error: str | None = None
    #: The scheduler address in the environment ("" when unset).
    scheduler: str = ""
    #: None when the scheduler answered with at least one worker; else the one-line reason.
    scheduler_error: str | None = None
    workers: int = 0


def dask_facts(environ: dict[str, str] | None = None) -> DaskFacts:
    """Import distributed; connect to $CYTOREVIEW_SCHEDULER when it is set."""
    env = os.environ if environ is None else environ
    address = env.get(SCHEDULER_ENV, "").strip()
    try:
        import distributed
    except Exception as exc:  # noqa: BLE001
        return DaskFacts(None, _reason(exc), address)
    if not address:
        return DaskFacts(distributed.__version__)
    from cytoreview.errors import SchedulerError
    from cytoreview.workflows.executors import DaskExecutor

    full = address if "://" in address else f"tcp://{address}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            executor = DaskExecutor.connect(full, timeout_s=SCHEDULER_TIMEOUT_S)
    except SchedulerError as exc:
        return DaskFacts(distributed.__version__, None, address, str(exc))
    try:
        workers = executor.workers
    finally:
        executor.close()
    return DaskFacts(distributed.__version__, None, address, None, workers)
