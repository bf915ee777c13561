"""Teaching mode: the blind case hides every hint of the answer; an answer is stored per trainee,
reveals the truth, the model, the mask and the heatmap, and updates the score."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoreview.storage.predictions import PredictionInput, PredictionStore
from cytoreview.storage.project import Project
from cytoreview.types import Provenance
from tests.conftest import PATIENCE_MS
from tests.gui.conftest import TEST_DELAY_MS, make_project

pytestmark = pytest.mark.gui


def _fill(root: Path, truth: dict[str, np.ndarray]) -> None:
    """Auto masks, a model call (always HSIL) and a stored heatmap for every image."""
    project = Project.open(root)
    try:
        store = PredictionStore(project)
        classes = list(project.scheme.classes)
        preds = []
        for name, mask in truth.items():
            record = project.image(name)
            project.save_mask(record.id, mask, Provenance.AUTO, actor="model", uncertainty=0.2)
            probs = {c: (0.55 if c == "HSIL" else 0.15) for c in classes}
            preds.append(PredictionInput(record.id, "HSIL", probs, 0.5))
            store.save_heatmap(record.id, "cls-hand", "gradcam++", "HSIL",
                               np.full(mask.shape, 0.5, np.float32), {})  # fmt: skip
        store.save_predictions("cls-hand", "bethesda", preds, actor="t")
    finally:
        project.close()


@pytest.fixture
def teach_wb(make_napari_viewer, tmp_path: Path):
    from cytoreview.gui.app import build_workbench

    synth = make_project(tmp_path, n=4)
    _fill(synth.root, synth.truth)
    viewer = make_napari_viewer(show=True)  # shown: dock visibility is real
    wb = build_workbench(viewer, synth.root, actor="teacher", autosave_delay_ms=TEST_DELAY_MS)
    yield wb
    wb.close()


def _assert_blind(wb, panel) -> None:
    truth = wb.state.project.image(panel.image_id).class_label
    assert panel.blind and wb.state.current_image_id == panel.image_id
    assert not wb.viewer.layers["mask"].visible
    assert not panel.heatmap.visible
    for key in ("project", "annotate", "review", "classifier", "train"):
        assert not wb.docks[key].isVisible(), key  # class column, title, model call: hidden
    assert wb.docks["teach"].isVisible()
    assert not panel.reveal_box.isVisible()
    for label in (panel.result_label, panel.truth_label, panel.model_label):
        assert label.text() == ""
    assert truth not in panel.case_label.text()
    assert all(b.isEnabled() for b in panel.answer_buttons.values())
    assert all(s.isEnabled() for s in panel.answer_shortcuts)


def test_blind_answer_reveal_and_score(teach_wb, qtbot) -> None:
    wb = teach_wb
    panel = wb.panels["teach"]
    wb.docks["teach"].raise_()
    assert panel.start("anna")
    qtbot.waitUntil(lambda: _assert_blind(wb, panel), timeout=PATIENCE_MS)
    project = wb.state.project
    first = panel.image_id
    truth = project.image(first).class_label
    classes = list(project.scheme.classes)
    wrong = next(c for c in classes if c != truth)

    feedback = panel.answer(wrong)
    assert feedback is not None and not feedback.correct and feedback.truth == truth
    stored = PredictionStore(project).trainee_answers("anna")
    assert [(a.image_id, a.answer, a.truth) for a in stored] == [(first, wrong, truth)]
    assert stored[0].model_pred == "HSIL" and stored[0].seconds is not None
    # Revealed: the truth, the model, the mask and the heatmap; the score and confusion.
    assert not panel.blind and panel.reveal_box.isVisible()
    assert panel.truth_label.text() == f"Expert label: {truth}"
    assert panel.model_label.text() == "Model: HSIL (55%)"
    assert panel.bars.values()["HSIL"] == pytest.approx(0.55)
    assert wb.viewer.layers["mask"].visible and panel.heatmap.visible
    assert wb.viewer.layers["heatmap"].data.shape == wb.viewer.layers["mask"].data.shape
    assert panel.score_label.text().startswith("anna: 0 / 1 right (0%)")
    i, j = classes.index(truth), classes.index(wrong)
    assert panel.confusion.item(i, j).text() == "1" and panel.confusion.item(i, i).text() == "0"
    assert not any(s.isEnabled() for s in panel.answer_shortcuts)
    assert panel.answer(truth) is None  # no second answer to a revealed case

    # Next case: blind again, never the same image twice in a row; answer right with a key index.
    assert panel.next() != first
    _assert_blind(wb, panel)
    second_truth = project.image(panel.image_id).class_label
    feedback = panel.answer_index(classes.index(second_truth))
    assert feedback is not None and feedback.correct and feedback.score.n == 2
    assert panel.score_label.text().startswith("anna: 1 / 2 right (50%)")
    assert panel.result_label.text() == "Right!"

    # Ending the session brings the other docks and the mask back.
    panel.stop()
    qtbot.waitUntil(wb.docks["project"].isVisible, timeout=PATIENCE_MS)
    assert wb.viewer.layers["mask"].visible
    assert not panel.answers_box.isVisible()
    assert PredictionStore(project).trainees() == ["anna"]


@pytest.mark.parametrize("target", ["canvas", "teach_panel"])
def test_number_keys_answer_a_blind_case(teach_wb, qtbot, target: str) -> None:
    """A real key press, where the trainee's focus is: on the image or on the teach dock.

    The keys 1-4 are also napari's Labels-mode keys; while a case is blind they must answer.
    """
    from qtpy.QtCore import Qt

    wb = teach_wb
    panel = wb.panels["teach"]
    wb.docks["teach"].raise_()
    assert panel.start("ben")
    window = wb.viewer.window._qt_window
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=PATIENCE_MS)
    widget = wb.viewer.window._qt_viewer.canvas.native if target == "canvas" else panel
    widget.setFocus()
    qtbot.waitUntil(widget.hasFocus, timeout=PATIENCE_MS)
    project = wb.state.project
    classes = list(project.scheme.classes)
    truth = project.image(panel.image_id).class_label
    key = classes.index(truth) + 1
    qtbot.keyClick(widget, getattr(Qt.Key, f"Key_{key}"))
    qtbot.waitUntil(lambda: not panel.blind, timeout=PATIENCE_MS)
    stored = PredictionStore(project).trainee_answers("ben")
    assert [(a.answer, a.truth) for a in stored] == [(truth, truth)]
    assert panel.result_label.text() == "Right!"
    # Revealed: the number keys are off again (napari's label keys get them back).
    qtbot.keyClick(widget, Qt.Key.Key_1)
    qtbot.wait(50)
    assert len(PredictionStore(project).trainee_answers("ben")) == 1


@pytest.fixture
def seven_class_wb(make_napari_viewer, tmp_path: Path):
    """A herlev project (seven classes); every image belongs to the 5th, 6th or 7th class."""
    from cytoreview.data.synthetic import synth_dataset
    from cytoreview.gui.app import build_workbench
    from cytoreview.types import CLASS_SCHEMES
    from cytoreview.workflows.importing import import_images
    from tests.conftest import run_job, write_rgb_png

    scheme = CLASS_SCHEMES["herlev"]
    assert len(scheme.classes) == 7
    for i, (name, sample) in enumerate(synth_dataset(6, seed=3, size_range=(48, 64))):
        write_rgb_png(tmp_path / "src" / scheme.classes[4 + i % 3] / f"{name}.png", sample.image)
    with Project.init(tmp_path / "proj", actor="t", scheme=scheme) as project:
        run_job(import_images(project, tmp_path / "src", actor="t"))
    viewer = make_napari_viewer(show=True)
    wb = build_workbench(viewer, tmp_path / "proj", actor="t", autosave_delay_ms=TEST_DELAY_MS)
    yield wb
    wb.close()


def test_keys_5_to_7_answer_in_a_seven_class_project(seven_class_wb, qtbot) -> None:
    from qtpy.QtCore import Qt

    wb = seven_class_wb
    panel = wb.panels["teach"]
    wb.docks["teach"].raise_()
    assert panel.start("cleo")
    classes = list(wb.state.project.scheme.classes)
    assert list(panel.answer_buttons) == classes
    assert panel.answer_buttons[classes[6]].text() == f"7 {classes[6]}"
    assert "keys 1-7" in panel.case_label.text()
    window = wb.viewer.window._qt_window
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=PATIENCE_MS)
    canvas = wb.viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.waitUntil(canvas.hasFocus, timeout=PATIENCE_MS)
    answered = []
    for _ in range(3):
        truth = wb.state.project.image(panel.image_id).class_label
        key = classes.index(truth) + 1
        assert key >= 5
        qtbot.keyClick(canvas, getattr(Qt.Key, f"Key_{key}"))
        qtbot.waitUntil(lambda: not panel.blind, timeout=PATIENCE_MS)
        answered.append(truth)
        assert panel.result_label.text() == "Right!"
        panel.next()
    stored = PredictionStore(wb.state.project).trainee_answers("cleo")
    assert [(a.answer, a.truth) for a in stored] == [(t, t) for t in answered]
    # Key 8 has no class here: a blind case stays unanswered.
    qtbot.keyClick(canvas, Qt.Key.Key_8)
    qtbot.wait(50)
    assert panel.blind and len(PredictionStore(wb.state.project).trainee_answers("cleo")) == 3
