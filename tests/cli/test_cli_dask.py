"""``segment`` on the command line: ``--scheduler``, ``--workers``, the environment, a stop."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cytoreview.cli.compute_flags import compute_spec
from cytoreview.cli.main import build_parser, main
from cytoreview.settings import SCHEDULER_ENV
from cytoreview.storage.project import Project
from cytoreview.workflows import executors
from cytoreview.workflows.executors import ExecutorSpec
from cytoreview.workflows.importing import import_images
from tests.conftest import run_job
from tests.inference.int8_models import add_grey_model, grey_net_onnx, write_grey_cells


def test_the_flags_reach_the_executor_spec() -> None:
    args = build_parser().parse_args(
        ["segment", "proj", "--scheduler", "tcp://head:8786", "--workers", "3"]
    )
    assert compute_spec(args) == ExecutorSpec("tcp://head:8786", 3)
    assert compute_spec(build_parser().parse_args(["segment", "proj"])) == ExecutorSpec()


@pytest.fixture
def grey_project(tmp_path: Path) -> Path:
    project = Project.init(tmp_path / "proj", actor="t")
    run_job(import_images(project, write_grey_cells(tmp_path / "cells", 4, seed=2), actor="t"))
    add_grey_model(project, grey_net_onnx())
    project.close()
    return tmp_path / "proj"


def test_the_environment_names_the_scheduler_and_the_flag_wins(
    grey_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(executors, "COMPUTE", replace(executors.COMPUTE, connect_timeout_s=2.0))
    monkeypatch.setenv(SCHEDULER_ENV, "127.0.0.1:9")
    assert main(["segment", str(grey_project), "--precision", "fp32"]) == 1
    err = capsys.readouterr().err.strip()
    assert "Dask scheduler tcp://127.0.0.1:9 does not answer" in err, err
    assert len(err.splitlines()) == 1
    assert main(["segment", str(grey_project), "--precision", "fp32", "--scheduler", "none"]) == 0
    out = capsys.readouterr().out
    assert "4 image(s) auto-segmented" in out and "ran on this process" in out


def test_a_stopped_segment_says_so_and_exits_130(
    grey_project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cytoreview.cli import commands_seg
    from cytoreview.types import CancelToken

    def stopped() -> CancelToken:  # as if Ctrl-C came before the first batch started
        token = CancelToken()
        token.cancel()
        return token

    monkeypatch.setattr(commands_seg, "CancelToken", stopped)
    assert main(["segment", str(grey_project), "--precision", "fp32"]) == 130
    out = capsys.readouterr().out
    assert "stopped before the end" in out and "0 image(s) auto-segmented" in out
