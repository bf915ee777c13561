"""``cytoreview doctor``'s verdicts: every OK / WARN / FAIL path from made-up facts, the report."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from cytoreview.plugin_api.discovery import InstalledPlugin, PluginCatalog
from cytoreview.storage import health
from cytoreview.storage.health import CatalogFacts, FolderFacts
from cytoreview.workflows import doctor, doctor_probes
from cytoreview.workflows.doctor import DoctorReport, Step, run_doctor, run_step
from cytoreview.workflows.doctor_judges import (
    FAIL,
    OK,
    WARN,
    Check,
    judge_catalog,
    judge_dask,
    judge_folder,
    judge_ort,
    judge_packages,
    judge_plugins,
    judge_python,
    judge_qt,
    judge_torch,
)
from cytoreview.workflows.doctor_probes import (
    DaskFacts,
    OrtFacts,
    PackageFact,
    PythonFacts,
    QtFacts,
    TorchFacts,
)

GIB = 1 << 30


def statuses(checks: list[Check]) -> list[tuple[str, str]]:
    return [(c.name, c.status) for c in checks]


def test_every_problem_line_says_what_to_do() -> None:
    lines = judge_torch(TorchFacts(None, "ImportError: libcudart.so.13"))
    lines += judge_folder(FolderFacts(Path("/p"), True, "Read-only file system", None))
    assert lines and all(c.status == FAIL and c.fix for c in lines)


# -- python and packages -----------------------------------------------------------------------
def test_python_in_range_outside_and_not_installed() -> None:
    ok = judge_python(PythonFacts((3, 11, 7), "/venv/bin/python", ">=3.11,<3.13", "0.1.0"))
    assert statuses(ok) == [("python", OK)] and "3.11.7" in ok[0].detail
    old = judge_python(PythonFacts((3, 10, 2), "/usr/bin/python3", ">=3.11,<3.13", "0.1.0"))
    assert statuses(old) == [("python", FAIL)] and ">=3.11,<3.13" in old[0].fix
    new = judge_python(PythonFacts((3, 13, 0), "/x", ">=3.11,<3.13", "0.1.0"))
    assert new[0].status == FAIL
    loose = judge_python(PythonFacts((3, 11, 7), "/x", None, "0.1.0"))
    assert loose[0].status == WARN and "pip install" in loose[0].fix


def test_packages_missing_out_of_range_untested_and_fine() -> None:
    facts = [
        PackageFact("numpy", "2.4.6", ">=1.26,<3", "2.4.6"),
        PackageFact("torch", "2.14.1+cu130", ">=2.4,<3", "2.14.1"),  # a local build label
        PackageFact("timm", None, ">=1.0", "1.0.31"),
        PackageFact("zarr", "2.18.0", ">=3", "3.1.6"),
        PackageFact("napari", "0.6.0", ">=0.5", "0.9.2"),
    ]
    lines = judge_packages(facts)
    assert statuses(lines) == [
        ("packages", OK), ("packages", FAIL), ("packages", FAIL), ("packages", WARN),
    ]  # fmt: skip
    assert "numpy 2.4.6" in lines[0].detail and "torch 2.14.1+cu130" in lines[0].detail
    assert "timm is not installed" in lines[1].detail and lines[1].fix == "pip install 'timm>=1.0'"
    assert "cytoreview needs zarr>=3" in lines[2].detail
    assert "tested with 0.9.2" in lines[3].detail and "napari==0.9.2" in lines[3].fix


def test_packages_without_tested_pins_judge_the_range_only() -> None:
    lines = judge_packages([PackageFact("numpy", "2.0.0", ">=1.26,<3", None)])
    assert statuses(lines) == [("packages", OK)] and lines[0].detail.startswith("in range")


# -- torch and CUDA ----------------------------------------------------------------------------
def test_torch_with_a_working_gpu() -> None:
    facts = TorchFacts("2.14.1", None, "13.0", True, (("NVIDIA H100", 80 * GIB),))
    lines = judge_torch(facts)
    assert statuses(lines) == [("torch", OK), ("cuda", OK)]
    assert "NVIDIA H100 (80.0 GiB)" in lines[1].detail and "13.0" in lines[1].detail


def test_torch_gpu_kernel_failing_is_a_failure() -> None:
    facts = TorchFacts("2.14.1", None, "13.0", True, (("GPU", GIB),), None,
                       "RuntimeError: no kernel image is available")  # fmt: skip
    lines = judge_torch(facts)
    assert statuses(lines) == [("torch", OK), ("cuda", FAIL)]
    assert "no kernel image" in lines[1].detail and "driver" in lines[1].fix


@pytest.mark.parametrize(
    ("cuda_build", "driver", "says"),
    [(None, False, "no CUDA GPU"), (None, True, "CPU-only build"), ("13.0", True, "cannot use")],
)
def test_torch_without_a_usable_gpu_warns(cuda_build: str | None, driver: bool, says: str) -> None:
    lines = judge_torch(TorchFacts("2.14.1", None, cuda_build, False, nvidia_driver=driver))
    assert statuses(lines) == [("torch", OK), ("cuda", WARN)]
    assert says in lines[1].detail and lines[1].fix


def test_torch_broken_install_and_wrong_cpu_result_fail() -> None:
    assert statuses(judge_torch(TorchFacts(None, "OSError: libtorch.so"))) == [("torch", FAIL)]
    wrong = judge_torch(TorchFacts("2.14.1", cpu_error="wrong result (0, 0 instead of 128, 9)"))
    assert wrong[0].status == FAIL and "wrong result" in wrong[0].detail


# -- ONNX Runtime ------------------------------------------------------------------------------
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def test_ort_both_builds_installed_fails_with_the_commands() -> None:
    dists = {"onnxruntime": "1.20.0", "onnxruntime-gpu": "1.31.1"}
    lines = judge_ort(OrtFacts("1.31.1", None, (CUDA, CPU), dists))
    assert lines[0].status == FAIL and "several builds" in lines[0].detail
    assert lines[0].fix == (
        "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
    )


def test_ort_on_cpu_machine_gpu_machine_and_broken_cuda() -> None:
    one = {"onnxruntime-gpu": "1.31.1"}
    cpu_box = judge_ort(OrtFacts("1.31.1", None, (CUDA, CPU), one, gpu=False))
    assert statuses(cpu_box) == [("onnxruntime", OK)] and "runs on the CPU" in cpu_box[0].detail
    gpu_box = judge_ort(OrtFacts("1.31.1", None, (CUDA, CPU), one, gpu=True, cuda_works=True))
    assert gpu_box[0].status == OK and "runs on the GPU" in gpu_box[0].detail
    no_libs = judge_ort(OrtFacts("1.31.1", None, (CUDA, CPU), one, gpu=True, cuda_works=False))
    assert no_libs[0].status == WARN and "did not load" in no_libs[0].detail
    cpu_build = judge_ort(OrtFacts("1.31.1", None, (CPU,), {"onnxruntime": "1.31.1"}, gpu=True))
    assert cpu_build[0].status == WARN and "onnxruntime-gpu" in cpu_build[0].fix


def test_ort_that_does_not_import_fails() -> None:
    lines = judge_ort(OrtFacts(None, "ImportError: DLL load failed", (), {"onnxruntime": "1"}))
    assert statuses(lines) == [("onnxruntime", FAIL)] and "DLL load failed" in lines[0].detail


# -- Qt and OpenGL -----------------------------------------------------------------------------
def test_qt_paths() -> None:
    good = QtFacts(":0", "xcb", "4.6.0 NVIDIA 550.54", "NVIDIA RTX A4000/PCIe/SSE2")
    assert statuses(judge_qt(good)) == [("opengl", OK)]
    soft = QtFacts(":0", "xcb", "4.5 Mesa 22.3.6", "llvmpipe (LLVM 15.0.6, 256 bits)")
    assert statuses(judge_qt(soft)) == [("opengl", WARN)]
    no_display = QtFacts("", error="Qt could not start (could not connect to display)")
    lines = judge_qt(no_display)
    assert statuses(lines) == [("qt", WARN)] and "command line works" in lines[0].detail
    crashed = QtFacts(":0", error='Qt could not start (Could not load the Qt platform plugin "xcb"')
    lines = judge_qt(crashed)
    assert statuses(lines) == [("qt", FAIL)] and "libxcb-cursor0" in lines[0].fix
    hung = QtFacts(":0", error="Qt did not start within 30 s", timed_out=True)
    assert statuses(judge_qt(hung)) == [("qt", FAIL)]
    no_gl = QtFacts(":0", "xcb", error="no OpenGL context could be created")
    assert statuses(judge_qt(no_gl)) == [("opengl", FAIL)]
    offscreen = QtFacts("", "offscreen", "2.1 Mesa", "llvmpipe")
    assert statuses(judge_qt(offscreen)) == [("qt", WARN)]
    windows = QtFacts(None, "windows", "4.6", "Intel(R) UHD Graphics")  # no $DISPLAY there
    assert statuses(judge_qt(windows)) == [("opengl", OK)]
    # A core install without the app extra (found by the fresh-wheel test): a warning whose
    # fix is the extra, not system libraries.
    no_binding = QtFacts(
        ":0",
        error="Qt could not start (qtpy.QtBindingsNotFoundError: No Qt bindings could be found)",
    )
    lines = judge_qt(no_binding)
    assert statuses(lines) == [("qt", WARN)] and "cytoreview[app]" in lines[0].fix


# -- folder, disk and catalog ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("free", "expected"), [(100 * GIB, ("folder", OK)), (3 * GIB, ("disk", WARN)),
                           (200 << 20, ("disk", FAIL)), (None, ("folder", WARN))],
)  # fmt: skip
def test_folder_free_space(free: int | None, expected: tuple[str, str]) -> None:
    assert statuses(judge_folder(FolderFacts(Path("/data/p"), True, None, free))) == [expected]


def test_folder_not_writable_fails_and_a_new_folder_says_so() -> None:
    lines = judge_folder(FolderFacts(Path("/share/p"), True, "Read-only file system", 10 * GIB))
    assert statuses(lines) == [("folder", FAIL)] and "Read-only file system" in lines[0].detail
    new = judge_folder(FolderFacts(Path("/data/new"), False, None, 100 * GIB))
    assert new[0].status == OK and "not created yet" in new[0].detail


def test_catalog_paths() -> None:
    path = Path("/p/cytoreview.sqlite")
    assert statuses(judge_catalog(CatalogFacts(path, True), explicit=True)) == [("catalog", OK)]
    locked = CatalogFacts(path, True, "database is locked", locked=True)
    assert statuses(judge_catalog(locked, explicit=True)) == [("catalog", WARN)]
    readonly = CatalogFacts(path, True, "attempt to write a readonly database")
    assert statuses(judge_catalog(readonly, explicit=True)) == [("catalog", FAIL)]
    absent = CatalogFacts(path, False)
    assert statuses(judge_catalog(absent, explicit=True)) == [("catalog", WARN)]
    assert statuses(judge_catalog(absent, explicit=False)) == [("catalog", OK)]


# -- plugins and Dask --------------------------------------------------------------------------
def test_plugins_loaded_and_broken() -> None:
    found = PluginCatalog(
        [InstalledPlugin("cytoreview", "0.1.0", "x:PLUGIN", ())],
        ["cytoreview-bad: ImportError: no module named 'cv3'"],
    )
    lines = judge_plugins(found)
    assert statuses(lines) == [("plugins", OK), ("plugins", FAIL)]
    assert "cytoreview 0.1.0" in lines[0].detail and "cv3" in lines[1].detail
    assert "pip uninstall cytoreview-bad" in lines[1].fix


def test_dask_paths() -> None:
    assert statuses(judge_dask(DaskFacts("2026.8.0"))) == [("dask", OK)]
    assert statuses(judge_dask(DaskFacts(None, "ImportError: tornado"))) == [("dask", FAIL)]
    down = judge_dask(DaskFacts("2026.8.0", None, "tcp://10.0.0.9:8786", "does not answer"))
    assert statuses(down) == [("dask", FAIL)] and "CYTOREVIEW_SCHEDULER" in down[0].fix
    up = judge_dask(DaskFacts("2026.8.0", None, "tcp://10.0.0.9:8786", None, 4))
    assert up[0].status == OK and "4 worker(s)" in up[0].detail


# -- the report and the runner -----------------------------------------------------------------
def test_report_status_exit_code_and_json() -> None:
    warn_only = DoctorReport((Check("a", OK, "x"), Check("b", WARN, "y", "do z")))
    assert (warn_only.status, warn_only.exit_code) == (WARN, 0)
    failed = DoctorReport((*warn_only.checks, Check("c", FAIL, "broken", "fix it")))
    assert (failed.status, failed.exit_code) == (FAIL, 1)
    data = json.loads(json.dumps(failed.to_json()))
    assert data["status"] == FAIL and data["exit_code"] == 1
    assert data["checks"][2] == {"name": "c", "status": FAIL, "detail": "broken", "fix": "fix it"}
    assert failed.summary == "1 failure(s), 1 warning(s)"
    assert DoctorReport(()).exit_code == 0


def test_a_crashing_check_is_a_failure_line_not_the_end() -> None:
    def boom() -> list[Check]:
        raise RuntimeError("probe exploded\nsecond line")

    lines = run_step(Step("torch and CUDA", boom))
    assert statuses(lines) == [("torch and CUDA", FAIL)]
    assert "RuntimeError: probe exploded" in lines[0].detail and "second" not in lines[0].detail


def test_run_doctor_with_faked_probes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every step runs with its facts replaced (fast, no GPU needed); the folder is real."""
    monkeypatch.setattr(doctor_probes, "torch_facts", lambda: TorchFacts(None, "ImportError: x"))
    monkeypatch.setattr(doctor_probes, "ort_facts", lambda: OrtFacts("1.31.1", None, (CPU,)))
    monkeypatch.setattr(doctor_probes, "qt_facts", lambda: QtFacts(":0", "xcb", "4.6", "GPU"))
    monkeypatch.setattr(doctor_probes, "dask_facts", lambda: DaskFacts("2026.8.0"))
    # The write probe is real; the free space is not (a full CI disk would make "folder" a WARN).
    monkeypatch.setattr(health.shutil, "disk_usage", lambda _: SimpleNamespace(free=100 * GIB))
    events = []
    job = run_doctor(tmp_path)
    try:
        while True:
            events.append(next(job))
    except StopIteration as done:
        report = done.value
    assert [e.message for e in events][:3] == [
        "checking Python...", "checking packages...", "checking torch and CUDA...",
    ]  # fmt: skip
    names = [c.name for c in report.checks]
    assert names[0] == "python" and {"torch", "onnxruntime", "opengl", "folder"} <= set(names)
    assert ("torch", FAIL) in statuses(list(report.checks)) and report.exit_code == 1
    folder = next(c for c in report.checks if c.name == "folder")
    assert str(tmp_path) in folder.detail and folder.status == OK
    catalog = next(c for c in report.checks if c.name == "catalog")
    assert catalog.status == WARN  # a folder was named, and it is not a project


def test_doctor_steps_default_to_the_current_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    step = next(s for s in doctor.doctor_steps() if s.title == "catalog lock")
    assert statuses(run_step(step)) == [("catalog", OK)]  # not named: no project is fine
