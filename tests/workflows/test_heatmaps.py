"""Which heatmap may be shown: only the model in use's (never an older classifier's), labelled
with its model and date, computed when missing with the quality checks of ``cytoreview explain``
through the one get-or-compute function that the CLI and the workbench share."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cytoreview.defaults import CLS
from cytoreview.errors import ProjectError
from cytoreview.models.classifier_blocks import TINY_BACKBONE
from cytoreview.storage.predictions import PredictionInput, PredictionStore
from cytoreview.storage.project import Project
from cytoreview.workflows.classification import ClsTrainRequest, train_classification
from cytoreview.workflows.heatmaps import (
    explain_project,
    get_or_compute_heatmap,
    heatmap_model,
    stored_heatmap,
)
from cytoreview.workflows.importing import import_images
from tests.conftest import run_job, write_label_png, write_rgb_png

OLD_MODEL = "cls-older-classifier"


def make_classified_project(root: Path, n: int = 8) -> Project:
    """A small project with masks and a tiny trained (current) classifier (~10 s on 2 CPUs)."""
    from cytoreview.data.synthetic import synth_dataset

    for name, sample in synth_dataset(n, seed=5, classes=("NILM", "HSIL"), size_range=(40, 48)):
        write_rgb_png(root / "src" / sample.label / f"{name}.png", sample.image)
        write_label_png(root / "masks" / f"{name}.png", sample.mask)
    project = Project.init(root / "proj", actor="t")
    run_job(import_images(project, root / "src", actor="t", masks_dir=root / "masks"))
    request = ClsTrainRequest(backbone=TINY_BACKBONE, mask_backbone=TINY_BACKBONE, input_size=32,
                              epochs=1, batch_size=8, patience=1, device="cpu")  # fmt: skip
    _, report = run_job(train_classification(project, request, actor="t"))
    assert report.status == "finished"
    return project


def store_old_heatmap(project: Project, image_id: int) -> np.ndarray:
    """A map an older classifier left behind (a ramp: recognisable)."""
    record = project.image(image_id)
    ramp = np.tile(np.linspace(0, 1, record.width, dtype=np.float32), (record.height, 1))
    PredictionStore(project).save_heatmap(image_id, OLD_MODEL, "gradcam++", "NILM", ramp, {})
    return ramp


@pytest.fixture(scope="module")
def classified(tmp_path_factory: pytest.TempPathFactory):
    project = make_classified_project(tmp_path_factory.mktemp("heat"))
    yield project
    project.close()


def test_an_older_models_map_is_never_returned_as_current(classified: Project) -> None:
    project = classified
    image_id = project.images()[0].id
    ramp = store_old_heatmap(project, image_id)
    current = heatmap_model(project, image_id)
    assert current is not None and current != OLD_MODEL
    assert stored_heatmap(project, image_id) is None  # the old model's map is not offered
    heatmap = get_or_compute_heatmap(project, image_id)
    assert heatmap.computed and heatmap.model_id == current
    assert heatmap.pixels.shape == ramp.shape and not np.allclose(heatmap.pixels, ramp, atol=0.01)
    assert heatmap.pixels.min() >= 0 and heatmap.pixels.max() <= 1
    # The quality checks of `cytoreview explain`: region shares and the pixel-flipping check.
    assert set(heatmap.quality["shares"]) >= {"nucleus", "cytoplasm", "background"}
    assert heatmap.quality["flipping_auc"] is not None
    label = heatmap.label()
    assert current in label and heatmap.created_at[:10] in label and "UTC" in label
    # A classifier joined to measurements: the map is said to be the network's part.
    joined = heatmap.quality.get("measurements_joined")
    assert joined is CLS.measurements  # a fusion network: joined by default
    assert ("the map shows the network's evidence" in label) == joined
    opinions = re.search(r"network \((\d+) %\) and the measurements \((\d+) %\)", label)
    assert (opinions is not None) == joined
    if opinions is not None:
        assert int(opinions[1]) == round(100 * heatmap.quality["network_confidence"])
    again = get_or_compute_heatmap(project, image_id)  # stored now: read, not computed
    assert not again.computed and again.model_id == current
    assert np.allclose(again.pixels, heatmap.pixels, atol=1 / 250)
    # The older map is still stored (never replaced), just never shown as current.
    old = stored_heatmap(project, image_id, model_id=OLD_MODEL)
    assert old is not None and np.allclose(old.pixels, ramp, atol=1 / 250)


def test_the_cli_pass_goes_through_the_same_function(classified: Project) -> None:
    image_ids = [im.id for im in classified.images()[:2]]
    _, report = run_job(explain_project(classified, image_ids=image_ids, flipping_steps=2))
    assert report.explained == 2 and report.model_id == heatmap_model(classified, image_ids[0])
    for image_id in image_ids:
        stored = stored_heatmap(classified, image_id)
        assert stored is not None and stored.model_id == report.model_id


def test_without_a_classifier_the_shown_predictions_model_decides(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (30, 20, 3), dtype=np.uint8)
    write_rgb_png(tmp_path / "src" / "HSIL" / "a.png", rgb)
    with Project.init(tmp_path / "p", actor="t") as project:
        run_job(import_images(project, tmp_path / "src", actor="t"))
        image_id = project.image("a").id
        with pytest.raises(ProjectError, match="no classifier"):
            get_or_compute_heatmap(project, image_id)
        ramp = store_old_heatmap(project, image_id)
        assert stored_heatmap(project, image_id) is None  # no prediction: no model to show
        probs = {c: float(c == "HSIL") for c in project.scheme.classes}
        PredictionStore(project).save_predictions(
            "cls-elsewhere", "bethesda", [PredictionInput(image_id, "HSIL", probs, 0.0)], actor="t"
        )
        assert heatmap_model(project, image_id) == "cls-elsewhere"
        assert stored_heatmap(project, image_id) is None  # the older model's, not this one's
        PredictionStore(project).save_heatmap(image_id, "cls-elsewhere", "gradcam++", "HSIL",
                                              1 - ramp, {})  # fmt: skip
        shown = stored_heatmap(project, image_id)
        assert shown is not None and shown.model_id == "cls-elsewhere"
        assert np.allclose(shown.pixels, 1 - ramp, atol=1 / 250)
