"""``check``: each kind of problem is found, and ``repair`` fixes it without losing work."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from cytoreview.storage.catalog import Catalog
from cytoreview.storage.hashing import file_sha256
from cytoreview.storage.images import read_image
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.predictions import PredictionStore
from cytoreview.storage.project import CATALOG_FILE, Project
from cytoreview.storage.repair import MANIFEST_NAME
from cytoreview.storage.run_guard import RUN_LOCK_NAME
from cytoreview.types import Provenance
from cytoreview.workflows.check import CheckReport, check_project
from tests.conftest import cell_image, run_job, write_rgb_png


def _tiny_onnx() -> bytes:
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(graph).SerializeToString()


@dataclass
class Built:
    root: Path
    src: Path
    images: dict[str, int]
    manual: object  # MaskVersion of image a (a person's work)
    auto: object  # MaskVersion of image b
    models: list[str]


@pytest.fixture
def built(tmp_path: Path) -> Built:
    """Three copied images, a manual and an auto mask, a heatmap, two finished models."""
    project = Project.init(tmp_path / "proj", actor="dr_a")
    ids, masks = {}, {}
    for k, name in enumerate("abc"):
        rgb, mask = cell_image(seed=k)
        path = write_rgb_png(tmp_path / "src" / f"{name}.png", rgb)
        ids[name] = project.add_image(path, read_image(path).info, file_sha256(path), actor="t").id
        masks[name] = mask
    manual = project.save_mask(ids["a"], masks["a"], Provenance.MANUAL, actor="dr_a")
    auto = project.save_mask(ids["b"], masks["b"], Provenance.AUTO, actor="m", source_model="s")
    PredictionStore(project).save_heatmap(
        ids["a"], "cls-x", "gradcam++", "HSIL", np.full((40, 48), 0.5, np.float32), {}
    )
    store = ModelStore(project)
    models = []
    for tag in ("old", "new"):
        model_id = store.new_model_id("seg", tag)
        run_id = store.start_run("segmentation", model_id, {}, actor="dr_a")
        store.save_weights(model_id, {"w": torch.ones(2)}, {"kind": "segmentation"})
        store.save_onnx(model_id, _tiny_onnx())
        store.finish_run(run_id, "finished", {}, actor="dr_a", has_checkpoint=True)
        models.append(model_id)
    project.close()
    return Built(tmp_path / "proj", tmp_path / "src", ids, manual, auto, models)


def _check(root: Path, *, repair: bool = False, temp_age_s: float = 0.0) -> CheckReport:
    _, report = run_job(check_project(root, actor="dr_b", repair=repair, temp_age_s=temp_age_s))
    return report


def _kinds(findings) -> list[tuple[str, str, str | None]]:
    return sorted((f.severity, f.kind, f.path) for f in findings)


def _audit(root: Path) -> list:
    with Project.open(root) as project:
        return project.audit_entries()


def test_a_sound_project_is_clean(built: Built) -> None:
    report = _check(built.root, temp_age_s=600)
    assert report.ok and report.findings == [] and report.catalog_ok
    assert report.checked == {"image": 3, "mask_version": 2, "heatmap": 1, "training_run": 2}


def test_missing_image_is_restored_from_its_source(built: Built) -> None:
    stored = built.root / "images" / "a.png"
    original = stored.read_bytes()
    stored.unlink()
    report = _check(built.root, repair=True)
    assert _kinds(report.findings) == [("damage", "missing-file", "images/a.png")]
    assert [a.action for a in report.actions] == ["restored"]
    assert stored.read_bytes() == original and report.ok
    assert _audit(built.root)[-2].action == "restore"


def test_altered_image_without_source_is_quarantined(built: Built) -> None:
    stored = built.root / "images" / "b.png"
    stored.write_bytes(stored.read_bytes()[:-10])
    (built.src / "b.png").unlink()
    report = _check(built.root, repair=True)
    assert _kinds(report.findings) == [("damage", "hash-mismatch", "images/b.png")]
    assert report.actions[0].action == "quarantined" and not stored.exists()
    assert (built.root / report.quarantine / "images" / "b.png").exists()
    # Known from now on: a note, not a problem; the image keeps its row.
    assert report.ok and [f.kind for f in report.remaining] == ["quarantined"]
    with Project.open(built.root) as project:
        assert project.image(built.images["b"]).name == "b"


def test_a_persons_damaged_mask_is_quarantined_never_dropped(built: Built) -> None:
    path = built.root / built.manual.path
    damaged = bytearray(path.read_bytes())
    damaged[-20] ^= 0xFF
    path.write_bytes(bytes(damaged))
    report = _check(built.root)
    (finding,) = report.findings
    assert finding.kind == "hash-mismatch" and finding.human and not report.ok
    report = _check(built.root, repair=True)
    (action,) = report.actions
    assert action.action == "quarantined" and "a person's mask" in action.detail
    moved = built.root / report.quarantine / built.manual.path
    assert moved.read_bytes() == bytes(damaged)  # the bytes are kept, not deleted
    manifest = json.loads((built.root / report.quarantine / MANIFEST_NAME).read_text())
    (entry,) = manifest["entries"]
    assert entry["path"] == built.manual.path and entry["human"] is True
    assert entry["catalogued_sha256"] == built.manual.sha256
    with Project.open(built.root) as project:
        assert [v.id for v in project.mask_versions(built.images["a"])] == [built.manual.id]
        quarantine = [e for e in project.audit_entries() if e.action == "quarantine"]
        assert quarantine[0].entity == "mask_version" and quarantine[0].details["human"]
    assert [f.kind for f in _check(built.root).findings] == ["quarantined"]


def test_mask_published_from_the_temp_file_a_crash_left(built: Built) -> None:
    # A kill after the bytes were written but before the file got its final name.
    path = built.root / built.auto.path
    temp = path.with_name(f".{path.name}.k3j9.partial")
    path.rename(temp)
    report = _check(built.root)
    assert _kinds(report.findings) == [
        ("damage", "missing-file", built.auto.path),
        ("leftover", "temp-file", temp.relative_to(built.root).as_posix()),
    ]
    report = _check(built.root, repair=True)
    assert report.actions[0].action == "restored" and file_sha256(path) == built.auto.sha256
    assert report.ok and report.remaining == [] and not temp.exists()


def test_damaged_heatmap_is_dropped(built: Built) -> None:
    (heatmap,) = (built.root / "heatmaps").rglob("*.png")
    heatmap.write_bytes(heatmap.read_bytes()[:30])
    report = _check(built.root, repair=True)
    assert [(f.kind, f.entity) for f in report.findings] == [("damaged-file", "heatmap")]
    assert report.actions[0].action == "dropped" and report.ok
    with Project.open(built.root) as project:
        assert PredictionStore(project).heatmap_records() == {}


def test_damaged_current_checkpoint_is_detached_and_the_older_model_used(built: Built) -> None:
    old, new = built.models
    checkpoint = built.root / "models" / new / "model.pt"
    data = bytearray(checkpoint.read_bytes())
    weights = data.find(torch.ones(2).numpy().tobytes())
    data[weights] ^= 0x01  # one flipped bit in the stored tensor: its CRC-32 fails
    checkpoint.write_bytes(bytes(data))
    report = _check(built.root, repair=True)
    assert _kinds(report.findings) == [("damage", "damaged-file", f"models/{new}/model.pt")]
    assert report.actions[0].action == "detached" and report.ok
    with Project.open(built.root) as project:
        assert ModelStore(project).current_model("segmentation") == old
        assert ModelStore(project).runs()[1].checkpoint is None


def test_garbage_onnx_export_is_quarantined(built: Built) -> None:
    export = built.root / "models" / built.models[0] / "model.onnx"
    export.write_bytes(os.urandom(300))
    report = _check(built.root, repair=True)
    assert [f.kind for f in report.findings] == ["damaged-file"]
    assert report.ok and not export.exists()  # rebuilt from the checkpoint when needed
    assert onnx.load_model_from_string(_tiny_onnx())  # the check's reference really parses


def test_leftovers_are_cleaned_and_young_files_left_alone(built: Built) -> None:
    masks = built.root / "masks" / "a"
    old_temp = masks / ".v0002-corrected-1234abcd.png.x1.partial"
    old_temp.write_bytes(b"strokes that never got saved")
    young_temp = masks / ".v0002-corrected-99.png.x2.partial"
    young_temp.write_bytes(b"being written by another window")
    orphan = masks / "v0009-manual-deadbeef.png"
    orphan.write_bytes(b"written just before a kill, row never committed")
    model_temp = built.root / "models" / built.models[0] / ".model.onnx.z9.partial"
    model_temp.write_bytes(b"half an export")
    empty_model = built.root / "models" / "seg-aborted"
    empty_model.mkdir()
    copied_model = built.root / "models" / "seg-from-elsewhere"
    copied_model.mkdir()
    (copied_model / "model.pt").write_bytes(b"weights a person copied in")
    stale_lock = built.root / "models" / built.models[1] / RUN_LOCK_NAME
    stale_lock.write_text("{}")
    hour_ago = time.time() - 3600
    for path in (
        old_temp,
        orphan,
        model_temp,
        empty_model,
        copied_model / "model.pt",
        copied_model,
    ):
        os.utime(path, (hour_ago, hour_ago))
    report = _check(built.root, temp_age_s=600)
    severity = {f.path: (f.severity, f.kind) for f in report.findings}
    rel = lambda p: p.relative_to(built.root).as_posix()  # noqa: E731
    assert severity == {
        rel(old_temp): ("leftover", "temp-file"),
        rel(young_temp): ("note", "temp-file"),
        rel(orphan): ("leftover", "orphan-file"),
        rel(model_temp): ("leftover", "temp-file"),
        rel(empty_model): ("leftover", "orphan-model-folder"),
        rel(copied_model): ("leftover", "orphan-model-folder"),
        rel(stale_lock): ("leftover", "stale-run-lock"),
    }
    report = _check(built.root, repair=True, temp_age_s=600)
    actions = {a.finding.path: a.action for a in report.actions}
    assert actions == {
        rel(old_temp): "quarantined",  # under masks/: may be a person's strokes
        rel(orphan): "quarantined",
        rel(model_temp): "deleted",
        rel(empty_model): "deleted",
        rel(copied_model): "quarantined",  # holds weights: kept
        rel(stale_lock): "deleted",
    }
    assert report.ok and young_temp.exists()
    assert (built.root / report.quarantine / rel(orphan)).exists()
    assert (built.root / report.quarantine / rel(copied_model) / "model.pt").exists()
    assert _audit(built.root)[-1].action == "repair"


def test_dead_training_run_is_closed_by_repair(built: Built) -> None:
    with Project.open(built.root) as project:
        store = ModelStore(project)
        model_id = store.new_model_id("seg", "killed")
        run_id = store.start_run("segmentation", model_id, {}, actor="dr_a")
        live_id = store.new_model_id("seg", "live")
        live_run = store.start_run("segmentation", live_id, {}, actor="dr_a")  # this process
    (built.root / "models" / model_id / RUN_LOCK_NAME).unlink()  # an owner that left no record
    report = _check(built.root)
    assert [(f.severity, f.kind, f.entity_id) for f in report.findings] == [
        ("leftover", "interrupted-run", run_id),
        ("note", "running", live_run),
    ]
    report = _check(built.root, repair=True)
    assert report.actions[0].action == "closed" and report.ok
    assert [f.kind for f in report.remaining] == ["running"]


def test_damaged_catalog_moves_no_file(built: Built) -> None:
    conn = sqlite3.connect(built.root / CATALOG_FILE)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute(
        "INSERT INTO predictions (image_id, model_id, task, pred_class, probabilities, "
        "created_at) VALUES (999, 'm', 'bethesda', 'NILM', 'not json', 'now')"
    )
    conn.commit()
    conn.close()
    stray = built.root / "images" / "stray.png"
    stray.write_bytes(b"x")
    report = _check(built.root, repair=True)
    assert {f.kind for f in report.findings} == {"foreign-key", "bad-json"}
    assert not report.catalog_ok and not report.ok
    assert {a.action for a in report.actions} == {"left"}
    assert stray.exists() and not (built.root / "quarantine").exists()


def test_damaged_catalog_pages_are_reported(built: Built) -> None:
    with Project.open(built.root) as project, project.catalog.write() as conn:
        for i in range(300):
            Catalog.audit(conn, "t", "filler", "project", None, text="x" * 200, i=i)
    catalog = built.root / CATALOG_FILE
    with open(catalog, "r+b") as handle:
        handle.seek(catalog.stat().st_size // 2)
        handle.write(b"\xa5" * 8192)
    report = _check(built.root)
    assert not report.catalog_ok and report.findings[0].kind == "catalog-integrity"


def test_empty_catalog_is_reported_not_rewritten(built: Built) -> None:
    catalog = built.root / CATALOG_FILE
    catalog.write_bytes(b"")
    report = _check(built.root, repair=True)
    assert [f.kind for f in report.findings] == ["not-a-catalog"]
    assert catalog.stat().st_size == 0


def test_changed_linked_source_is_reported_and_left(built: Built, tmp_path: Path) -> None:
    rgb, _ = cell_image(seed=9)
    source = write_rgb_png(tmp_path / "linked" / "d.png", rgb)
    with Project.open(built.root) as project:
        info = read_image(source).info
        project.add_image(source, info, file_sha256(source), actor="t", copy=False)
    source.write_bytes(source.read_bytes() + b"edited")
    report = _check(built.root, repair=True)
    assert [f.kind for f in report.findings] == ["linked-source"]
    assert report.actions[0].action == "left" and not report.ok and source.exists()
