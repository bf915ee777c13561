"""The review panel on hand-made predictions and auto masks (no model needed): queue order,
accept / skip / call, the cell table and a stored heatmap in the ``heatmap`` layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoreview.storage.predictions import PredictionInput, PredictionStore
from cytoreview.storage.project import Project
from cytoreview.types import Provenance
from tests.gui.conftest import TEST_DELAY_MS, make_project

pytestmark = pytest.mark.gui

#: image index -> (mask uncertainty, predicted class, prediction uncertainty)
PLAN = {0: (0.10, "NILM", 0.20), 1: (0.05, "HSIL", 0.90), 2: (0.60, "LSIL", 0.05),
        3: (0.30, "HSIL", 0.35), 4: (0.02, "NILM", 0.01), 5: (0.15, "ASC-US", 0.70)}  # fmt: skip


def _fill(root: Path, truth: dict[str, np.ndarray]) -> dict[str, int]:
    project = Project.open(root)
    try:
        names = sorted(truth)
        classes = list(project.scheme.classes)
        preds, ids = [], {}
        for i, (mask_unc, pred, pred_unc) in PLAN.items():
            image_id = project.image(names[i]).id
            ids[names[i]] = image_id
            project.save_mask(image_id, truth[names[i]], Provenance.AUTO, actor="model",
                              uncertainty=mask_unc)  # fmt: skip
            probs = {c: (0.7 if c == pred else 0.1) for c in classes}
            preds.append(PredictionInput(image_id, pred, probs, pred_unc))
        PredictionStore(project).save_predictions("cls-hand", "bethesda", preds, actor="t")
    finally:
        project.close()
    return ids


@pytest.fixture
def review_wb(make_napari_viewer, tmp_path: Path):
    from cytoreview.gui.app import build_workbench

    synth = make_project(tmp_path, n=6)
    ids = _fill(synth.root, synth.truth)
    viewer = make_napari_viewer()
    wb = build_workbench(viewer, synth.root, actor="dr_a", autosave_delay_ms=TEST_DELAY_MS)
    wb.ids = ids
    wb.names = sorted(synth.truth)
    yield wb
    wb.close()


def test_queue_follows_uncertainty_and_accept_skip_call_are_stored(review_wb, qtbot) -> None:
    wb = review_wb
    panel = wb.panels["review"]
    names = wb.names
    # priority = max(mask, prediction uncertainty): 0.90, 0.70, 0.60, 0.35, 0.20, 0.02
    expected = [names[i] for i in (1, 5, 2, 3, 0, 4)]
    assert panel.queue_names() == expected
    assert [panel.queue.item(r, 0).text() for r in range(6)] == expected
    assert panel.queue.item(0, 1).text() == "0.90"
    assert "auto mask to check" in panel.queue.item(0, 5).text()

    panel.open_row(0)
    qtbot.waitUntil(lambda: panel.current is not None and panel.current.name == names[1])
    bars = panel.bars.values()
    assert bars["HSIL"] == pytest.approx(0.7) and bars["NILM"] == pytest.approx(0.1)
    # The cell table measures the open mask: one synthetic cell, N:C from the truth.
    truth = wb.viewer.layers["mask"].data
    assert panel.cells.rowCount() >= 1
    nucleus = int((truth == 2).sum())
    assert panel.cells.cell_text(0, 1).replace(",", "") == str(nucleus)

    # Accept: a new approved version; the queue moves on to the next item.
    panel.accept()
    project = wb.state.project
    assert project.mask_versions(wb.ids[names[1]])[-1].provenance is Provenance.APPROVED
    assert wb.state.current_image_id == wb.ids[names[5]]
    qtbot.waitUntil(lambda: panel.current is not None and panel.current.name == names[5])

    # Skip: the item goes to the end of the queue.
    panel.skip()
    assert panel.queue_names()[-1] == names[5]
    assert panel.queue.item(len(panel.items) - 1, 0).text().endswith("(skipped)")
    assert wb.state.current_image_id == panel.items[0].image_id

    # The reviewer's own call is stored beside the model's and shows as a disagreement.
    wb.state.open_image(wb.ids[names[3]])
    qtbot.waitUntil(lambda: panel.current is not None and panel.current.name == names[3])
    panel.record_call("LSIL")
    call = PredictionStore(project).latest_reviews()[wb.ids[names[3]]]
    assert call.class_call == "LSIL" and call.reviewer == "dr_a"
    rows = [panel.disagreement_list.item(i).text() for i in range(panel.disagreement_list.count())]
    assert any(r.startswith(f"{names[3]}: model HSIL") and "expert LSIL" in r for r in rows)


def test_stored_heatmap_shows_in_a_layer_with_the_image_shape(review_wb, qtbot) -> None:
    wb = review_wb
    panel = wb.panels["review"]
    project = wb.state.project
    image_id = wb.ids[wb.names[2]]
    record = project.image(image_id)
    ramp = np.tile(np.linspace(0, 1, record.width, dtype=np.float32), (record.height, 1))
    PredictionStore(project).save_heatmap(image_id, "cls-hand", "gradcam++", "LSIL", ramp, {})
    wb.state.open_image(image_id)
    # (The workbench opened its first image on start: wait for this one's details.)
    qtbot.waitUntil(lambda: panel.current is not None and panel.current.image_id == image_id)
    assert "heatmap" not in wb.viewer.layers  # nothing until asked for
    panel.toggle_heatmap()
    layer = wb.viewer.layers["heatmap"]
    assert layer.data.shape == wb.viewer.layers["image"].data.shape[:2]
    assert layer.visible and np.allclose(layer.data, ramp, atol=1 / 250)
    # Labelled with the model that made it (the model of the probabilities shown) and its date.
    assert "model cls-hand, made" in panel.heatmap_status.text()
    assert panel.model_label.text().startswith("probabilities from cls-hand")
    panel.colormap_combo.setCurrentText("viridis")
    panel.opacity_slider.setValue(30)
    assert layer.colormap.name == "viridis" and layer.opacity == pytest.approx(0.3)
    panel.toggle_heatmap()
    assert not layer.visible
    # Another image without a stored map and no classifier: an empty, hidden layer.
    panel.toggle_heatmap()
    wb.state.open_image(wb.ids[wb.names[0]])
    qtbot.waitUntil(lambda: panel.current is not None and panel.current.name == wb.names[0])
    other = project.image(wb.ids[wb.names[0]])
    assert layer.data.shape == (other.height, other.width) and not layer.visible
    assert "no classifier" in panel.heatmap_status.text()


def test_the_heatmap_is_the_current_models_never_an_older_ones(make_napari_viewer, tmp_path,
                                                               qtbot) -> None:  # fmt: skip
    """An older classifier's stored map is not shown beside the current model: the current
    model's is computed (with `cytoreview explain`'s checks), shown and labelled with its id."""
    from cytoreview.gui.app import build_workbench
    from cytoreview.workflows.classification import current_classifier_id
    from tests.conftest import PATIENCE_MS
    from tests.workflows.test_heatmaps import OLD_MODEL, make_classified_project, store_old_heatmap

    project = make_classified_project(tmp_path)
    image_id = project.images()[1].id
    ramp = store_old_heatmap(project, image_id)
    current = current_classifier_id(project, "bethesda")
    project.close()
    viewer = make_napari_viewer()
    wb = build_workbench(viewer, tmp_path / "proj", actor="dr_a", autosave_delay_ms=TEST_DELAY_MS)
    try:
        panel = wb.panels["review"]
        wb.state.open_image(image_id)
        with qtbot.waitSignal(panel.heatmap.shown, timeout=PATIENCE_MS):
            panel.toggle_heatmap()
        layer = wb.viewer.layers["heatmap"]
        assert layer.metadata["model_id"] == current != OLD_MODEL
        assert layer.data.shape == ramp.shape and not np.allclose(layer.data, ramp, atol=0.01)
        status = panel.heatmap_status.text()
        assert current in status and "made" in status and "UTC" in status
        assert OLD_MODEL not in status
        stored = PredictionStore(wb.state.project).heatmap_record(image_id, model_id=current)
        assert stored is not None and stored.quality["flipping_auc"] is not None
    finally:
        wb.close()
