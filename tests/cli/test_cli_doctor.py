"""``cytoreview doctor`` end to end: the real checks on this machine, text, JSON, exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cytoreview.storage.project import Project
from tests.conftest import PATIENCE_S

NAMES = {"python", "packages", "torch", "cuda", "onnxruntime", "folder", "catalog", "plugins",
         "dask"}  # fmt: skip


def doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cytoreview", "doctor", *args],
        capture_output=True, text=True, timeout=PATIENCE_S,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


def test_doctor_json_on_a_project(tmp_path: Path) -> None:
    Project.init(tmp_path / "p", actor="t").close()
    done = doctor(str(tmp_path / "p"), "--json", env={"CYTOREVIEW_SCHEDULER": ""})
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert set(checks) >= NAMES and ({"qt", "opengl"} & set(checks))
    catalog = checks["catalog"]
    assert catalog["status"] == "OK" and "opens for writing" in catalog["detail"]
    assert checks["folder"]["status"] == "OK" and str(tmp_path / "p") in checks["folder"]["detail"]
    assert checks["torch"]["status"] == "OK" and "test kernel ran" in checks["torch"]["detail"]
    assert checks["plugins"]["status"] == "OK" and "cytoreview " in checks["plugins"]["detail"]
    assert all(c["status"] in ("OK", "WARN", "FAIL") for c in report["checks"])
    assert all(c["fix"] for c in report["checks"] if c["status"] != "OK")
    failed = any(c["status"] == "FAIL" for c in report["checks"])
    assert done.returncode == report["exit_code"] == (1 if failed else 0), done.stderr


def test_doctor_text_and_a_failure_gives_exit_status_1(tmp_path: Path) -> None:
    # Nothing listens on port 9 (discard) here: the scheduler the environment names is down.
    done = doctor(str(tmp_path), env={"CYTOREVIEW_SCHEDULER": "tcp://127.0.0.1:9"})
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    dask = next(line for line in lines if line.split()[1:2] == ["dask"])
    assert dask.startswith("FAIL") and "127.0.0.1:9" in dask
    fix = lines[lines.index(dask) + 1]
    assert fix.strip().startswith("fix:") and "CYTOREVIEW_SCHEDULER" in fix
    assert lines[0].startswith("OK    python") and "failure(s)" in lines[-1]


def test_doctor_help_states_the_exit_status() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cytoreview", "doctor", "--help"],
        capture_output=True, text=True, timeout=PATIENCE_S, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == 0
    assert "warnings alone give 0" in done.stdout and "1 when any check failed" in done.stdout
