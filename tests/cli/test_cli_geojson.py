"""``cytoreview export-geojson`` / ``import-geojson`` end to end on a tiny synthetic project."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cytoreview.cli.main import main
from cytoreview.storage.project import Project
from tests.conftest import cell_image, write_label_png, write_rgb_png
from tests.geojson_spec import collection_problems


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    for i, label in enumerate(("NILM", "HSIL")):
        rgb, mask = cell_image(seed=i)
        write_rgb_png(tmp_path / "src" / label / f"c{i}.png", rgb)
        write_label_png(tmp_path / "masks" / f"c{i}.png", mask)
    write_rgb_png(tmp_path / "src" / "NILM" / "bare.png", cell_image(seed=5)[0])  # no mask
    assert cli("--user", "setup", "init", tmp_path / "p") == 0
    assert cli("import", tmp_path / "p", tmp_path / "src", "--masks", tmp_path / "masks") == 0
    return tmp_path / "p"


def test_export_then_import_round_trip(proj: Path, tmp_path: Path, capsys) -> None:
    capsys.readouterr()
    assert cli("export-geojson", proj) == 0
    out = proj / "exports" / "geojson"
    assert "2 file(s), 2 cell(s) written to" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["c0.geojson", "c1.geojson"]
    exported = json.loads((out / "c1.geojson").read_text(encoding="utf-8"))
    assert collection_problems(exported) == []
    assert exported["features"][0]["properties"]["classification"]["name"] == "HSIL"

    # A QuPath user moves the nucleus of c1 and adds nothing else: one new version.
    feature = exported["features"][0]
    feature["nucleusGeometry"] = {
        "type": "Polygon",
        "coordinates": [[[20, 16], [26, 16], [26, 22], [20, 22], [20, 16]]],
    }
    edited = tmp_path / "c1.geojson"
    edited.write_text(json.dumps(exported), encoding="utf-8")
    assert cli("--user", "dr_q", "import-geojson", proj, edited, out / "c0.geojson") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("c1.geojson -> c1: 1 cell, 1 nucleus; saved as mask v2")
    assert lines[1].endswith("c0: 1 cell, 1 nucleus; the same as the current mask, nothing saved")
    with Project.open(proj) as project:
        record = project.image("c1")
        version, mask = project.current_mask(record.id)
        assert (version.version, version.author) == (2, "dr_q")
        assert version.note == "imported from c1.geojson"
        assert np.array_equal(np.argwhere(mask == 2).min(0), [16, 20])
        assert len(project.mask_versions(project.image("c0").id)) == 1


def test_export_only_named_images(proj: Path, tmp_path: Path, capsys) -> None:
    assert cli("export-geojson", proj, "--out", tmp_path / "o", "--images", "c0", "bare") == 0
    captured = capsys.readouterr()
    assert "bare: has no mask; not exported" in captured.out + captured.err
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["c0.geojson"]
    assert cli("export-geojson", proj, "--out", tmp_path / "o2", "--images", "zz") == 1
    assert "error: no image named 'zz'" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_bad_files_are_refused_in_one_line(proj: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "c0.geojson"
    bad.write_text("{not json", encoding="utf-8")
    polygon = tmp_path / "c1.geojson"
    polygon.write_text('{"type": "Polygon", "coordinates": []}', encoding="utf-8")
    capsys.readouterr()
    assert cli("import-geojson", proj, bad, polygon) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"refused: {bad}: not a GeoJSON file (invalid JSON at line 1, column 2)",
        f"refused: {polygon}: a GeoJSON Polygon, not a FeatureCollection (or Features) of objects",
    ]
    assert cli("import-geojson", proj, bad, polygon, "--image", "c0") == 1
    assert "--image names the image of one FILE" in capsys.readouterr().err
