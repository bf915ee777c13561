"""The wheel built from this tree, installed into a fresh virtual environment, is a working program.

The environment is new (no ``--system-site-packages``) and pip installs the wheel into it, pinned
by installer/constraints.txt, as a user's ``pip install cytoreview-*.whl`` would. One exception,
the case of a user who already has PyTorch: torch's CUDA build (torch, triton and the nvidia/cuda
libraries, 5.5 GB unpacked) is linked in from the test's own environment instead of being unpacked
a second time, because that second copy filled a CI machine's disk. pip still has to find that
torch satisfies the wheel's requirement; every other dependency it installs from the registry.
Then the installed ``cytoreview`` runs a tiny project end to end, from a folder outside the source
tree, so that nothing can come from the checkout.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from cytoreview import __version__
from tests.conftest import PATIENCE_S

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: What the program reads at run time besides its code: shipped as package data.
DATA_SUFFIXES = {".yaml", ".yml", ".json"}
#: The longest a fresh install may take here: the CUDA build of torch and its libraries are
#: about 5.5 GB of wheels to unpack (measured 3-6 min on 2 shared cores).
INSTALL_TIMEOUT_S = 1200


def _is_torch_build(name: str) -> bool:
    """Whether a distribution is part of torch's CUDA build: torch, triton, nvidia-*, cuda-*."""
    name = name.lower().replace("_", "-")
    return name in {"torch", "triton"} or name.startswith(("nvidia-", "cuda-"))


def _link_torch_build(site_packages: Path) -> list[str]:
    """Symlink this environment's torch build (code and dist-info) into ``site_packages``.

    Returns
    -------
    list of str
        The distributions linked (torch must be one of them).
    """
    linked = []
    for dist in importlib.metadata.distributions():
        if not _is_torch_build(dist.metadata["Name"]):
            continue
        origin = Path(dist.locate_file(""))
        # The top-level entries a distribution owns (several nvidia-* share "nvidia/").
        tops = {Path(f).parts[0] for f in dist.files or () if not str(f).startswith("..")}
        for top in tops:
            if not (site_packages / top).exists():
                (site_packages / top).symlink_to(origin / top)
        linked.append(dist.metadata["Name"])
    return linked


def _package_files() -> set[str]:
    """Every file of the cytoreview package that must ship: code and run-time data."""
    files = set()
    for path in (ROOT / "cytoreview").rglob("*"):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        if path.suffix == ".py" or path.suffix in DATA_SUFFIXES:
            files.add(path.relative_to(ROOT).as_posix())
    return files


#: The first-party plugin packages, each built into its own sdist and wheel.
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build``'s sdist and wheel of the core and of each plugin, in one folder."""
    out = tmp_path_factory.mktemp("dist")
    for source in (ROOT, *PLUGINS):
        done = subprocess.run(
            [sys.executable, "-m", "build", "--outdir", str(out), str(source)],
            capture_output=True,
            text=True,
            timeout=PATIENCE_S,
        )
        assert done.returncode == 0, f"{source}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
    return out


def test_each_plugin_has_a_wheel_that_declares_its_entry_point(dist: Path) -> None:
    assert len(PLUGINS) == 4, PLUGINS  # otsu, chowdary, xai, pix2pix
    for source in PLUGINS:
        module = source.name.replace("-", "_")
        (wheel,) = dist.glob(f"{module}-*-py3-none-any.whl")
        (sdist,) = dist.glob(f"{module}-*.tar.gz")
        with zipfile.ZipFile(wheel) as whl:
            names = set(whl.namelist())
            info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
            entry_points = whl.read(f"{info}/entry_points.txt").decode()
            metadata = whl.read(f"{info}/METADATA").decode()
        assert f"{source.name} = {module}.manifest:PLUGIN" in entry_points, entry_points
        assert f"{module}/manifest.py" in names
        assert "Requires-Dist: cytoreview" in metadata
        assert sdist.stat().st_size > 0


def test_core_sdist_and_wheel_hold_what_runs(dist: Path) -> None:
    wheels = list(dist.glob(f"cytoreview-{__version__}-py3-none-any.whl"))
    sdists = list(dist.glob(f"cytoreview-{__version__}.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    wanted = _package_files()
    assert "cytoreview/launcher.py" in wanted  # the walk found the package

    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        info = f"cytoreview-{__version__}.dist-info"
        entry_points = whl.read(f"{info}/entry_points.txt").decode()
        metadata = whl.read(f"{info}/METADATA").decode()
    assert not wanted - names, f"missing from the wheel: {sorted(wanted - names)}"
    assert not any(n.startswith("tests/") or n.startswith("plugins/") for n in names)
    assert "cytoreview = cytoreview.launcher:main" in entry_points
    assert "[cytoreview.plugins]" in entry_points
    assert "napari.manifest" in entry_points and "cytoreview/napari.yaml" in names
    data = f"cytoreview-{__version__}.data/data/share"
    assert {  # the window's icon and the desktop entry reach <prefix>/share
        f"{data}/icons/hicolor/scalable/apps/cytoreview.svg",
        f"{data}/icons/hicolor/256x256/apps/cytoreview.png",
        f"{data}/applications/cytoreview.desktop",
    } <= names
    assert f"Version: {__version__}" in metadata
    assert "Requires-Dist: torch" in metadata

    with tarfile.open(sdists[0]) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert not wanted - members, f"missing from the sdist: {sorted(wanted - members)}"
    assert {"pyproject.toml", "README.md"} <= members


def test_fresh_venv_install_of_every_wheel_runs_a_tiny_project(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=PATIENCE_S)
    python, program = venv / "bin" / "python", venv / "bin" / "cytoreview"
    (site_packages,) = venv.glob("lib/python3*/site-packages")
    assert "torch" in _link_torch_build(site_packages)
    # No PYTHONPATH and a working folder outside the tree: the checkout must not leak in.
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    # `pip install dist/*.whl`: the core and every plugin.
    wheels = sorted(dist.glob("*.whl"))
    done = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "-q",
         "-c", ROOT / "installer" / "constraints.txt", *wheels],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=INSTALL_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def run(*args: str | Path) -> str:
        result = subprocess.run(
            [program, *map(str, args)],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=PATIENCE_S,
        )  # fmt: skip
        assert result.returncode == 0, f"cytoreview {args}: {result.stdout[-2000:]}{result.stderr}"
        return result.stdout

    where_from = "import cytoreview, torch; print(cytoreview.__file__); print(torch.__file__)"
    where = subprocess.run(
        [python, "-c", where_from],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=True, timeout=PATIENCE_S,
    ).stdout.split()  # fmt: skip
    assert all(Path(p).is_relative_to(venv) for p in where), where
    assert (venv / "share/icons/hicolor/scalable/apps/cytoreview.svg").is_file()

    assert "usage: cytoreview" in run("--help")
    assert run("--version").strip() == f"cytoreview {__version__}"
    # The installed program checks its own machine: no FAIL (exit 0), torch really runs.
    report = run("doctor", tmp_path)
    assert "OK    python" in report and "OK    torch" in report, report
    assert "0 failure(s)" in report, report
    listed = run("plugins")
    for source in PLUGINS:  # each plugin wheel loaded (a failed one is a warning line)
        assert f"{source.name} 0." in listed, listed
    assert "failed" not in listed.lower(), listed

    data, proj, painted = tmp_path / "data", tmp_path / "proj", tmp_path / "painted"
    run("demo-data", data, "--n", "16", "--fields", "0")
    run("init", proj)
    run("import", proj, data / "images")
    run("seeds", proj, "--per-class", "2")
    status = json.loads(run("status", proj, "--json"))
    assert sum(r["images"] for r in status["classes"]) == 16
    # "Paint" 8 cells (2 per class: demo-data deals the classes in turn): their true masks,
    # imported again with the images.
    painted.mkdir()
    for mask in sorted((data / "masks").glob("*.png"))[:8]:
        (painted / mask.name).write_bytes(mask.read_bytes())
    run("import", proj, data / "images", "--masks", painted)
    out = run("train-seg", proj, "--epochs", "1", "--input-size", "32")
    assert "finished (max_epochs) after 1 epoch(s)" in out
    out = run("segment", proj)
    assert "8 image(s) auto-segmented" in out and "8 with a human mask left alone" in out
    status = json.loads(run("status", proj, "--json"))
    masks = [r["masks"] for r in status["classes"]]
    assert sum(m["manual"] for m in masks) == 8 and sum(m["auto"] for m in masks) == 8
    # A plugin's method from its installed wheel: the Otsu generator redoes the 8 auto masks.
    out = run("generate-masks", proj, "--generator", "otsu")
    assert "8 mask(s) generated with otsu (cytoreview-otsu 0." in out, out
    assert "8 image(s) with a person's mask left as they are" in out, out
