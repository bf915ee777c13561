"""Classifier use cases on a small synthetic project: train, classify, explain, export, evaluate.

Classes differ visibly (NILM: small pale nucleus; HSIL: large dark nucleus), so even a tiny
network learns them in a few epochs at 64 px. One training run (module scope) is shared.
"""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from cytoreview.data.synthetic import synth_dataset
from cytoreview.defaults import CLS
from cytoreview.errors import ConfigError, ManifestError, NotEnoughDataError, ProjectError
from cytoreview.inference.classify import ClassifierSpec, has_cam_outputs, predict_class_probs
from cytoreview.models.classifier_blocks import TINY_BACKBONE
from cytoreview.models.classifiers import describe_classifier
from cytoreview.morphometry.features import feature_matrix
from cytoreview.morphometry.measure import morphometry_columns
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.predictions import PredictionStore
from cytoreview.storage.project import Project
from cytoreview.types import CancelToken
from cytoreview.workflows.classification import (
    ClsTrainRequest,
    load_classifier,
    train_classification,
)
from cytoreview.workflows.cls_runtime import classifier_runtime
from cytoreview.workflows.evaluate_cls import evaluate_classification
from cytoreview.workflows.export import export_predictions
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.review_data import (
    classify_project,
    explain_image,
    explain_project,
    image_details,
    measure_project,
)
from tests.conftest import run_job, write_label_png, write_rgb_png

CLASSES = ("NILM", "LSIL", "HSIL")


def _request(**changes) -> ClsTrainRequest:
    base = dict(
        backbone=TINY_BACKBONE, mask_backbone=TINY_BACKBONE, input_size=64, epochs=12,
        batch_size=8, lr=1e-3, patience=6, seed=0,
    )  # fmt: skip
    return ClsTrainRequest(**{**base, **changes})


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("cls")
    rows = ["image,class"]
    for name, sample in synth_dataset(36, seed=5, classes=CLASSES, size_range=(56, 80)):
        write_rgb_png(root / "src" / sample.label / f"{name}.png", sample.image)
        write_label_png(root / "masks" / f"{name}.png", sample.mask)
        rows.append(f"{name}.png,{sample.label}")
    (root / "truth.csv").write_text("\n".join(rows) + "\n")
    project = Project.init(root / "proj", actor="t")
    run_job(import_images(project, root / "src", actor="dr_a", masks_dir=root / "masks"))
    events, report = run_job(train_classification(project, _request(), actor="dr_a"))
    yield project, report, events, root
    project.close()


def test_training_stores_a_usable_self_describing_model(trained) -> None:
    project, report, events, _ = trained
    assert report.status == "finished" and report.class_names == list(CLASSES)
    assert report.n_train + report.n_val == 36 and report.n_val >= 6
    assert any(e.stage == "epoch" for e in events)
    # The validation set is scored at the end of training (3 classes: chance is 0.33).
    assert report.validation["accuracy"] >= 0.6, report.validation
    store = ModelStore(project)
    assert store.current_model("classification-bethesda") == report.model_id
    assert store.load_onnx(report.model_id)
    loaded = load_classifier(project)
    assert loaded.class_names == list(CLASSES) and loaded.uses_mask
    # The measurement model is in the checkpoint, and the record says it is joined.
    assert loaded.measurements is not None and loaded.measurements.class_names == CLASSES
    assert describe_classifier(loaded.config).endswith(", joined to a measurement model")
    assert any(e.message.startswith("validation macro-F1: network ") for e in events)
    # "ASC-US" has no example: reported, not a crash; the head has the three present classes.
    assert any("ASC-US" in e.message for e in events if e.level == "warning")


def test_classify_explain_export_and_evaluate(trained, tmp_path: Path) -> None:
    project, _, _, root = trained
    _, classified = run_job(classify_project(project, actor="dr_a"))
    assert classified.classified == 36 and not classified.skipped
    store = PredictionStore(project)
    preds = store.latest_predictions("bethesda")
    assert len(preds) == 36
    some = next(iter(preds.values()))
    assert set(some.probabilities) == set(CLASSES)
    assert sum(some.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= some.uncertainty <= 1.0 and some.mask_version_id is not None
    binary = store.latest_predictions("binary")
    assert len(binary) == 36  # derived from the Bethesda probabilities
    p = binary[some.image_id].probabilities["revisable"]
    assert p == pytest.approx(some.probabilities["LSIL"] + some.probabilities["HSIL"], abs=1e-6)

    evaluation = evaluate_classification(project, root / "truth.csv")
    assert evaluation.n_matched == 36 and evaluation.multiclass is not None
    assert evaluation.multiclass.accuracy >= 0.6  # measured 0.8-0.95 on this set
    assert evaluation.binary is not None and evaluation.binary.f1 >= 0.7
    assert set(evaluation.roc) == set(CLASSES)
    own = evaluate_classification(project)  # the project labels: says how many were trained on
    assert own.on_training_images == 36

    ids = [r.id for r in project.images()[:3]]
    _, explained = run_job(explain_project(project, image_ids=ids, flipping_steps=4))
    assert explained.explained == 3
    for image_id in ids:
        rec = store.heatmap_record(image_id)
        heat = store.load_heatmap(rec)
        image = project.image(image_id)
        assert heat.shape == (image.height, image.width)
        assert heat.min() >= 0.0 and heat.max() <= 1.0 and heat.max() > 0
        shares = rec.quality["shares"]
        assert sum(shares.values()) == pytest.approx(1.0, abs=1e-3)
        assert rec.quality["flipping_auc"] is not None

    out = tmp_path / "predictions.csv"
    _, exported = run_job(export_predictions(project, out))
    table = list(csv.DictReader(io.StringIO(out.read_text())))
    assert exported.rows == len(table) == 36
    header = list(table[0])
    expected = ["image", "pred_class", "prob_NILM", "prob_ASC-US", "prob_LSIL", "prob_HSIL",
                "pred_binary", "prob_revisable"]  # fmt: skip
    assert header[: len(expected)] == expected
    assert set(morphometry_columns()) <= set(header)
    names = {r.name for r in project.images()}
    assert {row["image"] for row in table} == names
    row = table[0]
    assert row["pred_class"] in CLASSES and row["pred_binary"] in ("revisable", "not-revisable")
    assert float(row["nucleus_area_px"]) > 0 and float(row["nc_ratio"]) > 0


def test_measurements_follow_the_class(trained) -> None:
    project, *_ = trained
    measured = measure_project(project)
    by_class: dict[str, list[float]] = {}
    for record in project.images():
        nc = measured[record.id].max_nc_ratio
        by_class.setdefault(record.class_label, []).append(nc)
    # The synthetic classes follow Bethesda: N:C rises from NILM to HSIL.
    assert np.median(by_class["NILM"]) < np.median(by_class["LSIL"]) < np.median(by_class["HSIL"])


def test_cancelled_training_keeps_its_best_model(trained) -> None:
    project, *_ = trained
    cancel = CancelToken()
    job = train_classification(project, _request(epochs=30, arch="image-only"), actor="t",
                               cancel=cancel)  # fmt: skip
    events = []
    try:
        while True:
            event = next(job)
            events.append(event)
            if event.stage == "epoch" and event.step == 2:
                cancel.cancel()
    except StopIteration as stop:
        report = stop.value
    assert report.status == "cancelled" and len(report.history) == 2
    assert ModelStore(project).checkpoint_path(report.model_id).is_file()


def test_clear_errors(tmp_path: Path, trained) -> None:
    with Project.init(tmp_path / "empty", actor="t") as empty:
        with pytest.raises(NotEnoughDataError, match="at least 4 images"):
            run_job(train_classification(empty, _request(), actor="t"))
        with pytest.raises(ProjectError, match="no bethesda classifier trained yet"):
            run_job(classify_project(empty, actor="t"))
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    project, *_ = trained
    with pytest.raises(ManifestError, match="no image column"):
        evaluate_classification(project, bad)


def test_onnx_engine_matches_the_torch_reference(trained) -> None:
    """ONNX Runtime (default) against torch eager on the trained model: same calls, same maps.

    Measured here: probabilities within 2e-7, heatmaps within 1e-6 (at image size), flipping
    AUCs within 1e-6; the test allows 1e-5, 1e-4 and 1e-4.
    """
    project, *_ = trained
    on_onnx, on_torch = load_classifier(project), load_classifier(project, engine="torch")
    assert on_onnx.onnx_bytes and on_torch.onnx_bytes is None
    runtime = classifier_runtime(on_onnx, "onnx", "cpu")
    assert runtime.closed_form and "onnxruntime" in runtime.device
    records = project.images()
    images = [project.load_image(r).rgb for r in records]
    masks = [project.current_mask(r.id)[1] for r in records]
    spec = ClassifierSpec.from_config(on_onnx.config)
    p_onnx = predict_class_probs(runtime.predictor(), images, masks, spec)
    p_torch = predict_class_probs(on_torch.model, images, masks, spec, device="cpu")
    assert (p_onnx.argmax(1) == p_torch.argmax(1)).all()
    assert np.abs(p_onnx - p_torch).max() <= 1e-5
    for image, mask in list(zip(images, masks, strict=True))[:4]:
        got = explain_image(on_onnx, image, mask, flipping_steps=4, device="cpu")
        ref = explain_image(on_torch, image, mask, flipping_steps=4, device="cpu", engine="torch")
        assert got[1] == ref[1] and got[0].shape == ref[0].shape == image.shape[:2]
        assert np.abs(got[0] - ref[0]).max() <= 1e-4
        for key in ("flipping_auc", "random_flipping_auc", "entropy"):
            assert got[2][key] == pytest.approx(ref[2][key], abs=1e-4), key
        assert got[2]["looks_at_background"] == ref[2]["looks_at_background"]


def test_classify_with_either_engine_stores_the_same_calls(trained) -> None:
    project, *_ = trained
    store = PredictionStore(project)
    ids = [r.id for r in project.images()[:8]]
    _, by_torch = run_job(classify_project(project, actor="t", image_ids=ids, engine="torch"))
    first = store.latest_predictions("bethesda")
    _, by_onnx = run_job(classify_project(project, actor="t", image_ids=ids))
    second = store.latest_predictions("bethesda")
    assert (by_torch.engine, by_onnx.engine) == ("torch", "onnx")
    assert "onnxruntime" in by_onnx.device
    for image_id in ids:
        assert first[image_id].pred_class == second[image_id].pred_class
        for name, p in first[image_id].probabilities.items():
            assert second[image_id].probabilities[name] == pytest.approx(p, abs=1e-5)
    with pytest.raises(ConfigError, match="unknown engine"):
        run_job(classify_project(project, actor="t", engine="tensorrt"))


def test_classify_can_average_the_eight_views(trained) -> None:
    """Stored probabilities are the 8-view mean with tta, else the crop's own; the review's
    heatmap (with the same setting) explains the class classify stored, with its confidence."""
    project, fused, *_ = trained  # the fusion network, joined to its measurement model
    model_id = fused.model_id  # (another test may have made an image-only model current)
    store = PredictionStore(project)
    records = project.images()[:6]
    ids = [r.id for r in records]
    loaded = load_classifier(project, model_id)
    assert loaded.measurements is not None
    spec = ClassifierSpec.from_config(loaded.config)
    images = [project.load_image(r).rgb for r in records]
    masks = [project.current_mask(r.id)[1] for r in records]
    runtime = classifier_runtime(loaded, "onnx", "cpu")
    for tta in (False, True):
        _, report = run_job(
            classify_project(project, actor="t", model_id=model_id, image_ids=ids, tta=tta)
        )
        assert report.tta is tta
        expected = predict_class_probs(runtime.predictor(), images, masks, spec, tta=tta)
        stored = store.latest_predictions("bethesda", model_id=model_id)
        for image_id, probs in zip(ids, expected, strict=True):
            got = [stored[image_id].probabilities[name] for name in loaded.class_names]
            np.testing.assert_allclose(got, probs, atol=1e-5)
    assert classify_project.__kwdefaults__["tta"] is CLS.tta  # one default for all
    assert explain_image.__kwdefaults__["tta"] is CLS.tta
    for image, mask, image_id in zip(images, masks, ids, strict=True):
        _, cls, quality = explain_image(
            loaded, image, mask, flipping_steps=0, device="cpu", tta=True
        )
        assert loaded.class_names[cls] == stored[image_id].pred_class
        assert quality["measurements_joined"]  # the class is the joint call's
        assert quality["confidence"] == pytest.approx(
            stored[image_id].probabilities[stored[image_id].pred_class], abs=1e-5
        )
        # Each opinion on the class explained, as the review's label shows them.
        alone = replace(spec, measurements=None)
        network = predict_class_probs(runtime.predictor(), [image], [mask], alone, tta=True)
        measured = loaded.measurements.probs(feature_matrix([image], [mask]))
        assert quality["network_confidence"] == pytest.approx(network[0, cls], abs=1e-5)
        assert quality["measurements_confidence"] == pytest.approx(measured[0, cls], abs=1e-6)


def test_an_export_without_cam_outputs_is_made_again(trained) -> None:
    project, report, *_ = trained
    store = ModelStore(project)
    data = store.load_onnx(report.model_id)
    graph = onnx.load_from_string(data)
    kept = [o for o in graph.graph.output if o.name == "probs"]
    del graph.graph.output[:]
    graph.graph.output.extend(kept)
    store.save_onnx(report.model_id, graph.SerializeToString())  # as older versions wrote it
    assert not has_cam_outputs(store.load_onnx(report.model_id))
    loaded = load_classifier(project, report.model_id)
    assert has_cam_outputs(loaded.onnx_bytes) and has_cam_outputs(store.load_onnx(report.model_id))
    store.onnx_path(report.model_id).unlink()  # none at all: made too
    assert has_cam_outputs(load_classifier(project, report.model_id).onnx_bytes)
    assert store.onnx_path(report.model_id).is_file()


def test_sessions_are_shared_between_loads_of_one_file(trained) -> None:
    # The review window loads the classifier for every heatmap: no new session each time.
    project, report, *_ = trained
    first = classifier_runtime(load_classifier(project, report.model_id), "onnx", "cpu")
    again = classifier_runtime(load_classifier(project, report.model_id), "onnx", "cpu")
    assert again is first
    on_torch = load_classifier(project, report.model_id, engine="torch")
    assert on_torch.onnx_key is None and classifier_runtime(on_torch, "torch", "cpu") is not first
    store = ModelStore(project)
    store.save_onnx(report.model_id, store.load_onnx(report.model_id))  # a new file: new session
    assert classifier_runtime(load_classifier(project, report.model_id), "onnx", "cpu") is not first


def test_input_size_auto_fits_the_images_and_fine_tuning_keeps_the_parents(trained) -> None:
    # Images of 56-80 px: the median side rounded up to 32 is 96 (within the 64-128 rule).
    project, report, _, _ = trained
    store = ModelStore(project)
    auto = _request(input_size=None, epochs=1, patience=1)
    events, chosen = run_job(train_classification(project, auto, actor="dr_a"))
    assert store.load(chosen.model_id)[0]["input_size"] == 96
    assert any("input 96 px (chosen from the images)" in e.message for e in events)
    tuned = _request(input_size=None, epochs=1, patience=1, init=report.model_id)
    _, child = run_job(train_classification(project, tuned, actor="dr_a"))
    assert store.load(child.model_id)[0]["input_size"] == 64  # the parent's, not the rule's


@pytest.mark.slow
def test_classify_gives_the_same_probabilities_on_dask_workers(trained) -> None:
    from cytoreview.workflows.executors import ExecutorSpec

    project, _, _, _ = trained
    store = PredictionStore(project)
    runs = {}
    for name, spec in [("here", ExecutorSpec("none")), ("workers", ExecutorSpec("local", 2))]:
        _, report = run_job(classify_project(project, actor="t", batch_size=5, compute=spec))
        runs[name] = (report, {t: store.latest_predictions(t) for t in ("bethesda", "binary")})
    here, here_preds = runs["here"]
    there, there_preds = runs["workers"]
    assert here.driver == "this process" and there.driver == "LocalCluster: 2 worker processes"
    assert here.classified == there.classified == 36 and here.counts == there.counts
    for task in ("bethesda", "binary"):
        assert len(there_preds[task]) == 36
        for image_id, pred in here_preds[task].items():
            other = there_preds[task][image_id]
            assert other.id != pred.id  # a new prediction, with the same numbers
            assert other.probabilities == pred.probabilities and other.pred_class == pred.pred_class
            assert other.mask_version_id == pred.mask_version_id


def test_the_review_says_when_the_call_joins_measurements(trained) -> None:
    project, fused, *_ = trained
    image_id = project.images()[0].id
    run_job(classify_project(project, actor="t", model_id=fused.model_id, image_ids=[image_id]))
    details = image_details(project, image_id, measure=False)
    assert details.prediction is not None and details.prediction.model_id == fused.model_id
    assert details.measurements_joined
    assert details.prediction_source().startswith(
        f"probabilities from {fused.model_id} and its measurement model, "
    )
    # A model trained without one (here: an image-only network) says nothing of the kind.
    _, plain = run_job(train_classification(
        project, _request(epochs=1, arch="image-only"), actor="t"
    ))  # fmt: skip
    run_job(classify_project(project, actor="t", model_id=plain.model_id, image_ids=[image_id]))
    details = image_details(project, image_id, measure=False)
    assert details.prediction.model_id == plain.model_id and not details.measurements_joined
    assert "measurement" not in details.prediction_source()
