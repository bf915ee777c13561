"""What the report and evaluate-cls show must be what they say: the stored binary call, scores
labelled by how they were measured, and optimistic scores named whatever the truth's source."""

from __future__ import annotations

from pathlib import Path

import pytest

from cytoreview.cli.main import main
from cytoreview.report.html import NO_MASK_QUALITY, render_report
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.predictions import PredictionInput, PredictionStore
from cytoreview.storage.project import Project
from cytoreview.workflows.evaluate_cls import evaluate_classification, training_images_note
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.report import build_report_data, write_report
from tests.conftest import run_job

MEAN_TEXT = "Mean: average of the per-image scores"


def _import(project: Project, images: Path, masks: Path) -> None:
    run_job(import_images(project, images, actor="t", masks_dir=masks))


def _card(html: str, name: str) -> str:
    """The gallery card of one image."""
    cards = [c for c in html.split('<div class="card') if f"<h3>{name}</h3>" in c]
    assert len(cards) == 1, name
    return cards[0]


def test_binary_call_is_the_stored_one_not_the_top_class(
    project: Project, image_folder: Path, tmp_path: Path
) -> None:
    _import(project, image_folder, tmp_path / "masks")
    nilm = next(r for r in project.images() if r.class_label == "NILM")
    store = PredictionStore(project)
    # The top class is NILM (0.4), but the abnormal classes hold 0.6 together: classify stored
    # "revisable", and that is the call a person must see.
    probs = {"NILM": 0.4, "ASC-US": 0.2, "LSIL": 0.2, "HSIL": 0.2}
    store.save_predictions(
        "cls-t", "bethesda", [PredictionInput(nilm.id, "NILM", probs)], actor="t"
    )
    call = PredictionInput(nilm.id, "revisable", {"not-revisable": 0.4, "revisable": 0.6})
    store.save_predictions("cls-t", "binary", [call], actor="t")
    _, result = run_job(write_report(project, tmp_path / "report"))
    html = (result.out / "report.html").read_text(encoding="utf-8")
    card = _card(html, nilm.name)
    assert "Binary call: <strong>needs review</strong>" in card and "0.60" in card
    # An image without a stored call gets no call made up for it.
    other = next(r for r in project.images() if r.id != nilm.id)
    assert "Binary call" not in _card(html, other.name)


def _finished_seg_run(project: Project) -> None:
    store = ModelStore(project)
    config = {"input_size": 64, "encoder": "resnet18"}
    run = store.start_run("segmentation", "seg-t", config, actor="t")
    metrics = {
        "best_epoch": 3, "epochs_run": 5, "n_val": 2, "dice_cytoplasm": 0.81,
        "dice_nucleus": 0.72, "iou_cytoplasm": 0.7, "iou_nucleus": 0.6,
        "decision": {"offsets": [0.0, 0.8, 0.8], "n_images": 15, "reason": "",
                     "dice_before": {"cytoplasm": 0.77, "nucleus": 0.93},
                     "dice_after": {"cytoplasm": 0.80, "nucleus": 0.93}},
    }  # fmt: skip
    store.finish_run(run, "finished", metrics, actor="t", has_checkpoint=True)


def test_segmentation_scores_are_labelled_by_how_they_were_measured(
    project: Project, image_folder: Path, tmp_path: Path
) -> None:
    _import(project, image_folder, tmp_path / "masks")
    _finished_seg_run(project)

    data = run_job(build_report_data(project))[1]
    validation = data.segmentation
    # Validation scores are pooled over pixels at the model's input size: never a "mean".
    assert validation.mean == {} and validation.pooled["cytoplasm"]["dice"] == 0.81
    html = render_report(data)["report.html"].decode("utf-8")
    assert "at the model&#x27;s input size of 64 px, pooled over pixels" in html
    assert "Pooled: from the pixel counts of all images together" in html
    assert MEAN_TEXT not in html
    assert NO_MASK_QUALITY in html  # no truth given: the real quality is said to be unmeasured
    # The auto masks' decision offset is said where the model's validation is.
    said = (
        "decision offset +0.8 on the cells&#x27; log-probability against background, chosen on 15 "
        "validation images: Dice cytoplasm 0.770 -&gt; 0.800, nucleus 0.930 -&gt; 0.930"
    )
    assert said in html

    # With ground truth: the current masks at their own size, mean and pooled, named as such.
    data = run_job(build_report_data(project, seg_truth_dir=tmp_path / "masks"))[1]
    [manual] = data.mask_quality
    assert manual.title.startswith("Manual masks") and manual.n_images == 6
    assert manual.mean["nucleus"]["dice"] == 1.0 and manual.pooled["cell"]["iou"] == 1.0
    html = render_report(data)["report.html"].decode("utf-8")
    assert "Mask quality against ground truth (native resolution)" in html
    assert f"{MEAN_TEXT}; pooled: from the pixel counts of all images together" in html
    assert "at each image&#x27;s own size" in html
    assert NO_MASK_QUALITY not in html
    assert html.index("Mask quality against ground truth") < html.index("Validation during")


def test_truth_csv_listing_training_images_is_flagged(
    project: Project, image_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _import(project, image_folder, tmp_path / "masks")
    records = project.images()
    store = ModelStore(project)
    trained = {"data": {"names": [r.name for r in records[:4]]}}
    run = store.start_run("classification-bethesda", "cls-t", trained, actor="t")
    store.finish_run(run, "finished", {}, actor="t", has_checkpoint=True)
    preds = [PredictionInput(r.id, r.class_label, {r.class_label: 1.0}) for r in records]
    PredictionStore(project).save_predictions("cls-t", "bethesda", preds, actor="t")
    truth = tmp_path / "truth.csv"
    truth.write_text("image,class\n" + "".join(f"{r.name},{r.class_label}\n" for r in records))

    evaluation = evaluate_classification(project, truth)
    assert evaluation.on_training_images == 4
    note = training_images_note(evaluation)
    assert note.startswith("4 of the 6 scored images were used to train") and "optimistic" in note
    data = run_job(build_report_data(project, truth_csv=truth))[1]
    assert note in data.notes and "4 of 6 images were used" in data.classification.evaluated_on

    assert main(["evaluate-cls", str(project.root), "--truth", str(truth)]) == 0
    assert "warning: 4 of the 6 scored images were used to train" in capsys.readouterr().out
