"""A few SIGKILLs during an import leave the project intact (the full harness is a benchmark:
tests/benchmarks/bench_crash_harness.py)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.benchmarks.bench_crash_harness import Workspace, job_specs, run_kills


@pytest.mark.slow
def test_kills_during_import_leave_the_project_intact(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws", n_images=12, n_painted=5)
    ws.build("base")
    summary = run_kills(job_specs(ws)["import"], ws, 3, random.Random(0))
    assert summary.kills == 3
    assert summary.corruptions == 0 and summary.open_failures == 0, summary.problems
    assert summary.persons_masks_lost == 0 and summary.repair_failures == 0, summary.problems
