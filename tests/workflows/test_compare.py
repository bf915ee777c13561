"""Encoder comparison on a small synthetic project: one recipe, one split, a table, cancel."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import pytest

from cytoreview.data.synthetic import synth_dataset
from cytoreview.errors import ConfigError
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.types import CancelToken
from cytoreview.workflows.compare import SCORE_KEYS, compare_encoders
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.segmentation import SegTrainRequest
from tests.conftest import run_job, write_label_png, write_rgb_png

TINY = SegTrainRequest(epochs=1, input_size=64, batch_size=8, device="cpu", seed=0)
ENCODERS = ("resnet18", "mobilenet_v2")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("compare")
    for name, sample in synth_dataset(16, seed=3, size_range=(48, 72)):
        write_rgb_png(root / "src" / sample.label / f"{name}.png", sample.image)
        write_label_png(root / "painted" / f"{name}.png", sample.mask)
    proj = Project.init(root / "proj", actor="t")
    run_job(import_images(proj, root / "src", actor="dr_a", masks_dir=root / "painted"))
    yield proj
    proj.close()


@pytest.fixture(scope="module")
def compared(project: Project):
    return run_job(compare_encoders(project, ENCODERS, base=TINY, actor="dr_a"))


def test_each_encoder_is_trained_and_scored_on_the_same_split(project: Project, compared) -> None:
    events, result = compared
    assert [r.encoder for r in result.rows] == list(ENCODERS) and not result.cancelled
    assert result.n_train + result.n_val == 16 and result.n_val >= 2
    store = ModelStore(project)
    splits = []
    for row in result.rows:
        assert row.status == "finished" and row.seconds > 0
        assert set(row.scores) == set(SCORE_KEYS)
        assert all(0.0 <= v <= 1.0 for v in row.scores.values())
        config, _ = store.load(row.model_id)
        assert config["settings"]["encoder"] == row.encoder
        splits.append((config["data"]["train"], config["data"]["val"]))
    assert splits[0] == splits[1]
    assert result.recipe["epochs"] == 1 and "encoder" not in result.recipe["settings"]
    # Training events carry the encoder and "k/n"; one score event per encoder.
    assert any(e.message.startswith("[1/2 resnet18]: ") for e in events if e.stage == "epoch")
    assert any(e.message.startswith("[2/2 mobilenet_v2]: ") for e in events if e.stage == "epoch")
    assert [e.step for e in events if e.stage == "compare" and e.metrics] == [1, 2]


def test_the_table_is_written_as_csv_and_json(project: Project, compared) -> None:
    _, result = compared
    assert result.table_csv.parent.parent == project.root / "exports"
    with result.table_csv.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["encoder"] for r in rows] == list(ENCODERS)
    assert float(rows[0]["dice_nucleus"]) == pytest.approx(
        result.rows[0].scores["dice_nucleus"], abs=1e-5
    )
    data = json.loads(result.table_json.read_text())
    assert len(data["val_images"]) == result.n_val and data["rows"][1]["encoder"] == ENCODERS[1]


def test_cancel_after_the_first_encoder_keeps_its_row(project: Project, compared) -> None:
    _, first = compared
    store = ModelStore(project)
    in_use = store.current_model("segmentation")
    assert in_use == first.rows[-1].model_id  # no model before: the last one trained is current
    token = CancelToken()
    job = compare_encoders(project, ENCODERS, base=TINY, actor="dr_a", cancel=token)
    result = drive_with(
        job, lambda e: token.cancel() if e.stage == "compare" and e.metrics else None
    )
    assert result.cancelled and [(r.encoder, r.status) for r in result.rows] == [
        ("resnet18", "finished")
    ]
    assert result.rows[0].scores and result.table_csv.is_file()
    # Comparing does not change the segmenter the project uses.
    assert store.current_model("segmentation") == in_use


def test_cancel_during_training_marks_the_row(project: Project) -> None:
    token = CancelToken()
    job = compare_encoders(project, ENCODERS, base=TINY, actor="dr_a", cancel=token)
    result = drive_with(job, lambda e: token.cancel() if e.stage == "train" else None)
    assert result.cancelled and len(result.rows) == 1
    assert result.rows[0].status == "cancelled" and not result.rows[0].scores


def test_bad_requests_fail_before_any_training(project: Project) -> None:
    runs = len(ModelStore(project).runs())
    with pytest.raises(ConfigError, match="encoder"):
        run_job(compare_encoders(project, ["resnet18", "resnet9000"], base=TINY, actor="t"))
    with pytest.raises(ConfigError, match="twice"):
        run_job(compare_encoders(project, ["resnet18", "resnet18"], base=TINY, actor="t"))
    with pytest.raises(ConfigError, match="from scratch"):
        run_job(compare_encoders(project, ["resnet18"], base=_with_init(TINY), actor="t"))
    assert len(ModelStore(project).runs()) == runs


def _with_init(request: SegTrainRequest) -> SegTrainRequest:
    return replace(request, init="some-model")


def drive_with(job, on_event) -> object:
    """Drive a workflow generator, calling ``on_event`` on each event; return its result."""
    try:
        while True:
            on_event(next(job))
    except StopIteration as stop:
        return stop.value
