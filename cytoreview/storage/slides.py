"""Whole-slide images, opened lazily: levels as dask arrays, regions read on demand.

A scanner slide is 50,000-150,000 px a side: level 0 is never decoded whole. Two readers:

- **tifffile** for TIFF pyramids (OME-TIFF, generic tiled TIFF, Aperio SVS written as TIFF):
  each level is a zarr store over the file's tiles (``TiffFile.aszarr``), so a region reads only
  the tiles it touches;
- **OpenSlide** (the ``openslide-bin`` wheel: no system library needed) for the vendor formats
  tifffile does not read (NDPI, MRXS, SCN, DICOM WSI, VMS, BIF), each level wrapped as a dask
  array of ``read_region`` blocks.

Pixel size (um per px) and objective power come from the metadata (OME ``PhysicalSizeX``,
Aperio ``MPP`` / ``AppMag``, OpenSlide's ``openslide.mpp-x`` / ``objective-power``, or the TIFF
resolution tags in cm or inch); None when the file does not say (the caller asks the user once).

Also :func:`write_pyramid_tiff`, the writer of pyramidal (OME-)TIFF slides (synthetic test
slides, exported label pyramids): storage is the only layer that writes files.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cytoreview.errors import InputFileError

__all__ = [
    "OPENSLIDE_SUFFIXES",
    "SLIDE_ONLY_SUFFIXES",
    "Slide",
    "SlideLevel",
    "TileSource",
    "is_ome_zarr",
    "is_slide_file",
    "open_slide",
    "write_pyramid_tiff",
    "write_tiled_pyramid",
]

#: Formats only OpenSlide reads (TIFF-based ones go through tifffile first).
OPENSLIDE_SUFFIXES = (".ndpi", ".mrxs", ".scn", ".dcm", ".vms", ".vmu", ".bif", ".svslide")
TIFF_SUFFIXES = (".tif", ".tiff", ".svs", ".btf", ".tf8", ".tf2")
#: Extensions that always name a slide (never an ordinary image).
SLIDE_ONLY_SUFFIXES = (*OPENSLIDE_SUFFIXES, ".svs")
#: Block side of the dask arrays over OpenSlide levels.
OPENSLIDE_BLOCK = 1024


@dataclass(frozen=True)
class SlideLevel:
    """One resolution of a slide."""

    height: int
    width: int
    #: Level-0 pixels per pixel of this level (1.0 for level 0).
    downsample: float


@dataclass
class Slide:
    """An open slide. Close it (or use it as a context manager) to release the file.

    Attributes
    ----------
    path
        The file.
    reader
        ``tifffile`` or ``openslide``.
    levels
        Full resolution first.
    pixel_size_um
        Micrometres per level-0 pixel, None when the metadata does not say.
    objective_power
        The scan's objective magnification (e.g. 20, 40), None when unknown.
    """

    path: Path
    reader: str
    levels: list[SlideLevel]
    pixel_size_um: float | None
    objective_power: float | None
    _arrays: list[Any] = field(default_factory=list, repr=False)
    _handle: Any = field(default=None, repr=False)

    def level_array(self, level: int = 0) -> Any:
        """Level ``level`` as a lazy ``(H, W, 3)`` uint8 dask array (nothing decoded yet)."""
        return self._arrays[level]

    def read_region(self, level: int, y: int, x: int, height: int, width: int) -> np.ndarray:
        """``(height, width, 3)`` uint8 RGB at ``level``, top-left ``(y, x)`` in its pixels.

        The region is clipped to the level: a request past the edge returns what exists.
        """
        array = self._arrays[level]
        y0, x0 = max(0, y), max(0, x)
        # Synchronous: a region is a few tiles, and on a Dask worker the default scheduler
        # would be the cluster itself, which cannot ship the open file handle.
        return np.asarray(array[y0 : y + height, x0 : x + width].compute(scheduler="sync"))

    def close(self) -> None:
        """Release the file handle."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_slide(path: str | Path) -> Slide:
    """Open a slide lazily (see the module docstring for which reader takes which file).

    Raises
    ------
    InputFileError
        If the file is missing or no reader can open it (one line naming the file).
    """
    path = Path(path)
    if path.is_dir() and is_ome_zarr(path):
        try:
            return _open_zarr(path)
        except Exception as exc:  # a damaged or unusual store: one line  # noqa: BLE001
            reason = f"not an OME-Zarr image this reader understands ({exc})"
            raise InputFileError(path, reason) from None
    if not path.is_file():
        raise InputFileError(path, "no such file")
    suffix = (
        "".join(path.suffixes[-2:]).lower()
        if path.name.lower().endswith(".ome.tif")
        else (path.suffix.lower())
    )
    errors = []
    readers = (_open_openslide, _open_tiff) if suffix in OPENSLIDE_SUFFIXES else (
        _open_tiff, _open_openslide
    )  # fmt: skip
    for reader in readers:
        try:
            return reader(path)
        except Exception as exc:  # any reader's failure: try the next, then say both  # noqa: BLE001
            errors.append(f"{reader.__name__.removeprefix('_open_')}: {str(exc)[:120]}")
    raise InputFileError(path, "not a slide either reader can open (" + "; ".join(errors) + ")")


def is_slide_file(path: str | Path) -> bool:
    """Whether a file is a whole-slide image rather than an ordinary image.

    A slide format by extension (SVS, NDPI, MRXS...), or a TIFF whose first series is a
    pyramid (several resolutions) of tiles: what scanners write, and what an ordinary image
    reader would try to decode whole. Only the header is read; an unreadable TIFF is not a
    slide here (the image importer then names what is wrong with it).
    """
    path = Path(path)
    if path.is_dir():
        return is_ome_zarr(path)
    suffix = path.suffix.lower()
    if suffix in SLIDE_ONLY_SUFFIXES:
        return True
    if suffix not in TIFF_SUFFIXES:
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            return len(series.levels) > 1 and bool(series.keyframe.is_tiled)
    except Exception:  # not a readable TIFF: for the image reader to explain  # noqa: BLE001
        return False


def _as_rgb(array: Any) -> Any:
    """A ``(H, W[, C])`` level as ``(H, W, 3)`` uint8 (grey repeated, alpha dropped)."""
    import dask.array as da

    if array.ndim == 2:
        array = da.stack([array] * 3, axis=-1)
    elif array.shape[-1] in (1, 2):  # grey, or grey + alpha
        array = da.concatenate([array[..., :1]] * 3, axis=-1)
    elif array.shape[-1] >= 4:
        array = array[..., :3]
    if array.dtype != np.uint8:
        if array.dtype == np.uint16:
            array = (array // 257).astype(np.uint8)
        else:
            raise ValueError(f"{array.dtype} pixels are not supported for slides")
    return array


def _open_tiff(path: Path) -> Slide:
    import dask.array as da
    import tifffile
    import zarr

    tif = tifffile.TiffFile(path)
    try:
        series = tif.series[0]
        if series.axes[-1] not in "SC" and series.axes[-2:] != "YX":
            raise ValueError(f"axes {series.axes} are not an image")
        group = zarr.open(tif.aszarr(series=0), mode="r")
        stores = [group] if isinstance(group, zarr.Array) else [
            group[str(i)] for i in range(len(series.levels))
        ]  # fmt: skip
        arrays = [_as_rgb(da.from_zarr(store)) for store in stores]
        full = arrays[0].shape[1]
        levels = [SlideLevel(a.shape[0], a.shape[1], full / a.shape[1]) for a in arrays]
        pixel_size, power = _tiff_metadata(tif)
    except Exception:
        tif.close()
        raise
    return Slide(path, "tifffile", levels, pixel_size, power, arrays, tif)


def _tiff_metadata(tif: Any) -> tuple[float | None, float | None]:
    """Pixel size (um) and objective power from OME-XML, an Aperio description, or tags."""
    if tif.ome_metadata:
        root = ET.fromstring(tif.ome_metadata)
        pixels = next((e for e in root.iter() if e.tag.endswith("Pixels")), None)
        objective = next((e for e in root.iter() if e.tag.endswith("Objective")), None)
        power = objective.get("NominalMagnification") if objective is not None else None
        if pixels is not None and pixels.get("PhysicalSizeX"):
            unit = pixels.get("PhysicalSizeXUnit", "µm")
            scale = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3}.get(unit)
            if scale is not None:
                return float(pixels.get("PhysicalSizeX")) * scale, _float(power)
    description = tif.pages[0].description or ""
    if description.startswith("Aperio"):
        mpp = re.search(r"MPP\s*=\s*([0-9.]+)", description)
        mag = re.search(r"AppMag\s*=\s*([0-9.]+)", description)
        return _float(mpp.group(1) if mpp else None), _float(mag.group(1) if mag else None)
    page = tif.pages[0]
    tags = page.tags
    if "XResolution" in tags and "ResolutionUnit" in tags:
        numerator, denominator = tags["XResolution"].value
        unit = int(tags["ResolutionUnit"].value)
        per_um = {2: 25_400.0, 3: 10_000.0}.get(unit)  # inch, cm
        if per_um and numerator and denominator:
            size = per_um / (numerator / denominator)
            if 0.01 <= size <= 10:  # a scanner's range; 72 dpi defaults are not a pixel size
                return size, None
    return None, None


def _float(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _open_openslide(path: Path) -> Slide:
    import openslide

    handle = openslide.OpenSlide(str(path))
    try:
        arrays, levels = [], []
        for level, (width, height) in enumerate(handle.level_dimensions):
            downsample = float(handle.level_downsamples[level])
            arrays.append(_openslide_level(handle, level, downsample, height, width))
            levels.append(SlideLevel(height, width, downsample))
        props = handle.properties
        pixel_size = _float(props.get(openslide.PROPERTY_NAME_MPP_X))
        power = _float(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
    except Exception:
        handle.close()
        raise
    return Slide(path, "openslide", levels, pixel_size, power, arrays, handle)


def _openslide_level(handle: Any, level: int, downsample: float, height: int, width: int) -> Any:
    """One OpenSlide level as a dask array of :data:`OPENSLIDE_BLOCK` blocks.

    ``map_blocks`` describes the blocks by their sizes alone: a 100,000 px level has 10,000 of
    them, and a graph of one task per block built up front (delayed + concatenate) took
    seconds to open; this takes milliseconds, and a block is read only when it is computed.
    """
    import dask.array as da

    def sizes(total: int) -> tuple[int, ...]:
        full, rest = divmod(total, OPENSLIDE_BLOCK)
        return (OPENSLIDE_BLOCK,) * full + ((rest,) if rest else ())

    def read(block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None  # dask always passes it to a function that asks
        (y, y1), (x, x1), _ = block_info[None]["array-location"]
        return _openslide_block(handle, level, downsample, y, x, y1 - y, x1 - x)

    return da.map_blocks(
        read,
        chunks=(sizes(height), sizes(width), (3,)),
        dtype=np.uint8,
        meta=np.empty((0, 0, 0), np.uint8),
    )


def _openslide_block(
    handle: Any, level: int, downsample: float, y: int, x: int, h: int, w: int
) -> np.ndarray:
    # read_region takes level-0 coordinates and gives RGBA with transparent empty areas.
    rgba = np.asarray(handle.read_region((int(x * downsample), int(y * downsample)), level, (w, h)))
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = 255  # no scan data: white glass, as a slide's background
    return rgb


def is_ome_zarr(path: Path) -> bool:
    """Whether ``path`` is an OME-Zarr image folder (NGFF multiscales metadata at its root)."""
    import json

    for name in (".zattrs", "zarr.json"):
        meta = path / name
        if meta.is_file():
            try:
                data = json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return False
            attrs = data.get("attributes", data)  # zarr 3 keeps them under "attributes"
            return "multiscales" in attrs.get("ome", attrs)
    return False


def _open_zarr(path: Path) -> Slide:
    """An OME-Zarr image (NGFF 0.4 or 0.5): one level per multiscales dataset.

    Axes come from the metadata: y and x are kept, the first three channels of ``c`` (one is
    repeated as grey), index 0 of any other axis (t, z).
    """
    import dask.array as da
    import zarr

    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    multiscales = attrs.get("ome", attrs)["multiscales"][0]
    axes = [a["name"] if isinstance(a, dict) else a for a in multiscales.get("axes", "tczyx")]
    arrays = []
    for dataset in multiscales["datasets"]:
        array = da.from_zarr(group[dataset["path"]])
        index = tuple(slice(None) if a in "yxc" else 0 for a in axes)
        kept = [a for a in axes if a in "yxc"]
        array = array[index]
        array = da.moveaxis(array, kept.index("c"), -1) if "c" in kept else array[..., None]
        arrays.append(_as_rgb(array))
    full = arrays[0].shape[1]
    levels = [SlideLevel(a.shape[0], a.shape[1], full / a.shape[1]) for a in arrays]
    pixel_size = None
    transforms = multiscales["datasets"][0].get("coordinateTransformations", [])
    units = {
        a.get("name"): a.get("unit") for a in multiscales.get("axes", []) if isinstance(a, dict)
    }
    for t in transforms:
        if t.get("type") == "scale" and units.get("x") in ("micrometer", "micron", "um"):
            pixel_size = float(t["scale"][axes.index("x")])
    return Slide(path, "zarr", levels, pixel_size, None, arrays, None)


class TileSource(Protocol):
    """What :func:`write_tiled_pyramid` reads: each level's shape and row-major tiles."""

    def level_shape(self, level: int) -> tuple[int, int]:
        """``(height, width)`` of level ``level``."""
        ...

    def tiles(self, level: int, tile: int) -> Iterator[np.ndarray]:
        """Its ``(h, w, 3)`` uint8 tiles, row-major (edge tiles may be smaller)."""
        ...


@dataclass(frozen=True)
class _ArrayPyramid:
    """An in-memory image as a tile source (levels made by area averaging)."""

    pyramid: list[np.ndarray]

    def level_shape(self, level: int) -> tuple[int, int]:
        return self.pyramid[level].shape[:2]

    def tiles(self, level: int, tile: int) -> Iterator[np.ndarray]:
        image = self.pyramid[level]
        for y in range(0, image.shape[0], tile):
            for x in range(0, image.shape[1], tile):
                yield image[y : y + tile, x : x + tile]


def write_pyramid_tiff(
    path: str | Path,
    rgb: np.ndarray,
    *,
    levels: int = 3,
    pixel_size_um: float | None = None,
    tile: int = 256,
    flavour: str = "ome",
    objective_power: float | None = None,
) -> Path:
    """Write ``rgb`` as a tiled pyramidal TIFF (each level half the one before).

    See :func:`write_tiled_pyramid` for the flavours.
    """
    import cv2

    pyramid = [np.ascontiguousarray(rgb)]
    for _ in range(levels - 1):
        prev = pyramid[-1]
        pyramid.append(cv2.resize(prev, (max(1, prev.shape[1] // 2), max(1, prev.shape[0] // 2)),
                                  interpolation=cv2.INTER_AREA))  # fmt: skip
    return write_tiled_pyramid(
        path, _ArrayPyramid(pyramid), levels=levels, pixel_size_um=pixel_size_um, tile=tile,
        flavour=flavour, objective_power=objective_power,
    )  # fmt: skip


def _full_tiles(tiles: Iterator[np.ndarray], tile: int) -> Iterator[np.ndarray]:
    """Edge tiles padded to ``tile`` x ``tile`` (the writer crops the padding away)."""
    for part in tiles:
        if part.shape[0] == tile and part.shape[1] == tile:
            yield np.ascontiguousarray(part)
            continue
        full = np.full((tile, tile, part.shape[2]), 255, np.uint8)
        full[: part.shape[0], : part.shape[1]] = part
        yield full


def write_tiled_pyramid(
    path: str | Path,
    source: TileSource,
    *,
    levels: int = 3,
    pixel_size_um: float | None = None,
    tile: int = 256,
    flavour: str = "ome",
    objective_power: float | None = None,
) -> Path:
    """Write a pyramid tile by tile (never the whole slide in memory), atomically.

    Parameters
    ----------
    source
        Each level's shape and its RGB tiles in row-major order.
    flavour
        ``ome`` (OME-TIFF with SubIFDs and PhysicalSizeX) or ``aperio`` (an SVS-like TIFF:
        level 0, a thumbnail, then the other levels as pages, an ``Aperio`` description with
        ``MPP`` and ``AppMag``, as OpenSlide and scanners lay it out).
    """
    import tifffile

    if flavour not in ("ome", "aperio"):
        raise ValueError(f"unknown flavour {flavour!r}; valid: ome, aperio")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"tile": (tile, tile), "photometric": "rgb", "compression": "zlib",
               "dtype": np.uint8}  # fmt: skip

    def level(i: int) -> tuple[Iterator[np.ndarray], tuple[int, int, int]]:
        height, width = source.level_shape(i)
        return _full_tiles(source.tiles(i, tile), tile), (height, width, 3)

    tmp = path.with_name(path.name + ".part")
    with tifffile.TiffWriter(tmp, bigtiff=True, ome=flavour == "ome") as writer:
        data, shape = level(0)
        if flavour == "ome":
            metadata: dict[str, Any] = {"axes": "YXS"}
            if pixel_size_um is not None:
                metadata.update(PhysicalSizeX=pixel_size_um, PhysicalSizeY=pixel_size_um,
                                PhysicalSizeXUnit="µm", PhysicalSizeYUnit="µm")  # fmt: skip
            writer.write(data, shape=shape, subifds=levels - 1, metadata=metadata, **options)
            for i in range(1, levels):
                data, shape = level(i)
                writer.write(data, shape=shape, subfiletype=1, metadata=None, **options)
        else:
            height, width = shape[:2]
            description = (
                f"Aperio Image Library CytoReview\r\n{width}x{height} [0,0 {width}x{height}] "
                f"({tile}x{tile}) ZLIB|AppMag = {objective_power or 20}"
                + (f"|MPP = {pixel_size_um}" if pixel_size_um is not None else "")
            )
            writer.write(data, shape=shape, description=description, metadata=None, **options)
            # Aperio's second page is a small untiled thumbnail (readers expect it there): the
            # smallest level, which is at most a few hundred px for a real pyramid.
            small = source.level_shape(levels - 1)
            thumb = np.concatenate(
                [np.concatenate(list(row), axis=1) for row in _rows(
                    source.tiles(levels - 1, tile), small, tile)], axis=0
            )  # fmt: skip
            writer.write(thumb, photometric="rgb", description="", metadata=None)
            for i in range(1, levels):
                data, shape = level(i)
                writer.write(data, shape=shape, description="", metadata=None, **options)
    tmp.replace(path)  # atomic: a reader never sees half a slide
    return path


def _rows(
    tiles: Iterator[np.ndarray], shape: tuple[int, int], tile: int
) -> Iterator[list[np.ndarray]]:
    """Row-major tiles of a level of ``shape`` grouped by tile row."""
    across = -(-shape[1] // tile)
    row: list[np.ndarray] = []
    for part in tiles:
        row.append(part)
        if len(row) == across:
            yield row
            row = []
