"""The verdicts of ``cytoreview doctor``: facts in, lines out, nothing probed here.

Each judge takes what a probe found (:mod:`cytoreview.workflows.doctor_probes`,
:mod:`cytoreview.storage.health`) and returns the report's lines, so the tests can feed every
path with made-up facts.

Rules of the verdicts, in one place:

- FAIL only for what breaks a use of the program here: a package missing or outside the
  range cytoreview asks for, torch or ONNX Runtime that does not import, a kernel giving a
  wrong answer, two ONNX Runtime builds overwriting each other, Qt or OpenGL failing where a
  display exists, a project folder that cannot be written or is nearly full, a catalog that
  cannot be opened for writing, a plugin that did not load, an unreachable scheduler that the
  environment names.
- WARN for a working but lesser setup: no usable GPU, software OpenGL, no display (the command
  line works; the window does not), a version other than the tested one, a catalog locked by
  another process right now, little free disk.
- Exit status: 1 if any line is FAIL, else 0 (WARN alone is 0).
"""

from __future__ import annotations

from dataclasses import dataclass

from packaging.specifiers import SpecifierSet

from cytoreview.plugin_api.discovery import PluginCatalog
from cytoreview.settings import SCHEDULER_ENV
from cytoreview.storage.health import CatalogFacts, FolderFacts
from cytoreview.workflows.doctor_probes import (
    DaskFacts,
    OrtFacts,
    PackageFact,
    PythonFacts,
    QtFacts,
    TorchFacts,
)

OK, WARN, FAIL = "OK", "WARN", "FAIL"
_RANK = {OK: 0, WARN: 1, FAIL: 2}
#: Free space below which a project folder fails (a training run alone writes ~60 MB per
#: checkpoint; a copied slide is gigabytes) and below which it warns.
FAIL_FREE_BYTES = 1 << 30
WARN_FREE_BYTES = 5 << 30
_GIB = float(1 << 30)
#: Renderers of software OpenGL (Mesa's llvmpipe/softpipe, Google's SwiftShader, Windows' GDI).
_SOFTWARE_GL = ("llvmpipe", "softpipe", "swiftshader", "gdi generic", "software rasterizer")


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: str
    detail: str
    #: What to do, for WARN and FAIL ("" when nothing is to be done).
    fix: str = ""


def judge_python(f: PythonFacts) -> list[Check]:
    """The interpreter against cytoreview's Requires-Python."""
    version = ".".join(map(str, f.version))
    detail = f"Python {version} ({f.executable}), cytoreview {f.cytoreview}"
    if f.requires is None:
        return [
            Check(
                "python",
                WARN,
                detail + "; cytoreview is not installed as a package",
                "pip install -e . in the source folder (or install the wheel)",
            )
        ]
    if version not in SpecifierSet(f.requires):
        return [
            Check(
                "python",
                FAIL,
                f"{detail}; cytoreview needs Python {f.requires}",
                f"create the environment with a Python {f.requires}",
            )
        ]
    return [Check("python", OK, detail)]


def judge_packages(facts: list[PackageFact]) -> list[Check]:
    """Missing or out-of-range packages fail; versions other than the tested ones warn."""
    out, fine = [], []
    for p in facts:
        want = f"{p.name}{p.required}"
        if p.installed is None:
            out.append(
                Check("packages", FAIL, f"{p.name} is not installed", f"pip install '{want}'")
            )
        elif p.required and p.installed not in SpecifierSet(p.required, prereleases=True):
            out.append(
                Check(
                    "packages",
                    FAIL,
                    f"{p.name} {p.installed}: cytoreview needs {want}",
                    f"pip install '{want}'",
                )
            )
        elif p.tested and p.installed not in SpecifierSet(f"=={p.tested}", prereleases=True):
            out.append(
                Check(
                    "packages",
                    WARN,
                    f"{p.name} {p.installed}: tested with {p.tested}",
                    f"if something fails, pip install '{p.name}=={p.tested}' "
                    "(installer/constraints.txt has every tested version)",
                )
            )
        else:
            fine.append(f"{p.name} {p.installed}")
    if fine:
        tested = "as tested" if any(p.tested for p in facts) else "in range"
        out.insert(0, Check("packages", OK, f"{tested}: " + ", ".join(fine)))
    return out


def judge_torch(f: TorchFacts) -> list[Check]:
    """Whether torch imports, computes right on the CPU, and on the GPU when there is one."""
    if f.version is None:
        return [
            Check(
                "torch",
                FAIL,
                f"torch does not import ({f.import_error})",
                "reinstall it: pip install --force-reinstall torch torchvision "
                "(or rerun installer/setup.sh)",
            )
        ]
    out = []
    if f.cpu_error:
        out.append(
            Check(
                "torch",
                FAIL,
                f"torch {f.version}: a CPU test kernel failed ({f.cpu_error})",
                "reinstall torch (pip install --force-reinstall torch)",
            )
        )
    else:
        out.append(Check("torch", OK, f"torch {f.version}: a CPU test kernel ran"))
    gpus = ", ".join(f"{name} ({mem / _GIB:.1f} GiB)" for name, mem in f.gpus)
    if f.cuda_available and f.gpu_error:
        out.append(
            Check(
                "cuda",
                FAIL,
                f"CUDA {f.cuda_build} sees {gpus or 'a GPU'}, but a test "
                f"kernel failed ({f.gpu_error})",
                "update the NVIDIA driver to one for "
                f"CUDA {f.cuda_build} or newer; until then use --device cpu",
            )
        )
    elif f.cuda_available:
        out.append(Check("cuda", OK, f"CUDA {f.cuda_build}: {gpus}; a test kernel ran"))
    elif f.nvidia_driver and f.cuda_build is None:
        out.append(
            Check(
                "cuda",
                WARN,
                "an NVIDIA driver is installed but torch is a CPU-only "
                "build: training and segmentation run on the CPU",
                "install the CUDA "
                "build of torch (pip install torch --index-url "
                "https://download.pytorch.org/whl/cu126)",
            )
        )
    elif f.nvidia_driver:
        out.append(
            Check(
                "cuda",
                WARN,
                f"torch (CUDA {f.cuda_build}) cannot use the NVIDIA GPU: "
                "training and segmentation run on the CPU",
                "update the NVIDIA driver "
                f"to one for CUDA {f.cuda_build} or newer (nvidia-smi shows the "
                "driver's CUDA version)",
            )
        )
    else:
        out.append(
            Check(
                "cuda",
                WARN,
                "no CUDA GPU: training and segmentation run on the CPU "
                "(slower; reviewing and painting are not affected)",
                "for faster training, use a machine with an NVIDIA GPU",
            )
        )
    return out


def judge_ort(f: OrtFacts) -> list[Check]:
    """One ONNX Runtime build, importable, on the GPU when torch has one."""
    out = []
    if len(f.distributions) > 1:
        names = ", ".join(f"{d} {v}" for d, v in f.distributions.items())
        keep = "onnxruntime-gpu" if "onnxruntime-gpu" in f.distributions else "onnxruntime"
        out.append(
            Check(
                "onnxruntime",
                FAIL,
                f"several builds installed ({names}): they overwrite each other's files",
                f"pip uninstall -y {' '.join(f.distributions)} && pip install {keep}",
            )
        )
    if f.version is None:
        out.append(
            Check(
                "onnxruntime",
                FAIL,
                f"onnxruntime does not import ({f.import_error})",
                "pip install --force-reinstall onnxruntime-gpu (onnxruntime on macOS)",
            )
        )
        return out
    providers = ", ".join(p.removesuffix("ExecutionProvider") for p in f.providers)
    detail = f"onnxruntime {f.version}, providers: {providers}"
    if f.gpu and "CUDAExecutionProvider" not in f.providers:
        out.append(
            Check(
                "onnxruntime",
                WARN,
                f"{detail}: inference runs on the CPU although there is a GPU",
                "pip uninstall -y onnxruntime && pip install onnxruntime-gpu",
            )
        )
    elif f.gpu and f.cuda_works is False:
        out.append(
            Check(
                "onnxruntime",
                WARN,
                f"{detail}: the CUDA provider did not load (its "
                "CUDA/cuDNN libraries): inference runs on the CPU",
                "install the "
                "onnxruntime-gpu version built for torch's CUDA (see "
                "installer/constraints.txt)",
            )
        )
    else:
        where = "runs on the GPU" if f.cuda_works else "runs on the CPU"
        out.append(Check("onnxruntime", OK, f"{detail}; {where}"))
    return out


def judge_qt(f: QtFacts) -> list[Check]:
    """Qt starts and OpenGL draws (napari's canvas needs both); no display is only a warning."""
    if f.error and "QtBindingsNotFoundError" in f.error:
        # A core install (`pip install cytoreview`) brings no Qt binding on purpose: inside
        # napari it uses napari's; the stand-alone window needs the `app` extra.
        return [
            Check(
                "qt",
                WARN,
                "no Qt binding installed: the command line works, `cytoreview gui` does not",
                "pip install 'cytoreview[app]' (adds PySide6), or use CytoReview as a napari "
                "plugin inside a napari that has its Qt",
            )
        ]
    if f.display == "" and f.error:
        return [
            Check(
                "qt",
                WARN,
                "no display ($DISPLAY and $WAYLAND_DISPLAY are unset): the "
                "command line works, `cytoreview gui` does not",
                "run it in a desktop session (or over ssh -X), or under xvfb-run for tests",
            )
        ]
    if f.timed_out:
        return [
            Check(
                "qt",
                FAIL,
                f.error or "Qt did not start",
                "check that the display "
                "answers (xdpyinfo); over ssh, use ssh -X or a local session",
            )
        ]
    if f.platform is None:
        return [
            Check(
                "qt",
                FAIL,
                f.error or "Qt could not start",
                "install the libraries Qt "
                "needs (Debian/Ubuntu: apt-get install libgl1 libegl1 libxkbcommon-x11-0 "
                "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 "
                "libdbus-1-3)",
            )
        ]
    if f.error or not f.gl_version:
        return [
            Check(
                "opengl",
                FAIL,
                f"Qt {f.platform}: {f.error or 'no OpenGL version'}: napari cannot draw images",
                "install the graphics card's OpenGL driver, "
                "or Mesa for software drawing (apt-get install libgl1-mesa-dri)",
            )
        ]
    detail = f"Qt {f.platform}, OpenGL {f.gl_version} ({f.gl_renderer})"
    if f.platform in ("offscreen", "minimal"):
        return [
            Check(
                "qt",
                WARN,
                f"{detail}: an off-screen platform, no window will show",
                "unset QT_QPA_PLATFORM to open the window on the display",
            )
        ]
    if any(s in (f.gl_renderer or "").lower() for s in _SOFTWARE_GL):
        return [
            Check(
                "opengl",
                WARN,
                f"{detail}: software drawing, slow with large images and slides",
                "install the graphics card's OpenGL driver (or use a machine "
                "with one); over remote desktop, prefer one with GPU support",
            )
        ]
    return [Check("opengl", OK, detail)]


def judge_folder(f: FolderFacts) -> list[Check]:
    """The project folder (or the one it will be created in) is writable with room to spare."""
    where = str(f.folder) + ("" if f.exists else " (not created yet: its parent was probed)")
    if f.write_error:
        return [
            Check(
                "folder",
                FAIL,
                f"{where}: cannot write there ({f.write_error})",
                "choose a folder you may write to, or ask for write access "
                "(a read-only share or a full quota refuse too)",
            )
        ]
    if f.free_bytes is None:
        return [
            Check(
                "folder",
                WARN,
                f"{where}: writable, free space unknown",
                "check the free space by hand",
            )
        ]
    free = f"{f.free_bytes / _GIB:.1f} GiB free"
    if f.free_bytes < FAIL_FREE_BYTES:
        return [
            Check(
                "disk",
                FAIL,
                f"{where}: only {free}",
                "free space on that disk, or "
                "move the project (a copy of the folder is a complete project)",
            )
        ]
    if f.free_bytes < WARN_FREE_BYTES:
        return [
            Check(
                "disk",
                WARN,
                f"{where}: {free}; training runs and slides need more",
                "free space on that disk before training or importing slides",
            )
        ]
    return [Check("folder", OK, f"{where}: writable, {free}")]


def judge_catalog(f: CatalogFacts, *, explicit: bool) -> list[Check]:
    """The project's catalog can be opened for writing (``explicit``: the user named the folder)."""
    if not f.present:
        if explicit:
            return [
                Check(
                    "catalog",
                    WARN,
                    f"{f.path.parent}: not a CytoReview project (no {f.path.name})",
                    "name a project folder, or create one with `cytoreview init`",
                )
            ]
        return [Check("catalog", OK, "no project in this folder (name one to check its locks)")]
    if f.locked:
        return [
            Check(
                "catalog",
                WARN,
                f"{f.path}: locked by another process right now ({f.error})",
                "wait for the other CytoReview command or window to finish, then retry; "
                "on a network share, copy the project to a local disk",
            )
        ]
    if f.error:
        return [
            Check(
                "catalog",
                FAIL,
                f"{f.path}: cannot be opened for writing ({f.error})",
                "give yourself write access to the project folder and its files, or run "
                "`cytoreview check` on it if the file is damaged",
            )
        ]
    return [Check("catalog", OK, f"{f.path}: opens for writing, not locked")]


def judge_plugins(found: PluginCatalog) -> list[Check]:
    """The plugins that loaded (one line) and each that failed (a line each)."""
    names = ", ".join(f"{p.name} {p.version}" for p in found.plugins) or "none"
    out = [Check("plugins", OK, f"{len(found.plugins)} loaded: {names}")]
    for line in found.broken:
        name = line.split(":", 1)[0]
        out.append(
            Check(
                "plugins",
                FAIL,
                f"not loaded: {line}",
                f"reinstall it (pip install "
                f"--force-reinstall {name}) or remove it (pip uninstall {name})",
            )
        )
    return out


def judge_dask(f: DaskFacts) -> list[Check]:
    """Dask distributed imports; the scheduler in the environment answers, with workers."""
    if f.version is None:
        return [
            Check(
                "dask",
                FAIL,
                f"distributed does not import ({f.import_error})",
                "pip install --force-reinstall distributed",
            )
        ]
    if not f.scheduler:
        return [
            Check(
                "dask",
                OK,
                f"distributed {f.version}; ${SCHEDULER_ENV} unset (batch "
                "jobs run here or on a local cluster)",
            )
        ]
    if f.scheduler_error:
        return [
            Check(
                "dask",
                FAIL,
                f"${SCHEDULER_ENV}={f.scheduler}: {f.scheduler_error}",
                f"start the scheduler and its workers, or correct or unset ${SCHEDULER_ENV}",
            )
        ]
    return [
        Check(
            "dask",
            OK,
            f"distributed {f.version}; scheduler {f.scheduler} answers, {f.workers} worker(s)",
        )
    ]
