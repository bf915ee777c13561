"""The Export dock: masks, predictions CSV and the HTML report written in the background;
scores of stored predictions; the pixel size."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from qtpy.QtWidgets import QPlainTextEdit

from cytoreview.defaults import PIXEL_SIZE_UM_RANGE
from cytoreview.storage.predictions import PredictionInput, PredictionStore
from tests.conftest import PATIENCE_MS
from tests.gui.conftest import make_project

pytestmark = pytest.mark.gui


@pytest.fixture
def export_wb(make_napari_viewer, tmp_path: Path):
    from cytoreview.gui.app import build_workbench

    synth = make_project(tmp_path / "p", n=8, painted=8)
    viewer = make_napari_viewer()
    wb = build_workbench(viewer, synth.root, actor="tester")
    wb.synth = synth  # the true masks, for the tests
    project = wb.state.project
    classes = list(project.scheme.classes)
    rows = []
    for record in project.images():  # hand-made calls: right for all but the first
        call = record.class_label if rows else "HSIL"
        probs = {c: (0.7 if c == call else 0.1) for c in classes}
        rows.append(PredictionInput(record.id, call, probs, 0.3))
    PredictionStore(project).save_predictions("cls-hand", "bethesda", rows, actor="t")
    yield wb
    wb.close()


def test_exports_run_in_the_background_and_write_files(export_wb, qtbot, tmp_path: Path) -> None:
    panel = export_wb.panels["export"]
    with qtbot.waitSignal(panel.written, timeout=PATIENCE_MS):
        assert panel.export_masks(tmp_path / "masks")
    assert len(list((tmp_path / "masks").glob("*.png"))) == 8
    assert "8 mask(s) written" in panel.status.text()

    with qtbot.waitSignal(panel.written, timeout=PATIENCE_MS):
        assert panel.export_predictions(tmp_path / "p.csv")
    with (tmp_path / "p.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 8 and table[0]["pred_class"] and float(table[0]["nucleus_area_px"]) > 0

    with qtbot.waitSignal(panel.written, timeout=PATIENCE_MS):
        assert panel.write_report(tmp_path / "report")
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Classification" in html and "Gallery" in html
    assert panel.open_button.isEnabled()


def test_scores_and_pixel_size(export_wb) -> None:
    panel = export_wb.panels["export"]
    result = panel.evaluate(None)  # no test split here: all labels, and it says so
    assert result is not None and result.n_matched == 8
    assert result.multiclass.accuracy == pytest.approx(7 / 8)
    assert "Accuracy 0.875" in panel.scores_label.text()
    panel.set_pixel_size(0.25)
    project = export_wb.state.project
    assert project.pixel_size(project.images()[0]) == 0.25
    panel.set_pixel_size(0.005)  # below the one rule's range: refused, said, nothing changed
    assert "not a microscope pixel size" in panel.status.text()
    assert project.pixel_size(project.images()[0]) == 0.25
    assert panel.pixel_size.maximum() == PIXEL_SIZE_UM_RANGE[1]
    panel.set_pixel_size(0.0)
    assert project.pixel_size(project.images()[0]) is None
    bad = Path(project.root.parent / "bad.csv")
    bad.write_text("nothing,useful\n1,2\n")
    assert panel.evaluate(bad) is None and "Not scored" in panel.scores_label.text()


def test_mask_scores_against_a_folder_of_true_masks(export_wb, qtbot, tmp_path: Path) -> None:
    import cv2
    import numpy as np

    panel = export_wb.panels["export"]
    truth = tmp_path / "truth"
    truth.mkdir()
    names = sorted(export_wb.synth.truth)
    for name in names[:-1]:  # the last image has no true mask
        cv2.imwrite(str(truth / f"{name}.png"), export_wb.synth.truth[name].astype(np.uint8))
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.evaluate_masks(truth)
    text = panel.mask_scores_label.text()
    # The painted masks are the true ones: perfect scores, reported per kind too.
    assert "all masks (7): cytoplasm Dice 1.000" in text and "manual (7)" in text
    assert "1 image(s) without a true mask" in text
    assert not panel.open_button.isEnabled()  # nothing was written
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.evaluate_masks(tmp_path / "nowhere")
    assert "Not scored" in panel.mask_scores_label.text()
    assert "ground-truth folder does not exist" in panel.mask_scores_label.text()


def test_audit_log_window(export_wb, qtbot) -> None:
    panel = export_wb.panels["export"]
    panel.set_pixel_size(0.25)
    lines = panel.audit_text().splitlines()
    assert "tester" in lines[0] and "pixel" in lines[0]  # newest first
    assert any("import" in line for line in lines)
    dialog = panel.show_audit()
    qtbot.addWidget(dialog)
    assert dialog.isVisible() and "tester" in dialog.findChild(QPlainTextEdit).toPlainText()
