"""Segmentation methods side by side: trained runs, and each source's masks against the truth."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch

from cytoreview.cli.main import main
from cytoreview.data.synthetic import synth_dataset
from cytoreview.metrics.segmentation import evaluate_masks
from cytoreview.plugin_api import ENTRY_POINT_GROUP, reset_catalog
from cytoreview.plugin_api.discovery import discover
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.mask_generation import generate_masks
from cytoreview.workflows.method_comparison import compare_mask_methods
from cytoreview.workflows.report import write_report
from tests.conftest import run_job, write_label_png, write_rgb_png
from tests.plugins.learning_methods import GENERATOR
from tests.plugins.sample_plugin import GENERATOR as DARK
from tests.plugins.sample_plugin import DarkThresholdSettings

TARGETS = ("tests.plugins.learning_methods:PLUGIN", "tests.plugins.sample_plugin:PLUGIN")


@pytest.fixture(autouse=True)
def two_generators():
    found = discover([EntryPoint(t.partition(":")[0], t, ENTRY_POINT_GROUP) for t in TARGETS])
    assert not found.broken, found.broken
    reset_catalog(found)
    yield
    reset_catalog()


@pytest.fixture
def compared(tmp_path: Path):
    """8 labelled cells, 2 painted; every other one masked by two generators in turn."""
    truth = {}
    for i, (name, sample) in enumerate(synth_dataset(8, seed=9, size_range=(48, 72))):
        write_rgb_png(tmp_path / "src" / sample.label / f"{name}.png", sample.image)
        write_label_png(tmp_path / "truth" / f"{name}.png", sample.mask)
        truth[name] = sample.mask
        if i < 2:
            write_label_png(tmp_path / "painted" / f"{name}.png", sample.mask)
    project = Project.init(tmp_path / "proj", actor="t")
    run_job(import_images(project, tmp_path / "src", actor="t", masks_dir=tmp_path / "painted"))
    run_job(generate_masks(project, "dark-threshold", {"cell_below": 200}, actor="bot"))
    run_job(generate_masks(project, "learnt-threshold", actor="bot"))
    yield project, tmp_path / "truth", truth
    project.close()


def _fake_finished_run(project: Project, model_id: str, val: list[str], dice: float) -> None:
    """A run record as train_segmentation leaves it (the last one finished is in use)."""
    store = ModelStore(project)
    config = {
        "arch": "unet",
        "settings": {"encoder": "resnet18", "decoder_width": 128},
        "input_size": 64,
        "data": {"train": [], "val": val},
    }
    run_id = store.start_run("segmentation", model_id, config, actor="t")
    metrics = {"best_epoch": 3, "n_train": 5, "n_val": len(val), "seconds": 90.0,
               "dice_cytoplasm": dice, "dice_nucleus": dice - 0.1}  # fmt: skip
    store.save_weights(model_id, {"w": torch.zeros(1)}, config)
    store.finish_run(run_id, "finished", metrics, actor="t", has_checkpoint=True)


def test_each_method_is_scored_on_the_same_images(compared) -> None:
    project, truth_dir, truth = compared
    result = run_job(compare_mask_methods(project, truth_dir))[1]
    assert [m.source for m in result.scored] == [
        "generator:dark-threshold",
        "generator:learnt-threshold",
    ]
    assert result.shared_images == 6 and all(m.n_images == 6 for m in result.scored)
    assert "from class labels" in result.scored[1].method  # it learns from labels
    # The earlier generator's masks are no longer current, yet they are what its row scores.
    unpainted = sorted(truth)[2:]
    settings = DarkThresholdSettings(cell_below=200)
    expected = evaluate_masks(
        (n, DARK.generate(project.load_image(project.image(n)).rgb, settings), truth[n], None)
        for n in unpainted
    )
    dark = result.scored[0].mean
    assert dark["nucleus"]["dice"] == pytest.approx(expected.mean["nucleus"].dice)
    assert dark["cytoplasm"]["iou"] == pytest.approx(expected.mean["cytoplasm"].iou)
    assert GENERATOR.seen  # the learning generator did learn (its masks are current)


def test_trained_segmenters_are_listed_with_their_split(compared) -> None:
    project, _, _ = compared
    _fake_finished_run(project, "seg-a", ["x", "y"], 0.8)
    _fake_finished_run(project, "seg-b", ["y", "x"], 0.7)  # the same images, another order
    _fake_finished_run(project, "seg-c", ["z"], 0.6)
    result = run_job(compare_mask_methods(project))[1]
    rows = {r.model_id: r for r in result.trained}
    assert set(rows) == {"seg-a", "seg-b", "seg-c"} and not result.scored
    assert rows["seg-a"].split_tag == rows["seg-b"].split_tag != rows["seg-c"].split_tag
    assert rows["seg-a"].scores["dice_cytoplasm"] == 0.8 and rows["seg-c"].current
    assert rows["seg-a"].method == "unet (decoder_width 128, encoder resnet18)"  # stored sorted


def test_the_report_and_the_command_show_the_comparison(compared, capsys) -> None:
    project, truth_dir, _ = compared
    _fake_finished_run(project, "seg-a", ["x"], 0.8)
    _fake_finished_run(project, "seg-b", ["x"], 0.7)
    out = truth_dir.parent / "report"
    run_job(write_report(project, out, seg_truth_dir=truth_dir))
    html = (out / "report.html").read_text()
    assert "Segmentation methods compared" in html
    assert "generator:learnt-threshold" in html and "seg-b (in use)" in html
    assert "on the 6 image(s) every method masked" in html
    root = project.root
    assert main(["compare-methods", str(root), "--truth", str(truth_dir)]) == 0
    out = capsys.readouterr().out
    assert "mask generator dark-threshold" in out and "split A" in out
