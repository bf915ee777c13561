"""The Slides dock: a slide registered, shown as a multiscale layer, regions cut, pixel size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoreview.data.synthetic_slide import SyntheticSlide
from cytoreview.storage.slides import write_pyramid_tiff
from tests.conftest import PATIENCE_MS
from tests.gui.conftest import make_project

pytestmark = pytest.mark.gui


@pytest.fixture
def slide_wb(make_napari_viewer, tmp_path: Path):
    from cytoreview.gui.app import build_workbench

    synth = make_project(tmp_path / "p", n=2)
    pixels, _ = SyntheticSlide(1024, 1536, seed=2, field=256).region(0, 0, 1024, 1536)
    path = write_pyramid_tiff(tmp_path / "case.svs", pixels, levels=3, pixel_size_um=None,
                              flavour="aperio")  # fmt: skip
    viewer = make_napari_viewer()
    wb = build_workbench(viewer, synth.root, actor="tester")
    wb.slide_path, wb.slide_pixels = path, pixels
    yield wb
    wb.close()


def test_a_slide_is_added_shown_multiscale_and_cut(slide_wb, qtbot, monkeypatch) -> None:
    from qtpy.QtWidgets import QInputDialog

    panel = slide_wb.panels["slides"]
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.add_slide(slide_wb.slide_path)
    assert panel.slide_list.count() == 1 and "pixel size ?" in panel.slide_list.item(0).text()
    asked = []
    monkeypatch.setattr(
        QInputDialog, "getDouble", lambda *a, **k: asked.append(a[2]) or (0.5, True)
    )
    view = panel.show_slide()
    assert view is not None and len(asked) == 1 and "does not say" in asked[0]
    assert "0.5 um/px" in panel.slide_list.item(0).text()  # asked once, stored
    image = slide_wb.viewer.layers["slide case"]
    assert image.multiscale and len(image.data) == 3
    assert image.data[0].shape == (1024, 1536, 3)  # lazy: nothing decoded to show it
    assert type(image.data[0]).__module__.startswith("dask")
    shapes = slide_wb.viewer.layers["regions on case"]
    shapes.add_rectangles(np.array([[100, 200], [300, 456]]))
    images = panel.cut_drawn()
    assert len(images) == 1 and len(shapes.data) == 0
    crop = images[0]
    assert (crop.slide_x, crop.slide_y, crop.width, crop.height) == (200, 100, 256, 200)
    assert crop.pixel_size_um == pytest.approx(0.5)
    project = slide_wb.state.project
    assert np.array_equal(project.load_image(crop).rgb, slide_wb.slide_pixels[100:300, 200:456])
    assert "1 crop(s)" in panel.slide_list.item(0).text()
    assert crop.name in [im.name for im in project.images()]
    panel.show_slide()  # already shown: not asked again, no second layer
    assert len(asked) == 1 and len(slide_wb.viewer.layers) == len(set(slide_wb.viewer.layers))
    assert not panel.show_segmentation()  # nothing segmented yet: a message, no layer


def test_cells_are_found_in_the_background(slide_wb, qtbot, monkeypatch) -> None:
    from qtpy.QtWidgets import QInputDialog

    panel = slide_wb.panels["slides"]
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        panel.add_slide(slide_wb.slide_path)
    monkeypatch.setattr(QInputDialog, "getDouble", lambda *a, **k: (0.25, True))
    before = len(slide_wb.state.project.images())
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.find_cells()
        assert panel.stop_button.isEnabled() and not panel.find_button.isEnabled()
    cut = [im for im in slide_wb.state.project.images() if im.slide_id is not None]
    assert len(cut) > 0 and before + len(cut) == len(slide_wb.state.project.images())
    assert all((im.width, im.height) == (256, 256) for im in cut)
    assert "crop(s) of 256 px cut" in panel.status.text()
    assert f"{len(cut)} crop(s)" in panel.slide_list.item(0).text()
