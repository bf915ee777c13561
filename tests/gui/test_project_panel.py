"""The project panel: open, import, the image table (filters, sorting, 2000 rows), navigation."""

from __future__ import annotations

from pathlib import Path

import pytest
from qtpy.QtCore import Qt
from qtpy.QtTest import QTest

from cytoreview.gui.image_table import (
    COLUMNS,
    ImageFilterProxy,
    ImageRow,
    ImageTableModel,
)
from cytoreview.storage.project import Project
from tests.conftest import PATIENCE_MS, cell_image, write_rgb_png
from tests.gui.conftest import make_project

pytestmark = pytest.mark.gui


def table_rows(panel) -> list[tuple[str, ...]]:
    proxy = panel.proxy
    return [
        tuple(str(proxy.index(r, c).data()) for c in range(len(COLUMNS)))
        for r in range(proxy.rowCount())
    ]


def test_opening_a_project_fills_the_table_and_the_cockpit(workbench) -> None:
    panel = workbench.project_panel
    rows = table_rows(panel)
    assert [r[0] for r in rows] == sorted(workbench.synth.truth)
    assert {r[1] for r in rows} == {"NILM", "ASC-US", "LSIL", "HSIL"}
    assert {r[2] for r in rows} == {"none"}
    assert panel.count_label.text() == "8 of 8 images"
    assert "proj" in panel.path_label.text()
    # No seed set yet: the cockpit says so, and the table's seed column is empty.
    assert panel.cockpit._bars["NILM"].format() == "no seeds picked"
    panel.pick_seeds(1)
    assert sum(r[3] == "seed" for r in table_rows(panel)) == 4  # one per class
    bar = panel.cockpit._bars["HSIL"]
    assert (bar.value(), bar.maximum(), bar.format()) == (0, 1, "0 / 1")
    assert "NILM: 2 images, 0 painted" in " ".join(
        f"{k}: {v.text()}" for k, v in panel.cockpit._counts.items()
    )


def test_create_and_open_projects_from_the_panel(make_napari_viewer, tmp_path: Path) -> None:
    from cytoreview.gui.app import build_workbench

    wb = build_workbench(make_napari_viewer(), actor="t")
    panel = wb.project_panel
    assert wb.state.project is None and not panel.import_button.isEnabled()
    assert panel.open_project(tmp_path / "nowhere") is None  # shown, not raised
    assert wb.messages[-1][0] == "error" and "not a CytoReview project" in wb.messages[-1][1]
    project = panel.create_project(tmp_path / "herlev", "herlev")
    assert project is not None and panel.import_button.isEnabled()
    classes = [panel.class_filter.itemText(i) for i in range(panel.class_filter.count())]
    assert classes[1] == "normal_superficiel" and classes[-1] == "(no class)"
    assert panel.count_label.text() == "0 of 0 images"
    assert "normal_superficiel: no images in the project" in panel.cockpit.warnings.text()
    assert panel.create_project(tmp_path / "herlev") is None  # exists already: an error line
    wb.close()


def test_a_class_without_images_is_flagged(make_napari_viewer, tmp_path: Path) -> None:
    from cytoreview.gui.app import build_workbench

    project = make_project(tmp_path, n=3)  # NILM, ASC-US, LSIL: no HSIL image
    wb = build_workbench(make_napari_viewer(), project.root, actor="t")
    assert "HSIL: no images in the project" in wb.project_panel.cockpit.warnings.text()
    wb.close()


def test_filters_and_sorting(workbench) -> None:
    panel = workbench.project_panel
    panel.class_filter.setCurrentIndex(panel.class_filter.findData("HSIL"))
    assert [r[1] for r in table_rows(panel)] == ["HSIL", "HSIL"]
    assert panel.count_label.text() == "2 of 8 images"
    panel.class_filter.setCurrentIndex(0)
    panel.name_filter.setText("0003")
    assert [r[0] for r in table_rows(panel)] == ["syn_0003_lsil"]
    panel.name_filter.setText("")
    panel.status_filter.setCurrentIndex(panel.status_filter.findData("approved"))
    assert table_rows(panel) == []
    panel.status_filter.setCurrentIndex(0)
    panel.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)  # by class name
    assert [r[1] for r in table_rows(panel)] == ["ASC-US"] * 2 + ["HSIL"] * 2 + ["LSIL"] * 2 + [
        "NILM"
    ] * 2


def test_the_table_handles_2000_images(qtbot) -> None:
    """Sort, filter and single-row updates at scale (their speed: bench_gui_ops.py)."""
    model, proxy = ImageTableModel(), ImageFilterProxy()
    proxy.setSourceModel(model)
    classes = ["NILM", "ASC-US", "LSIL", "HSIL"]
    rows = [ImageRow(i, f"img_{i:05d}", classes[i % 4], "none", i % 10 == 0) for i in range(2000)]
    model.set_rows(rows)
    proxy.sort(0, Qt.SortOrder.DescendingOrder)
    proxy.set_filter(class_label="HSIL")
    filtered = proxy.rowCount()
    proxy.set_filter(class_label=None, seeds_only=True)
    seeds = proxy.rowCount()
    proxy.set_filter(seeds_only=False)
    for i in range(0, 2000, 20):  # 100 single-row status updates (autosaves)
        model.set_status({i: "manual"})
    assert (filtered, seeds) == (500, 200)
    assert proxy.image_id(0) == 1999  # sorted by name, descending
    assert proxy.proxy_row_of(1999) == 0 and proxy.proxy_row_of(5000) is None
    assert model.row(20).status == "manual" and model.row(21).status == "none"


def test_double_click_opens_the_image(make_napari_viewer, qtbot, synth_project) -> None:
    from cytoreview.gui.app import build_workbench

    viewer = make_napari_viewer(show=True)  # clicks need a laid-out, visible table
    workbench = build_workbench(viewer, synth_project.root, actor="t")
    panel = workbench.project_panel
    table = panel.table
    rect = table.visualRect(panel.proxy.index(2, 0))
    opened = []
    workbench.state.image_opened.connect(opened.append)
    with qtbot.waitSignal(workbench.state.image_opened, timeout=PATIENCE_MS) as blocker:
        # A double click as Qt 6 sees it: click, double-click event, release.
        QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        QTest.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        QTest.mouseRelease(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert opened == [panel.proxy.image_id(2)]  # once, not once per signal
    assert blocker.args == [panel.proxy.image_id(2)]
    assert workbench.viewer.layers["image"].data.shape[:2] == (
        workbench.viewer.layers["mask"].data.shape
    )
    workbench.close()


def test_next_and_previous_follow_the_table_order_with_keys(make_napari_viewer, qtbot,
                                                            synth_project) -> None:  # fmt: skip
    from cytoreview.gui.app import build_workbench

    viewer = make_napari_viewer(show=True)
    wb = build_workbench(viewer, synth_project.root, actor="t")
    window = viewer.window._qt_window
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=PATIENCE_MS)
    panel = wb.project_panel
    panel.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
    names = [r[0] for r in table_rows(panel)]
    # The project opened on an image; steps go from the one open, in the table's new order.
    wb.state.open_image(wb.state.project.image(names[0]).id)
    opened = []
    wb.state.image_opened.connect(lambda i: opened.append(Project.image(wb.state.project, i).name))
    panel.table.setFocus()
    layers = []
    for key in (Qt.Key.Key_PageDown, Qt.Key.Key_PageDown, Qt.Key.Key_Period, Qt.Key.Key_PageUp,
                Qt.Key.Key_Comma, Qt.Key.Key_Comma):  # fmt: skip
        QTest.keyClick(window, key)
        layers.append([id(layer) for layer in wb.viewer.layers])
    assert opened == [names[1], names[2], names[3], names[2], names[1], names[0]]
    # The layers are reused, not rebuilt (napari's layer removal took 0.5 s an image; the
    # switch time itself is measured by bench_gui_responsiveness.py).
    assert layers[0] and all(ids == layers[0] for ids in layers)
    assert panel.previous_image() is None  # at the top: stays
    assert panel.table.selectionModel().selectedRows()[0].row() == 0
    wb.close()


def test_import_runs_in_the_background_and_reports_bad_files(workbench, qtbot, tmp_path) -> None:
    panel = workbench.project_panel
    source = tmp_path / "more"
    for i in range(3):
        write_rgb_png(source / "HSIL" / f"extra_{i}.png", cell_image(40, 44, seed=50 + i)[0])
    (source / "HSIL" / "broken.png").write_bytes(b"not an image")
    (source / "XYZ").mkdir()
    write_rgb_png(source / "XYZ" / "odd.png", cell_image(40, 44, seed=60)[0])
    progress = []
    panel.importer.progress.connect(progress.append)
    with qtbot.waitSignal(panel.importer.finished, timeout=PATIENCE_MS):
        assert panel.import_folder(source)
    report = panel.last_import
    assert sorted(report.added) == ["extra_0", "extra_1", "extra_2"]
    assert len(report.problems) == 2, report.problems
    log = panel.import_log.toPlainText()
    assert "broken.png" in log and "odd.png" in log and "3 image(s) added" in log
    assert progress and progress[-1].step == progress[-1].total
    assert panel.count_label.text() == "11 of 11 images"
    assert not panel.import_bar.isVisible()


def test_import_dialog_checks_the_form(qtbot, tmp_path) -> None:
    from cytoreview.gui.import_dialog import ImportChoice, ImportDialog

    dialog = ImportDialog()
    qtbot.addWidget(dialog)
    assert dialog.choice() is None and "choose" in dialog.problem()
    dialog.source_edit.setText(str(tmp_path / "nowhere"))
    assert "not a folder or a .csv file" in dialog.problem()
    assert not dialog.buttons.buttons()[0].isEnabled()
    (tmp_path / "scans").mkdir()
    dialog.source_edit.setText(str(tmp_path / "scans"))
    assert dialog.choice() == ImportChoice(tmp_path / "scans")
    assert not dialog.manifest_box.isEnabled()  # columns only matter for a CSV
    dialog.masks_edit.setText(str(tmp_path / "missing"))
    assert "the masks folder does not exist" in dialog.problem()
    (tmp_path / "list.csv").write_text("file,label\n")
    dialog.source_edit.setText(str(tmp_path / "list.csv"))
    dialog.masks_edit.setText(str(tmp_path / "scans"))
    dialog.path_column.setText("file")
    dialog.class_column.setText("label")
    dialog.link_check.setChecked(True)
    assert dialog.manifest_box.isEnabled()
    assert dialog.choice() == ImportChoice(
        tmp_path / "list.csv", tmp_path / "scans", "file", "label", None, copy=False
    )


def test_import_of_a_csv_manifest_with_masks(workbench, qtbot, tmp_path) -> None:
    """What ``cytoreview import P table.csv --path-column --class-column --masks`` does."""
    import cv2
    import numpy as np

    from cytoreview.gui.import_dialog import ImportChoice

    panel = workbench.project_panel
    images, masks = tmp_path / "scans", tmp_path / "painted"
    masks.mkdir()
    lines = ["file,label"]
    for i in range(3):
        image, mask = cell_image(40, 44, seed=70 + i)
        write_rgb_png(images / f"cell_{i}.png", image)
        lines.append(f"cell_{i}.png,HSIL")
        if i == 0:  # one of them painted already
            painted = mask.astype(np.uint8)
            cv2.imwrite(str(masks / "cell_0.png"), painted)
    (tmp_path / "table.csv").write_text("\n".join(lines) + "\n")
    choice = ImportChoice(
        tmp_path / "table.csv", masks, path_column="file", class_column="label",
        image_dir=images, copy=False,
    )  # fmt: skip
    with qtbot.waitSignal(panel.importer.finished, timeout=PATIENCE_MS):
        assert panel.import_source(choice)
    report = panel.last_import
    assert sorted(report.added) == ["cell_0", "cell_1", "cell_2"] and not report.problems
    project = workbench.state.project
    assert {project.image(f"cell_{i}").class_label for i in range(3)} == {"HSIL"}
    version, stored = project.current_mask(project.image("cell_0").id)
    assert version.provenance.value == "manual" and np.array_equal(stored, painted)
    assert project.current_mask(project.image("cell_1").id) is None
    assert project.image_path(project.image("cell_1")) == images / "cell_1.png"  # linked


def test_table_shows_prediction_and_uncertainty(workbench) -> None:
    from cytoreview.storage.predictions import PredictionInput, PredictionStore
    from cytoreview.types import Provenance

    panel = workbench.project_panel
    project = workbench.state.project
    names = sorted(workbench.synth.truth)
    first, second = project.image(names[0]), project.image(names[1])
    probs = {c: 0.1 for c in project.scheme.classes} | {"HSIL": 0.7}
    PredictionStore(project).save_predictions(
        "cls-hand", "bethesda", [PredictionInput(first.id, "HSIL", probs, 0.35)], actor="t"
    )
    panel.refresh_rows()
    rows = {r[0]: r for r in table_rows(panel)}
    assert rows[names[0]][4:] == ("HSIL 70%", "0.35")
    assert rows[names[1]][4:] == ("", "")
    # An auto mask's uncertainty counts too: the larger of the two is shown, as the queue sorts.
    mask = workbench.synth.truth[names[1]]
    project.save_mask(second.id, mask, Provenance.AUTO, actor="model", uncertainty=0.6)
    workbench.state.notify_masks_changed([second.id])
    rows = {r[0]: r for r in table_rows(panel)}
    assert rows[names[1]][2:] == ("auto", "", "", "0.60")
    # Sorting by uncertainty, most uncertain first.
    panel.table.sortByColumn(5, Qt.SortOrder.DescendingOrder)
    assert [r[0] for r in table_rows(panel)][:2] == [names[1], names[0]]
