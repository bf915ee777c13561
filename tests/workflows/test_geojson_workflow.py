"""QuPath exchange of a project: export every image's cells, import GeoJSON as mask versions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cytoreview.data.geojson import features_to_mask
from cytoreview.errors import InputFileError, ProjectError
from cytoreview.storage.predictions import PredictionInput, PredictionStore
from cytoreview.storage.project import Project
from cytoreview.types import CancelToken, Provenance
from cytoreview.workflows.geojson import export_geojson, import_geojson
from cytoreview.workflows.importing import import_images
from tests.conftest import run_job
from tests.geojson_spec import collection_problems


@pytest.fixture
def filled(project: Project, image_folder: Path) -> Project:
    """Six images (NILM, HSIL) with their painted masks."""
    run_job(
        import_images(project, image_folder, actor="t", masks_dir=image_folder.parent / "masks")
    )
    return project


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_export_writes_valid_qupath_cells_per_image(filled: Project, tmp_path: Path) -> None:
    filled.set_pixel_size(0.5, actor="t")
    events, report = run_job(export_geojson(filled, tmp_path / "out"))
    assert [p.name for p in report.files] == [
        f"{n}.geojson" for n in ("hsil_0", "hsil_1", "hsil_2", "nilm_0", "nilm_1", "nilm_2")
    ]
    assert report.problems == [] and len(events) == 6
    for path in report.files:
        collection = load(path)
        assert collection_problems(collection) == []
        record = filled.image(collection["image"])
        mask = filled.current_mask(record.id)[1]
        assert (collection["width"], collection["height"]) == (record.width, record.height)
        assert collection["mask_version"] == 1 and collection["mask_provenance"] == "manual"
        (cell,) = collection["features"]  # conftest's drawn cell: one disc with a nucleus
        props = cell["properties"]
        assert props["objectType"] == "cell" and "nucleusGeometry" in cell
        assert props["classification"]["name"] == record.class_label
        assert props["metadata"] == {"class_source": "expert label"}
        values = props["measurements"]
        assert values["Nucleus: Area px"] == int((mask == 2).sum())
        assert values["Cell: Area px"] == int((mask > 0).sum())
        assert values["Nucleus: Area µm^2"] == pytest.approx(values["Nucleus: Area px"] * 0.25)
        assert 0 < values["Nucleus/Cell area ratio"] < 1 and values["Nucleus: Mean grey"] > 0
        shape = (record.height, record.width)
        assert np.array_equal(features_to_mask(collection["features"], shape), mask)
    classes = [load(p)["features"][0]["properties"]["classification"] for p in report.files]
    colours = {tuple(c["color"]) for c in classes}
    assert len(colours) == 2  # one colour per class


def test_class_falls_back_to_the_newest_prediction(filled: Project, tmp_path: Path) -> None:
    nilm, hsil = filled.image("nilm_0"), filled.image("hsil_0")
    filled.set_class(nilm.id, None, actor="t")
    filled.set_class(hsil.id, None, actor="t")
    store = PredictionStore(filled)
    store.save_predictions("m1", "bethesda", [PredictionInput(nilm.id, "LSIL", {})], actor="t")
    store.save_predictions("m2", "bethesda", [PredictionInput(nilm.id, "ASC-US", {})], actor="t")
    _, report = run_job(export_geojson(filled, tmp_path, names=["nilm_0", "hsil_0.png"]))
    by_name = {load(p)["image"]: load(p)["features"][0]["properties"] for p in report.files}
    assert by_name["nilm_0"]["classification"]["name"] == "ASC-US"
    assert by_name["nilm_0"]["metadata"] == {"class_source": "prediction", "model": "m2"}
    assert "classification" not in by_name["hsil_0"]
    assert by_name["hsil_0"]["metadata"] == {"class_source": "none"}


def test_names_are_checked_before_writing(filled: Project, tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="no image named 'nope'"):
        run_job(export_geojson(filled, tmp_path / "out", names=["nilm_0", "nope"]))
    assert not (tmp_path / "out").exists()


def test_cancelled_export_writes_nothing_more(filled: Project, tmp_path: Path) -> None:
    token = CancelToken()
    token.cancel()
    _, report = run_job(export_geojson(filled, tmp_path / "out", cancel=token))
    assert report.cancelled and report.files == []


def qupath_file(path: Path, *features: dict) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features)}))
    return path


def annotation(name: str, x0: float, y0: float, x1: float, y1: float) -> dict:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"objectType": "annotation", "classification": {"name": name}},
    }


def test_import_saves_a_new_manual_version(filled: Project, tmp_path: Path) -> None:
    path = qupath_file(
        tmp_path / "nilm_0.png.geojson",
        annotation("Cytoplasm", 4, 4, 20, 16),
        annotation("Nucleus", 8, 8, 12, 12),
        annotation("Tumor", 0, 0, 48, 40),
    )
    record = filled.image("nilm_0")
    result = import_geojson(filled, path, actor="dr_q")
    assert (result.image, result.cells, result.nuclei) == ("nilm_0", 1, 1)
    assert result.version is not None and result.version.version == 2
    assert result.version.provenance is Provenance.MANUAL and result.version.author == "dr_q"
    assert result.version.note == "imported from nilm_0.png.geojson"
    assert result.previous is not None and result.previous.version == 1
    assert "v1 manual by t stays in history" in result.line()
    assert len(result.skipped) == 1 and "'Tumor'" in result.skipped[0]
    expected = np.zeros((record.height, record.width), np.uint8)
    expected[4:16, 4:20] = 1
    expected[8:12, 8:12] = 2
    assert np.array_equal(filled.current_mask(record.id)[1], expected)
    assert len(filled.mask_versions(record.id)) == 2  # the painted mask stays in the history
    again = import_geojson(filled, path, actor="dr_q")
    assert again.version is None and "nothing saved" in again.line()
    assert len(filled.mask_versions(record.id)) == 2


def test_exported_file_imports_as_the_same_mask(filled: Project, tmp_path: Path) -> None:
    _, report = run_job(export_geojson(filled, tmp_path, names=["hsil_1"]))
    result = import_geojson(filled, report.files[0], actor="t")
    assert result.version is None and result.cells == 1 and result.nuclei == 1


def test_import_to_a_named_image_and_refusals(filled: Project, tmp_path: Path) -> None:
    path = qupath_file(tmp_path / "scan.geojson", annotation("cell", 1, 1, 9, 9))
    with pytest.raises(ProjectError, match="no image named 'scan'"):
        import_geojson(filled, path, actor="t")
    assert import_geojson(filled, path, "hsil_2", actor="t").version.version == 2
    only_tumour = qupath_file(tmp_path / "hsil_2.geojson", annotation("Tumor", 1, 1, 9, 9))
    with pytest.raises(InputFileError, match=r"no cell or nucleus to import .*'Tumor'"):
        import_geojson(filled, only_tumour, actor="t")
    assert len(filled.mask_versions(filled.image("hsil_2").id)) == 2
