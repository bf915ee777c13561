"""CytoReview as a napari plugin: npe2 manifest, each dock in a plain viewer, readers, samples."""

from __future__ import annotations

import pkgutil
import shutil
from pathlib import Path

import numpy as np
import pytest
from npe2 import PluginManager, PluginManifest

import cytoreview
from cytoreview.gui import app, napari_plugin
from cytoreview.storage.slides import write_pyramid_tiff

pytestmark = pytest.mark.gui

MANIFEST = Path(cytoreview.__file__).parent / "napari.yaml"
TITLES = {spec.key: spec.title for spec in app.registered_docks()}


def test_the_manifest_validates_and_contributes_every_dock() -> None:
    manifest = PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()  # every python_name imports
    assert manifest.name == "cytoreview"
    assert [w.display_name for w in manifest.contributions.widgets] == list(TITLES.values())
    python_names = {c.id: c.python_name for c in manifest.contributions.commands}
    for widget in manifest.contributions.widgets:
        dock_class = pkgutil.resolve_name(python_names[widget.command])
        assert issubclass(dock_class, napari_plugin.CytoReviewDock)
        assert TITLES[dock_class.key] == widget.display_name
    assert {s.key for s in manifest.contributions.sample_data} == {"field", "project"}


def test_the_installed_entry_point_finds_the_plugin() -> None:
    from importlib.metadata import entry_points

    [entry] = entry_points(group="napari.manifest", name="cytoreview")
    assert entry.value == "cytoreview:napari.yaml"
    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("cytoreview")
    assert manifest.package_metadata.version == cytoreview.__version__
    found = [w.display_name for w in pm.iter_widgets() if w.plugin_name == "cytoreview"]
    assert found == list(TITLES.values())


def _open(viewer, key: str):
    dock, widget = viewer.window.add_plugin_dock_widget("cytoreview", TITLES[key])
    return dock, widget


def test_each_dock_opens_in_a_plain_viewer_on_one_workbench(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    widgets = {key: _open(viewer, key)[1] for key in TITLES}
    workbench = app.workbench_of(viewer)
    assert workbench is not None and viewer.title != app.WINDOW_TITLE  # napari's own window
    for key, widget in widgets.items():
        assert isinstance(widget, napari_plugin.CytoReviewDock) and widget.key == key
        assert widget.workbench is workbench
        assert widget.widget() is workbench.panels[key]
        assert workbench.dock_of(key) is not None
    workbench.close()


def test_teach_opens_the_review_dock_it_needs(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    _open(viewer, "teach")
    workbench = app.workbench_of(viewer)
    assert set(workbench.panels) == {"review", "teach"}
    assert workbench.dock_of("review") is not None
    workbench.close()


def test_two_docks_share_the_open_project(make_napari_viewer, synth_project) -> None:
    viewer = make_napari_viewer()
    _, project_dock = _open(viewer, "project")
    workbench = project_dock.workbench
    workbench.state.open_project(synth_project.root)
    image_id = workbench.state.current_image_id
    assert image_id is not None
    dock, annotate_dock = _open(viewer, "annotate")  # opened after the project: it catches up
    annotate = workbench.annotate_panel
    assert annotate_dock.workbench is workbench and annotate.image_id == image_id
    assert annotate.image_layer is not None and annotate.image_layer in viewer.layers
    # Closed and opened again: the same panel, not a second one (no doubled shortcuts).
    viewer.window.remove_dock_widget(dock)
    _, again = _open(viewer, "annotate")
    assert again.widget() is annotate and workbench.state.project is not None
    workbench.close()
    assert workbench.state.project is None


def test_the_reader_opens_a_project_folder(make_napari_viewer, synth_project) -> None:
    viewer = make_napari_viewer()
    assert napari_plugin.get_project_reader(str(synth_project.root.parent)) is None
    viewer.open(str(synth_project.root), plugin="cytoreview")
    workbench = app.workbench_of(viewer)
    assert workbench.state.project.root == synth_project.root
    assert workbench.dock_of("project") is not None
    assert workbench.project_panel.table.model().rowCount() == len(synth_project.truth)
    workbench.close()


def test_the_reader_opens_a_slide_lazily(make_napari_viewer, tmp_path) -> None:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)
    slide = write_pyramid_tiff(tmp_path / "slide.ome.tif", rgb, levels=3, pixel_size_um=0.25)
    plain = tmp_path / "plain.tif"
    import tifffile

    tifffile.imwrite(plain, rgb)
    assert napari_plugin.get_slide_reader(str(plain)) is None  # left to napari's reader
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(slide), plugin="cytoreview")
    assert layer.multiscale and layer.rgb and len(layer.data) == 3
    assert type(layer.data[0]).__module__.startswith("dask")  # lazy: nothing decoded whole
    assert layer.data[0].shape == (600, 800, 3) and layer.data[2].shape == (150, 200, 3)
    np.testing.assert_array_equal(np.asarray(layer.data[0][10:20, 30:40]), rgb[10:20, 30:40])
    assert layer.metadata["pixel_size_um"] == pytest.approx(0.25)


def test_the_sample_data_loads(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    image, mask = viewer.open_sample("cytoreview", "field")
    assert image.data.shape[:2] == mask.data.shape == (512, 512)
    assert set(np.unique(mask.data)) <= {0, 1, 2} and (mask.data == 2).any()
    [first] = viewer.open_sample("cytoreview", "project")
    workbench = app.workbench_of(viewer)
    project = workbench.state.project
    assert project is not None and len(project.images()) == 16
    assert first.name.startswith("sample project:") and first.data.ndim == 3
    assert any(im.is_seed for im in project.images())
    folder = project.root.parent  # a new temporary folder per sample
    assert folder.name.startswith("cytoreview-sample-")
    workbench.close()
    shutil.rmtree(folder)


def test_a_plain_napari_survives_our_models_after_its_window(tmp_path) -> None:
    """In a fresh process: napari's window first (OpenGL up), then a CytoReview dock, then the
    U-Net's libraries. torch's triton import used to segfault the whole napari there."""
    import subprocess
    import sys

    probe = (
        "import napari\n"
        "v = napari.Viewer(show=True)\n"
        "v.window.add_plugin_dock_widget('cytoreview', 'Train segmentation')\n"
        "import segmentation_models_pytorch\n"
        "from cytoreview.models.segmenters import build_segmenter\n"
        "print('survived')\n"
        "v.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0 and "survived" in done.stdout, done.stdout + done.stderr[-2000:]
