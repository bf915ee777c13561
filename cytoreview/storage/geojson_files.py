"""Reading GeoJSON files (QuPath's object exports) and encoding them for an atomic write.

A file is checked for its outer shape only: JSON, then a FeatureCollection whose ``features`` are
Feature objects. What each feature's geometry holds is judged when it is drawn
(:func:`cytoreview.data.geojson.rasterise_features`), where one bad feature is skipped and
named instead of refusing the whole file.

QuPath writes a FeatureCollection from its menu (File > Export objects as GeoJSON, "Export as
FeatureCollection") and, from a script (``exportObjectsToGeoJson`` without that option, or
``GsonTools.getInstance().toJson(objects)``), a bare JSON array of features, or a single
Feature for one object. All three are read as a list of features.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

from cytoreview.errors import InputFileError
from cytoreview.storage.atomic import fill_temp, publish

#: Larger files are refused before they are read: a whole-slide export of 10^6 cells is about
#: 1 GB of text, which json holds several times over in memory.
MAX_GEOJSON_BYTES = 2 << 30


def encode_geojson(obj: Any) -> bytes:
    """Compact UTF-8 JSON bytes of a GeoJSON object.

    ``allow_nan=False``: NaN and Infinity are not JSON, and QuPath's reader refuses them; a
    measurement that is undefined is left out by the caller, never written.
    """
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def read_geojson(path: str | Path) -> list[dict[str, Any]]:
    """The features of a GeoJSON file (FeatureCollection, array of Features or one Feature).

    Raises
    ------
    InputFileError
        In one line naming the file: unreadable, too large, not UTF-8, not JSON, or not made of
        GeoJSON Features.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_GEOJSON_BYTES:
            raise InputFileError(path, f"{size / 2**30:.1f} GiB is larger than the 2 GiB limit")
        text = path.read_bytes().decode("utf-8-sig")  # utf-8-sig: Windows editors add a BOM
    except InputFileError:
        raise
    except UnicodeDecodeError:
        raise InputFileError(path, "not a GeoJSON file (not UTF-8 text)") from None
    except IsADirectoryError:
        raise InputFileError(path, "is a folder, not a GeoJSON file") from None
    except FileNotFoundError:
        raise InputFileError(path, "no such file") from None
    except OSError as exc:
        raise InputFileError(path, f"cannot read it ({exc.strerror or exc})") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InputFileError(
            path, f"not a GeoJSON file (invalid JSON at line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise InputFileError(path, f"not a GeoJSON file ({exc})") from None
    return _features(path, data)


def _features(path: Path, data: Any) -> list[dict[str, Any]]:
    """The list of features of parsed GeoJSON, or an InputFileError saying what is wrong."""
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        features = data.get("features")
        if not isinstance(features, list):
            raise InputFileError(path, "a FeatureCollection without a list of 'features'")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, list):
        features = data
    elif isinstance(data, dict) and isinstance(data.get("type"), str):
        raise InputFileError(
            path, f"a GeoJSON {data['type']}, not a FeatureCollection (or Features) of objects"
        )
    else:
        raise InputFileError(path, "JSON but not GeoJSON (no FeatureCollection or Feature)")
    for index, feature in enumerate(features):
        if not isinstance(feature, dict) or feature.get("type") != "Feature":
            kind = feature.get("type") if isinstance(feature, dict) else type(feature).__name__
            raise InputFileError(
                path, f"feature {index + 1} is not a GeoJSON Feature (type {kind!r})"
            )
        if not isinstance(feature.get("properties", {}), dict | None):
            raise InputFileError(path, f"feature {index + 1}: 'properties' is not an object")
    return features


def write_feature_stream(
    path: str | Path, features: Iterable[dict[str, Any]], **members: Any
) -> int:
    """Write a FeatureCollection feature by feature, atomically; return how many were written.

    A whole slide has 10^5-10^6 cells: the collection is never held in memory. ``members`` are
    extra top-level members (slide, pixel size...). The file appears under its name only once
    complete (written under a temp name, flushed, renamed).
    """
    path = Path(path)
    count = 0

    def stream(out: BinaryIO) -> None:
        nonlocal count
        head = {"type": "FeatureCollection", **members}
        out.write(encode_geojson(head)[:-1] + b',"features":[')
        for feature in features:
            out.write((b"," if count else b"") + encode_geojson(feature))
            count += 1
        out.write(b"]}")

    tmp = fill_temp(path.parent, stream)
    try:
        publish(tmp, path, overwrite=True)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count
