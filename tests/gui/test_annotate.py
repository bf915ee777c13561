"""Painting in napari: layers, strokes saved by the debounced autosave, undo, approval, helpers."""

from __future__ import annotations

import numpy as np
import pytest

from cytoreview.gui.annotate_panel import IMAGE_LAYER, MASK_LAYER, format_measure
from cytoreview.gui.autosave import Autosave
from cytoreview.types import Provenance
from tests.conftest import PATIENCE_MS
from tests.gui.conftest import TEST_DELAY_MS

pytestmark = pytest.mark.gui


def open_by_name(wb, name: str) -> int:
    image_id = wb.state.project.image(name).id
    wb.state.open_image(image_id)
    return image_id


def stroke(labels, points, label: int) -> None:
    """A brush stroke as napari makes one: many dabs, one undo step, one paint event."""
    labels.selected_label = label
    with labels.block_history():
        for point in points:
            labels.paint(point, label)


def wait_saved(wb, qtbot, image_id: int, versions: int) -> None:
    """Until the image has ``versions`` mask versions and the autosave has taken note of it.

    Timed saves are written on a worker thread: the catalog has the version a moment before
    the GUI thread hears of it.
    """
    project = wb.state.project
    qtbot.waitUntil(
        lambda: (
            len(project.mask_versions(image_id)) == versions
            and not wb.autosave.is_pending(image_id)
        ),
        timeout=PATIENCE_MS,
    )


def status_in_table(wb, image_id: int) -> str:
    panel = wb.project_panel
    return panel.model.row(panel.model.source_row_of(image_id)).status


def test_opening_an_image_adds_image_and_mask_layers(workbench) -> None:
    name = sorted(workbench.synth.truth)[3]
    image_id = open_by_name(workbench, name)
    layers = workbench.viewer.layers
    image, mask = layers[IMAGE_LAYER], layers[MASK_LAYER]
    shape = workbench.synth.truth[name].shape
    assert image.data.shape == (*shape, 3) and image.rgb
    assert mask.data.shape == shape and not mask.data.any()
    assert layers.selection.active is mask
    # The fixed palette: cytoplasm green, nucleus magenta, background transparent.
    colours = mask.colormap.map(np.array([0, 1, 2]))
    assert colours[0][3] == 0
    assert np.allclose(colours[1][:3], np.array([0, 200, 90]) / 255)
    assert np.allclose(colours[2][:3], np.array([220, 40, 200]) / 255)
    assert workbench.annotate_panel.image_id == image_id
    assert workbench.annotate_panel.readout.text() == format_measure(
        {"nucleus_area": 0, "cytoplasm_area": 0, "nc_ratio": float("nan")}
    )
    # Labels beyond nucleus are not allowed: napari's "+" stops at 2.
    mask.selected_label = 5
    assert mask.selected_label == 2


def test_a_stroke_is_saved_after_the_debounce_and_undo_restores(workbench, qtbot) -> None:
    project = workbench.state.project
    image_id = open_by_name(workbench, sorted(workbench.synth.truth)[0])
    labels = workbench.viewer.layers[MASK_LAYER]
    labels.brush_size = 5
    stroke(labels, [(20, c) for c in range(15, 40)], 1)
    painted = labels.data.copy()
    assert (painted == 1).sum() > 100
    # Not yet (no event has been processed since the stroke): the debounce waits.
    assert project.mask_versions(image_id) == [] and workbench.autosave.is_pending(image_id)
    readout = workbench.annotate_panel.readout
    qtbot.waitUntil(lambda: f"Cytoplasm {int((painted == 1).sum()):,} px" in readout.text())
    wait_saved(workbench, qtbot, image_id, 1)
    version, saved = project.current_mask(image_id)
    assert version.provenance is Provenance.MANUAL and version.author == "tester"
    assert np.array_equal(saved, painted)
    assert status_in_table(workbench, image_id) == "manual"
    assert workbench.autosave.last_save_ms > 0

    workbench.annotate_panel.undo()
    assert not labels.data.any()
    wait_saved(workbench, qtbot, image_id, 2)
    assert not project.current_mask(image_id)[1].any()
    workbench.annotate_panel.redo()
    wait_saved(workbench, qtbot, image_id, 3)
    assert np.array_equal(project.current_mask(image_id)[1], painted)


def test_layer_keys_undo_redo_and_pick_labels(workbench, qtbot) -> None:
    image_id = open_by_name(workbench, sorted(workbench.synth.truth)[2])
    labels = workbench.viewer.layers[MASK_LAYER]
    keys = {str(k): f for k, f in labels.keymap.items()}  # what napari calls on a key press
    keys["N"](labels)
    assert labels.selected_label == 2
    keys["C"](labels)
    assert labels.selected_label == 1
    stroke(labels, [(6, 6)], 1)
    painted = labels.data.copy()
    workbench.autosave.flush()
    keys["Ctrl+Z"](labels)
    assert not labels.data.any() and workbench.autosave.is_pending(image_id)
    keys["Ctrl+Shift+Z"](labels)
    assert np.array_equal(labels.data, painted)
    workbench.autosave.flush()
    kinds = [v.provenance for v in workbench.state.project.mask_versions(image_id)]
    assert kinds == [Provenance.MANUAL]  # undone and redone before the save: nothing new


def test_switching_images_saves_each_mask_to_its_own_image(workbench, qtbot) -> None:
    project = workbench.state.project
    first, second = sorted(workbench.synth.truth)[:2]
    first_id = open_by_name(workbench, first)
    stroke(workbench.viewer.layers[MASK_LAYER], [(10, 10), (12, 12)], 2)
    first_mask = workbench.viewer.layers[MASK_LAYER].data.copy()
    # Switch at once, before the debounce fires: the pending save must go to the first image.
    second_id = open_by_name(workbench, second)
    assert len(project.mask_versions(first_id)) == 1
    assert not workbench.viewer.layers[MASK_LAYER].data.any()  # the second image's own mask
    stroke(workbench.viewer.layers[MASK_LAYER], [(30, 30)], 1)
    second_mask = workbench.viewer.layers[MASK_LAYER].data.copy()
    wait_saved(workbench, qtbot, second_id, 1)
    assert np.array_equal(project.current_mask(first_id)[1], first_mask)
    assert np.array_equal(project.current_mask(second_id)[1], second_mask)
    assert not np.array_equal(first_mask, second_mask[: first_mask.shape[0], : first_mask.shape[1]])
    # Back to the first image: its saved mask is shown, and its undo history is its own.
    open_by_name(workbench, first)
    assert np.array_equal(workbench.viewer.layers[MASK_LAYER].data, first_mask)
    workbench.annotate_panel.undo()  # nothing to undo on a freshly opened image
    assert np.array_equal(workbench.viewer.layers[MASK_LAYER].data, first_mask)


def test_a_pending_save_is_written_when_the_timer_fires_after_a_switch(workbench, qtbot) -> None:
    # The autosave keeps (image id, array) from the stroke; even a save that fires late lands
    # on the painted image. Here the panel's flush-on-open is bypassed on purpose.
    project = workbench.state.project
    autosave: Autosave = workbench.autosave
    first, second = sorted(workbench.synth.truth)[:2]
    first_id = open_by_name(workbench, first)
    stroke(workbench.viewer.layers[MASK_LAYER], [(8, 8)], 1)
    painted = workbench.viewer.layers[MASK_LAYER].data.copy()
    pending = dict(autosave._pending)
    autosave._pending.clear()
    open_by_name(workbench, second)  # nothing to flush now
    autosave._pending.update(pending)
    autosave._quiet.start()
    wait_saved(workbench, qtbot, first_id, 1)
    assert np.array_equal(project.current_mask(first_id)[1], painted)
    assert project.mask_versions(project.image(second).id) == []


def test_editing_an_auto_mask_saves_a_correction_and_approve(workbench, qtbot) -> None:
    project = workbench.state.project
    name = sorted(workbench.synth.truth)[4]
    truth = workbench.synth.truth[name]
    image_id = project.image(name).id
    project.save_mask(image_id, truth, Provenance.AUTO, actor="model", source_model="m1")
    workbench.state.notify_masks_changed([image_id])
    assert status_in_table(workbench, image_id) == "auto"
    open_by_name(workbench, name)
    assert np.array_equal(workbench.viewer.layers[MASK_LAYER].data, truth)
    stroke(workbench.viewer.layers[MASK_LAYER], [(1, 1)], 1)
    wait_saved(workbench, qtbot, image_id, 2)
    assert project.mask_versions(image_id)[-1].provenance is Provenance.CORRECTED
    assert status_in_table(workbench, image_id) == "corrected"

    version = workbench.annotate_panel.approve()
    assert version.provenance is Provenance.APPROVED and version.version == 3
    assert status_in_table(workbench, image_id) == "approved"
    assert workbench.annotate_panel.approve().id == version.id  # approving twice: no new version
    # Editing an approved mask is a further correction, no longer approved.
    stroke(workbench.viewer.layers[MASK_LAYER], [(2, 2)], 2)
    workbench.autosave.flush()
    assert project.mask_versions(image_id)[-1].provenance is Provenance.CORRECTED
    assert status_in_table(workbench, image_id) == "corrected"


def test_approve_flushes_pending_strokes_first(workbench) -> None:
    project = workbench.state.project
    image_id = open_by_name(workbench, sorted(workbench.synth.truth)[1])
    stroke(workbench.viewer.layers[MASK_LAYER], [(5, 5)], 1)
    version = workbench.annotate_panel.approve()
    kinds = [v.provenance for v in project.mask_versions(image_id)]
    assert kinds == [Provenance.MANUAL, Provenance.APPROVED]
    assert np.array_equal(
        project.read_mask_version(version), workbench.viewer.layers[MASK_LAYER].data
    )


def test_helper_buttons_are_undoable_edits(workbench, qtbot) -> None:
    name = sorted(workbench.synth.truth)[5]
    image_id = open_by_name(workbench, name)
    panel = workbench.annotate_panel
    labels = workbench.viewer.layers[MASK_LAYER]
    panel.tool_buttons["initial"].click()
    truth = workbench.synth.truth[name]
    nucleus = labels.data == 2
    dice = 2 * (nucleus & (truth == 2)).sum() / (nucleus.sum() + (truth == 2).sum())
    assert dice > 0.6, dice
    assert "N:C 0." in panel.readout.text()
    wait_saved(workbench, qtbot, image_id, 1)
    snapshots = [np.zeros_like(labels.data), labels.data.copy()]
    # Punch a hole inside the cytoplasm; Fill holes closes it.
    import cv2

    inner = cv2.erode((labels.data == 1).astype(np.uint8), np.ones((3, 3), np.uint8))
    rows, cols = np.nonzero(inner)
    labels.data_setitem((rows[:1], cols[:1]), 0)
    snapshots.append(labels.data.copy())
    panel.tool_buttons["fill_holes"].click()
    assert labels.data[rows[0], cols[0]] == 1
    snapshots.append(labels.data.copy())
    for tool in ("grabcut", "repair"):
        panel.tool_buttons[tool].click()
        if not np.array_equal(labels.data, snapshots[-1]):
            snapshots.append(labels.data.copy())
    assert len(snapshots) >= 4
    for expected in reversed(snapshots[:-1]):  # every helper was exactly one undo step
        panel.undo()
        assert np.array_equal(labels.data, expected)


def test_closing_the_viewer_saves_pending_edits(make_napari_viewer, synth_project) -> None:
    from cytoreview.gui.app import build_workbench
    from cytoreview.storage.project import Project

    viewer = make_napari_viewer()
    wb = build_workbench(viewer, synth_project.root, actor="t", autosave_delay_ms=60_000)
    name = sorted(synth_project.truth)[2]
    open_by_name(wb, name)
    stroke(viewer.layers[MASK_LAYER], [(9, 9)], 2)
    assert wb.autosave.is_pending()
    viewer.window._qt_window.close()  # the close event saves (the timer would wait 60 s)
    assert wb.state.project is None  # and the project was closed
    with Project.open(synth_project.root) as project:
        versions = project.mask_versions(project.image(name).id)
        assert [v.provenance for v in versions] == [Provenance.MANUAL]


def test_a_large_mask_saves_every_stroke(qtbot, tmp_path) -> None:
    """A 1000 x 1000 mask: PNG encode, fsynced atomic write and commit, on the GUI thread."""
    import cv2

    from cytoreview.gui.state import WorkbenchState
    from cytoreview.storage.project import Project
    from cytoreview.workflows.importing import import_images
    from tests.conftest import run_job, write_rgb_png

    rgb = np.random.default_rng(0).integers(0, 255, (1000, 1000, 3), dtype=np.uint8)
    write_rgb_png(tmp_path / "src" / "NILM" / "field.png", rgb)
    Project.init(tmp_path / "big", actor="t").close()
    state = WorkbenchState("t")
    project = state.open_project(tmp_path / "big")
    run_job(import_images(project, tmp_path / "src", actor="t"))
    image_id = project.image("field").id
    autosave = Autosave(state, delay_ms=10_000)
    mask = np.zeros((1000, 1000), np.uint8)
    cv2.circle(mask, (500, 500), 300, 1, -1)
    cv2.circle(mask, (500, 500), 80, 2, -1)
    for i in range(5):
        mask[i * 10 : i * 10 + 5] = 1  # a stroke
        autosave.mark_dirty(image_id, mask, Provenance.MANUAL)
        assert len(autosave.flush()) == 1
        assert autosave.last_save_ms > 0  # measured (the time is a benchmark's business)
    assert len(project.mask_versions(image_id)) == 5
    assert np.array_equal(project.current_mask(image_id)[1], mask)
    state.close_project()


def test_the_tests_save_sooner_than_the_default_delay() -> None:
    assert TEST_DELAY_MS < 800


def test_the_brush_fits_the_image_until_the_person_picks_a_size(workbench) -> None:
    from cytoreview.gui.annotate_panel import default_brush_size

    assert [default_brush_size((h, h)) for h in (10, 40, 96, 400, 4000)] == [1, 2, 5, 20, 40]
    panel, project = workbench.annotate_panel, workbench.state.project
    first, second = (im.id for im in project.images()[:2])
    workbench.state.open_image(first)
    labels = workbench.viewer.layers["mask"]
    assert labels.brush_size == default_brush_size(labels.data.shape)
    labels.brush_size = 7  # the person's choice
    workbench.state.open_image(second)
    assert labels.brush_size == 7 and panel.toolbar.brush.value() == 7
