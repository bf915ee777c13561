"""The offline bundle installs with networking disabled, and the installed program runs.

Builds the bundle with ``installer/build-offline.sh`` (or takes ``--bundle DIR``, one already
built), then runs its ``install.sh`` in a new network namespace (``unshare -n``: no interface but
loopback, so nothing can be fetched) with a throw-away HOME, and checks the launcher
(``--help``, ``--version``) and the desktop entry. Without ``unshare`` it says so and relies on
``install.sh``'s own ``pip --no-index``. Prints JSON: sizes, wheel count, times.

    .venv/bin/python tests/benchmarks/bench_offline_bundle.py [--variant gpu] [--out /tmp/x]
    .venv/bin/python tests/benchmarks/bench_offline_bundle.py --bundle dist/offline/cytoreview-...
    .venv/bin/python tests/benchmarks/bench_offline_bundle.py --platform win_amd64 --variant cpu

A bundle for another platform (``--platform``, ``--python``) is built and measured, not installed.

Long (the GPU bundle is ~3.5 GB of wheels to copy, then to install): not part of ``make test``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    """Build (or take) a bundle, install it offline, print the measurements as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--torch-wheels", type=Path, help="CPU variant: torch + torchvision here")
    parser.add_argument("--platform", help="build for another platform (win_amd64, linux_x86_64)")
    parser.add_argument("--python", help="build for another Python (3.11, 3.12)")
    parser.add_argument("--bundle", type=Path, help="an already built bundle folder")
    parser.add_argument("--out", type=Path, help="where to build (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the bundle and the install")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cytoreview-offline-"))
    result: dict[str, object] = {"variant": args.variant}
    try:
        bundle = args.bundle
        if bundle is None:
            out = args.out or work / "out"
            cmd = ["bash", str(ROOT / "installer" / "build-offline.sh"), "--variant", args.variant]
            cmd += ["--out", str(out)]
            if args.torch_wheels:
                cmd += ["--torch-wheels", str(args.torch_wheels)]
            if args.platform:
                cmd += ["--platform", args.platform]
            if args.python:
                cmd += ["--python", args.python]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, cwd=ROOT)
            result["build_s"] = round(time.perf_counter() - start, 1)
            bundle = next(p for p in out.iterdir() if p.is_dir())
            tar = out / f"{bundle.name}.tar"
            if tar.is_file():
                result["tar_bytes"] = tar.stat().st_size
        wheels = sorted((bundle / "wheelhouse").glob("*.whl"))
        result.update(
            bundle=str(bundle),
            bundle_bytes=_size(bundle),
            wheels=len(wheels),
            largest_wheels={p.name: p.stat().st_size for p in sorted(
                wheels, key=lambda p: p.stat().st_size, reverse=True)[:5]},
        )  # fmt: skip
        facts = dict(line.split("=", 1) for line in (bundle / "BUNDLE").read_text().split())
        result.update(platform=facts["platform"], python=facts["python"])
        if (facts["python"], facts["platform"]) == _this_target():
            _install_offline(bundle, work, result)
        else:
            result["installed"] = "no: built for another platform or Python than this one"
    finally:
        if args.keep:
            result["kept"] = str(work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))


def _this_target() -> tuple[str, str]:
    """This machine's Python (major.minor) and platform, as build-offline.sh names them."""
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return python, sysconfig.get_platform().replace("-", "_").replace(".", "_")


def _install_offline(bundle: Path, work: Path, result: dict[str, object]) -> None:
    """Run the bundle's install.sh with no network, check the program, record the figures."""
    home = work / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    # No find-links or index from this machine's pip settings: only the bundle.
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "share"), PIP_CONFIG_FILE=os.devnull)
    install = ["bash", str(bundle / "install.sh")]
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], check=False).returncode == 0:
        # Interfaces as the namespace sees them (sysfs would show the host's).
        names = "import socket; print(*(n for _, n in socket.if_nameindex()))"
        links = subprocess.run(
            [unshare, "-n", sys.executable, "-c", names],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        assert links == ["lo"], links
        result["network"] = f"unshare -n (interfaces: {' '.join(links)})"
        install = [unshare, "-n", *install]
    else:
        result["network"] = "unshare not allowed: pip --no-index only"
    start = time.perf_counter()
    subprocess.run(install, check=True, env=env, cwd=work)
    result["install_s"] = round(time.perf_counter() - start, 1)
    result["installed_bytes"] = _size(home / "share" / "cytoreview")

    launcher = home / ".local" / "bin" / "cytoreview"
    start = time.perf_counter()
    helped = subprocess.run([launcher, "--help"], capture_output=True, text=True, env=env)
    result["help_s"] = round(time.perf_counter() - start, 1)
    assert helped.returncode == 0 and "usage: cytoreview" in helped.stdout, helped.stderr
    version = subprocess.run([launcher, "--version"], capture_output=True, text=True, env=env)
    result["version"] = version.stdout.strip()
    plugins = subprocess.run([launcher, "plugins"], capture_output=True, text=True, env=env)
    result["plugins_ok"] = plugins.returncode == 0
    # The package lines (not indented): the core and each plugin that loaded.
    lines = plugins.stdout.splitlines()
    result["plugins"] = [line for line in lines if line and not line[0].isspace()]
    # doctor from the installed program: under a display (xvfb-run) its Qt/OpenGL probe opens a
    # real window with the bundle's PySide6, so the GUI stack is checked too.
    doctor = subprocess.run(
        [launcher, "doctor", str(work)], capture_output=True, text=True, env=env
    )
    lines = doctor.stdout.splitlines()
    result["doctor_exit"] = doctor.returncode
    wanted = {"qt", "opengl", "torch"}  # "STATUS  NAME  detail" lines, then the summary
    result["doctor"] = [line for line in lines if set(line.split()[1:2]) & wanted]
    result["doctor"] += lines[-1:]
    desktop = (home / "share" / "applications" / "cytoreview.desktop").read_text()
    assert f'Exec="{launcher}" gui' in desktop, desktop
    result["desktop_entry"] = "ok"


if __name__ == "__main__":
    main()
