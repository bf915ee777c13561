"""Training runs whose process died are closed as interrupted on open; live ones are left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.storage.run_guard import (
    ALIVE,
    DEAD,
    RUN_LOCK_NAME,
    RunOwner,
    current_owner,
    owner_state,
)
from tests.conftest import PATIENCE_S

_TRAINER = textwrap.dedent(
    """
    import sys, time, torch
    from cytoreview.storage.model_store import ModelStore
    from cytoreview.storage.project import Project

    project = Project.open(sys.argv[1])
    store = ModelStore(project)
    model_id = store.new_model_id("seg", "tiny")
    store.start_run("segmentation", model_id, {"epochs": 2}, actor="dr_a")
    if sys.argv[2] == "checkpoint":
        store.save_weights(model_id, {"w": torch.ones(3)}, {"kind": "segmentation"})
        store.save_onnx(model_id, b"an export of the weights")
    (store.root / model_id / ".model.pt.x1y2.partial").write_bytes(b"half a checkpoint")
    print(model_id, flush=True)
    time.sleep(600)
    """
)


def _kill_mid_run(root: Path, what: str) -> str:
    """Start a run in another process, SIGKILL it mid-run; return its model id."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _TRAINER, str(root), what],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        model_id = proc.stdout.readline().strip()
        assert model_id, "the trainer did not start"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=PATIENCE_S)
    return model_id


@pytest.mark.slow
def test_killed_run_is_closed_on_open_and_its_best_checkpoint_kept(project: Project) -> None:
    project.close()
    model_id = _kill_mid_run(project.root, "checkpoint")
    folder = project.root / "models" / model_id
    assert (folder / RUN_LOCK_NAME).exists()
    with Project.open(project.root) as reopened:
        run = ModelStore(reopened).runs()[0]
        assert run.status == "interrupted"
        entry = reopened.audit_entries()[-1]
        assert entry.action == "train_interrupted" and entry.entity_id == run.id
        # The best checkpoint is kept and usable; exports, temp files and the lock are gone.
        assert run.checkpoint == f"models/{model_id}/model.pt"
        assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.pt"]
        _, state = ModelStore(reopened).load(model_id)
        assert torch.equal(state["w"], torch.ones(3))


def _dead_pid() -> int:
    finished = subprocess.run(
        [sys.executable, "-S", "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(finished.stdout)


def test_dead_run_without_checkpoint_leaves_no_folder(project: Project) -> None:
    store = ModelStore(project)
    model_id = store.new_model_id("seg", "dead")
    run_id = store.start_run("segmentation", model_id, {}, actor="dr_a")
    folder = project.root / "models" / model_id
    (folder / ".model.onnx.k2j3.partial").write_bytes(b"half an export")
    dead = RunOwner(_dead_pid(), current_owner().host, None)
    (folder / RUN_LOCK_NAME).write_bytes(dead.to_json())
    with Project.open(project.root) as other:
        run = ModelStore(other).run(run_id)
    assert run.status == "interrupted" and run.checkpoint is None
    assert not folder.exists()


def test_run_of_a_live_process_stays_running(project: Project) -> None:
    store = ModelStore(project)
    model_id = store.new_model_id("seg", "live")
    run_id = store.start_run("segmentation", model_id, {}, actor="dr_a")
    with Project.open(project.root) as other:  # e.g. the CLI while the window trains
        assert ModelStore(other).run(run_id).status == "running"
    store.finish_run(run_id, "finished", {}, actor="dr_a", has_checkpoint=False)
    # Closing the run forgets its owner record.
    assert not (project.root / "models" / model_id / RUN_LOCK_NAME).exists()


def test_running_row_without_owner_record_is_interrupted(project: Project) -> None:
    # Runs started before owner records existed stayed "running" for ever.
    store = ModelStore(project)
    model_id = store.new_model_id("seg", "old")
    run_id = store.start_run("segmentation", model_id, {}, actor="dr_a")
    (project.root / "models" / model_id / RUN_LOCK_NAME).unlink()
    with Project.open(project.root) as other:
        assert ModelStore(other).run(run_id).status == "interrupted"


def test_reused_process_id_counts_as_dead() -> None:
    me = current_owner()
    assert owner_state(me) == ALIVE
    if me.start is None:
        pytest.skip("process start times are not readable here")
    assert owner_state(RunOwner(me.pid, me.host, str(int(me.start) + 1))) == DEAD
    assert owner_state(RunOwner(_dead_pid(), me.host, None)) == DEAD
    assert RunOwner.from_json(me.to_json()) == me
    assert RunOwner.from_json(b"not json") is None
    assert json.loads(me.to_json())["pid"] == os.getpid()
