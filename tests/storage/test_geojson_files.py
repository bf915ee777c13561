"""Reading GeoJSON files: the three shapes QuPath writes, and one line for anything else."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cytoreview.errors import InputFileError
from cytoreview.storage.geojson_files import encode_geojson, read_geojson

FEATURE = {
    "type": "Feature",
    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 0]]]},
    "properties": {"objectType": "annotation", "classification": {"name": "Nucleus"}},
}


@pytest.mark.parametrize(
    "data",
    [
        {"type": "FeatureCollection", "features": [FEATURE, FEATURE]},  # File > Export
        [FEATURE, FEATURE],  # exportObjectsToGeoJson without FEATURE_COLLECTION
    ],
)
def test_collections_and_arrays_are_read(tmp_path: Path, data: object) -> None:
    path = tmp_path / "a.geojson"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert read_geojson(path) == [FEATURE, FEATURE]


def test_one_feature_and_a_bom_are_read(tmp_path: Path) -> None:
    path = tmp_path / "a.geojson"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(FEATURE).encode())
    assert read_geojson(path) == [FEATURE]


def test_encoding_is_utf8_and_refuses_nan() -> None:
    data = encode_geojson({"measurements": {"Nucleus: Area µm^2": 2.5}})
    assert data == '{"measurements":{"Nucleus: Area µm^2":2.5}}'.encode()
    with pytest.raises(ValueError):
        encode_geojson({"x": float("nan")})


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "not a GeoJSON file (invalid JSON at line 1, column 1)"),
        (b'{"type": "FeatureCollection",', "not a GeoJSON file (invalid JSON at line 1"),
        (b"\xff\xfe\x00garbage", "not a GeoJSON file (not UTF-8 text)"),
        (b'{"x": NaN}', "not a GeoJSON file (NaN is not a JSON number)"),
        (b'{"a": 1}', "JSON but not GeoJSON (no FeatureCollection or Feature)"),
        (b"42", "JSON but not GeoJSON"),
        (
            b'{"type": "Polygon", "coordinates": []}',
            "a GeoJSON Polygon, not a FeatureCollection (or Features) of objects",
        ),
        (b'{"type": "FeatureCollection"}', "a FeatureCollection without a list of 'features'"),
        (
            b'{"type": "FeatureCollection", "features": [{"type": "Point"}]}',
            "feature 1 is not a GeoJSON Feature (type 'Point')",
        ),
        (b"[1, 2]", "feature 1 is not a GeoJSON Feature (type 'int')"),
        (
            b'[{"type": "Feature", "geometry": null, "properties": [1]}]',
            "feature 1: 'properties' is not an object",
        ),
    ],
)
def test_bad_files_are_one_line_naming_the_file(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "bad.geojson"
    path.write_bytes(content)
    with pytest.raises(InputFileError) as caught:
        read_geojson(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: {reason}")
    assert "\n" not in message


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        read_geojson(tmp_path / "nope.geojson")
    with pytest.raises(InputFileError, match="is a folder"):
        read_geojson(tmp_path)
