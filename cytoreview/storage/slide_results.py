"""Results of a whole-slide segmentation, beside the slide in the project.

``slides/<name>/segmentation/``::

    run.json                the run's parameters (model, level, chunk, halo...): a resumed run
                            must have the same ones
    manifest.jsonl          one line per finished chunk, appended and flushed after its labels
                            are on disk: what a killed run does not have to do again
    labels.ome.zarr/        the label pyramid (0 background, 1 cytoplasm, 2 nucleus): OME-Zarr
                            (NGFF 0.4, zarr format 2, "/" chunk keys) with ``image-label``
                            metadata, readable by napari-ome-zarr, QuPath's OME-Zarr reader
                            and any zarr library
    cells.csv               one row per cell (written at the end, atomically)

Why this order makes a resumed run identical to an uninterrupted one: a chunk's labels are
written first, then its manifest line; a crash between the two leaves a chunk that the
manifest does not list, so it is computed again (deterministically) and overwritten. A torn
last manifest line (a crash while appending) is ignored for the same reason.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cytoreview.storage.atomic import atomic_write_bytes

#: OME-NGFF version of the label pyramid's metadata.
NGFF_VERSION = "0.4"
#: Colours and names of the label values, in the ``image-label`` metadata.
_LABEL_COLOURS = {1: ([60, 180, 75, 128], "cytoplasm"), 2: ([145, 30, 180, 200], "nucleus")}

__all__ = ["LabelPyramid", "SegmentationRun", "write_cell_table", "write_label_tiff"]


class SegmentationRun:
    """The folder of one slide's segmentation: parameters, manifest, labels, cell table.

    Parameters
    ----------
    folder
        ``slides/<name>/segmentation`` (from :meth:`SlideStore.results_dir`).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.labels_path = folder / "labels.ome.zarr"
        self.manifest_path = folder / "manifest.jsonl"
        self.params_path = folder / "run.json"
        self.cells_path = folder / "cells.csv"

    def params(self) -> dict[str, Any] | None:
        """The parameters of the run stored here (None when there is none)."""
        try:
            return json.loads(self.params_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def start(self, params: Mapping[str, Any], *, resume: bool) -> bool:
        """Prepare the folder for a run; return whether an earlier run is being resumed.

        An earlier run is resumed only when ``resume`` is set and its parameters are exactly
        ``params``; otherwise its results are removed and the run starts afresh.
        """
        if resume and self.params() == dict(params) and self.labels_path.is_dir():
            return True
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        atomic_write_bytes(self.params_path, json.dumps(dict(params), indent=2).encode())
        return False

    def finished_chunks(self) -> dict[int, dict[str, Any]]:
        """Chunks listed in the manifest, by index, with what was recorded for each."""
        done: dict[int, dict[str, Any]] = {}
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return done
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                done[int(entry["chunk"])] = entry
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line: that chunk is simply done again
        return done

    def record_chunk(self, entry: Mapping[str, Any]) -> None:
        """Append one finished chunk (``{"chunk": index, ...}``) to the manifest, flushed."""
        line = json.dumps(dict(entry), separators=(",", ":")) + "\n"
        with open(self.manifest_path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


class LabelPyramid:
    """An OME-Zarr label pyramid written chunk by chunk.

    Parameters
    ----------
    path
        The ``.ome.zarr`` folder.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def create(
        self,
        shape: tuple[int, int],
        chunk: int,
        levels: int,
        pixel_size_um: float | None,
        name: str,
    ) -> None:
        """Create (or open, if it exists with this shape) the full-resolution array and metadata.

        Parameters
        ----------
        shape
            ``(height, width)`` of the labels (the slide level they were computed at).
        chunk
            Zarr chunk side; the writer writes whole chunks.
        levels
            Number of pyramid levels (each halves the previous).
        pixel_size_um
            Micrometres per label pixel at full resolution, for the metadata's scale (1 and
            unit-less when unknown).
        name
            A name for the metadata (the slide's).
        """
        import zarr

        group = zarr.open_group(str(self.path), mode="a", zarr_format=2)
        if "0" not in group:
            self._array(group, "0", shape, chunk)
        scale = pixel_size_um or 1.0
        axes = [
            {"name": a, "type": "space", **({"unit": "micrometer"} if pixel_size_um else {})}
            for a in ("y", "x")
        ]
        datasets = [
            {
                "path": str(k),
                "coordinateTransformations": [{"type": "scale", "scale": [scale * 2**k] * 2}],
            }
            for k in range(levels)
        ]
        group.attrs["multiscales"] = [
            {"version": NGFF_VERSION, "name": name, "axes": axes, "datasets": datasets}
        ]
        group.attrs["image-label"] = {
            "version": NGFF_VERSION,
            "colors": [{"label-value": v, "rgba": c} for v, (c, _) in _LABEL_COLOURS.items()],
            "properties": [{"label-value": v, "class": n} for v, (_, n) in _LABEL_COLOURS.items()],
            "source": {"image": "the slide this folder belongs to (see ../run.json)"},
        }

    @staticmethod
    def _array(group: Any, key: str, shape: tuple[int, int], chunk: int) -> Any:
        import numcodecs

        return group.create_array(
            key,
            shape=shape,
            chunks=(chunk, chunk),
            dtype="uint8",
            fill_value=0,
            compressors=numcodecs.Zlib(level=1),
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )

    def write(self, y: int, x: int, labels: np.ndarray) -> None:
        """Write ``labels`` at ``(y, x)`` of the full-resolution array (whole chunks)."""
        import zarr

        array = zarr.open_array(str(self.path / "0"), mode="r+", zarr_format=2)
        array[y : y + labels.shape[0], x : x + labels.shape[1]] = labels

    def build_levels(self, levels: int) -> None:
        """(Re)build the lower-resolution levels from level 0, chunk by chunk.

        Each level keeps every second pixel of the one above (labels are categories: an
        average would invent values), so memory stays at one chunk.
        """
        import zarr

        group = zarr.open_group(str(self.path), mode="a", zarr_format=2)
        for k in range(1, levels):
            src = group[str(k - 1)]
            h, w = (-(-src.shape[0] // 2), -(-src.shape[1] // 2))
            chunk = src.chunks[0]
            if str(k) in group:
                del group[str(k)]
            dst = self._array(group, str(k), (h, w), chunk)
            for y in range(0, h, chunk):
                for x in range(0, w, chunk):
                    block = src[2 * y : 2 * (y + chunk), 2 * x : 2 * (x + chunk)]
                    dst[y : y + chunk, x : x + chunk] = block[::2, ::2]

    def level(self, k: int = 0) -> Any:
        """Level ``k`` as a lazy zarr array (read-only)."""
        import zarr

        return zarr.open_array(str(self.path / str(k)), mode="r", zarr_format=2)

    def n_levels(self) -> int:
        """How many levels the pyramid has."""
        import zarr

        group = zarr.open_group(str(self.path), mode="r", zarr_format=2)
        return len(group.attrs["multiscales"][0]["datasets"])


def write_cell_table(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """Write the per-cell table as CSV, atomically (a reader never sees half a table)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def write_label_tiff(path: Path, pyramid: LabelPyramid, pixel_size_um: float | None) -> Path:
    """Export a label pyramid as a pyramidal OME-TIFF (grey uint8 0/1/2), tile by tile, atomically.

    For viewers that do not read OME-Zarr (QuPath opens it as an image to overlay). Each level
    is read one tile row at a time, so memory stays at a row of tiles.
    """
    import tifffile

    tile = 512
    levels = pyramid.n_levels()

    def tiles(k: int) -> Iterator[np.ndarray]:
        array = pyramid.level(k)
        h, w = array.shape
        for y in range(0, h, tile):
            row = np.asarray(array[y : y + tile, :])
            for x in range(0, w, tile):
                part = row[:, x : x + tile]
                full = np.zeros((tile, tile), np.uint8)
                full[: part.shape[0], : part.shape[1]] = part
                yield full

    options = {"tile": (tile, tile), "photometric": "minisblack", "compression": "zlib",
               "dtype": np.uint8}  # fmt: skip
    metadata: dict[str, Any] = {"axes": "YX", "Name": "CytoReview labels (1 cytoplasm, 2 nucleus)"}
    if pixel_size_um is not None:
        metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um,
                        PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with tifffile.TiffWriter(tmp, bigtiff=True, ome=True) as writer:
        shape = pyramid.level(0).shape
        writer.write(tiles(0), shape=shape, subifds=levels - 1, metadata=metadata, **options)
        for k in range(1, levels):
            writer.write(tiles(k), shape=pyramid.level(k).shape, subfiletype=1, metadata=None,
                         **options)  # fmt: skip
    tmp.replace(path)
    return path


#: Columns of a slide's candidate-cell table (level-0 px; area of the nucleus in level-0 px²).
CANDIDATE_COLUMNS = ("y", "x", "nucleus_area_px", "score")


def candidates_path(results_dir: Path) -> Path:
    """Where a slide's candidate cells are kept: ``slides/<name>/cells/candidates.csv``."""
    return results_dir / "cells" / "candidates.csv"


def write_candidates(path: Path, rows: Iterable[Sequence[float]]) -> None:
    """Write the candidate cells found on a slide (for re-cutting at another size), atomically."""
    write_cell_table(
        path, CANDIDATE_COLUMNS, (dict(zip(CANDIDATE_COLUMNS, r, strict=True)) for r in rows)
    )


def read_candidates(path: Path) -> list[tuple[float, float, float, float]]:
    """The candidate cells written by :func:`write_candidates` (empty when there are none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    reader = csv.DictReader(io.StringIO(text))
    return [tuple(float(row[c]) for c in CANDIDATE_COLUMNS) for row in reader]  # type: ignore[misc]
