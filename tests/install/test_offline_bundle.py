"""installer/build-offline.sh builds a Windows bundle on this Linux machine: the right wheels.

The Windows bundle cannot be installed here (no Windows), so this checks what install.ps1 will
be given: every wheel is for Windows (or pure Python), the resolution was made for Windows (its
Windows-only dependencies are there, Linux's CUDA wheels are not), and the wheelhouse alone
resolves. The Linux GPU bundle (3.6 GB) is installed offline by hand with
tests/benchmarks/bench_offline_bundle.py: too big for every CI run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cytoreview import __version__

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "installer" / "build-offline.sh"
#: Downloading ~0.6 GB of wheels from the registry and building five wheels.
BUILD_TIMEOUT_S = 900


def _build(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=BUILD_TIMEOUT_S,
    )  # fmt: skip


def _wheel_version(wheels: list[str], name: str) -> str:
    """The version of ``name``'s wheel in a wheelhouse listing."""
    return next(w.split("-")[1] for w in wheels if w.split("-")[0] == name)


def test_windows_bundle_is_resolved_for_windows(tmp_path: Path) -> None:
    done = _build("--platform", "win_amd64", "--variant", "cpu", "--out", str(tmp_path), "--no-tar")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    bundle = tmp_path / f"cytoreview-{__version__}-cpu-py{py}-win_amd64"
    wheels = sorted(p.name for p in (bundle / "wheelhouse").glob("*.whl"))

    foreign = [w for w in wheels if not w.endswith(("-win_amd64.whl", "-none-any.whl"))]
    assert not foreign, f"not for Windows: {foreign}"
    cuda = [w for w in wheels if w.startswith(("nvidia_", "triton-", "cuda_"))]
    assert not cuda, f"Linux's CUDA stack in a Windows CPU bundle: {cuda}"
    tag = f"cp{py.replace('.', '')}"
    assert any(w.startswith("torch-") and f"-{tag}-{tag}-win_amd64" in w for w in wheels), wheels
    # Pulled in only by Windows markers (click, tqdm...; pywin32 through jupyter's stack):
    # a resolution on this Linux machine would have left them out.
    assert any(w.startswith("colorama-") for w in wheels), wheels
    assert any(w.startswith("pywin32-") for w in wheels), wheels
    own = {w.split("-")[0] for w in wheels if w.startswith("cytoreview")}
    assert own == {
        "cytoreview", "cytoreview_otsu", "cytoreview_chowdary", "cytoreview_xai",
        "cytoreview_pix2pix",
    }  # fmt: skip

    facts = dict(line.split("=", 1) for line in (bundle / "BUNDLE").read_text().split())
    assert facts["platform"] == "win_amd64" and facts["variant"] == "cpu" and facts["python"] == py
    assert facts["wheels"] == str(len(wheels))
    # install.ps1 installs the requirements under these pins: exact, and for this wheelhouse.
    pins = (bundle / "constraints.txt").read_text().split()
    assert f"torch=={_wheel_version(wheels, 'torch')}" in pins
    assert "cytoreview[app]" in (bundle / "requirements.txt").read_text()
    assert (bundle / "install.ps1").is_file() and (bundle / "resources/cytoreview.ico").is_file()


def test_a_gpu_bundle_for_windows_needs_its_torch_wheels(tmp_path: Path) -> None:
    done = _build("--platform", "win_amd64", "--out", str(tmp_path))
    assert done.returncode == 1
    assert "PyPI's torch for Windows is CPU-only" in done.stdout
    assert not any(tmp_path.iterdir())  # refused before anything was built
