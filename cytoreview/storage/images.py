"""Readers for microscope images and label masks (TIFF, PNG, BMP, JPEG).

Every failure a file can cause surfaces as :class:`~cytoreview.errors.ImageReadError` (or
:class:`~cytoreview.errors.MaskFileError` for masks) naming the file and a short reason, so one
bad slide never stops a batch. The format is chosen from the file's first bytes, not its
extension. Sizes are checked from the header before any pixel is decoded, so a huge or hostile
file is refused without filling the memory.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
import tifffile
from PIL import BmpImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin

from cytoreview.defaults import check_pixel_size
from cytoreview.errors import ImageReadError, InputFileError, MaskFileError
from cytoreview.storage.png_chunks import pixel_chunks_only
from cytoreview.types import VALID_LABELS

#: File name extensions (lower case, with the dot) scanned for images when importing a folder.
IMAGE_EXTENSIONS: frozenset[str] = frozenset({".tif", ".tiff", ".png", ".bmp", ".jpg", ".jpeg"})
#: Largest image (width x height) read by default; users raise it with ``--max-pixels``.
DEFAULT_MAX_PIXELS: int = 100_000_000

# fmt: off
_MAGIC: dict[bytes, str] = {
    b"II*\x00": "tiff", b"MM\x00*": "tiff", b"II+\x00": "tiff", b"MM\x00+": "tiff",  # + BigTIFF
    b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"BM": "bmp",
    # Kinds people may well try, named so the message says more than "not an image file".
    b"GIF8": "GIF", b"\x00\x00\x00\x0cjP  ": "JPEG 2000", b"\xff\x4f\xff\x51": "JPEG 2000",
}
# fmt: on
# Pillow's plugin classes parse the header only. They are called directly instead of
# Image.open, which would apply Pillow's own pixel limit before ours (and ours can be raised).
_PIL_OPENERS = {
    "png": PngImagePlugin.PngImageFile,
    "jpeg": JpegImagePlugin.JpegImageFile,
    "bmp": BmpImagePlugin.BmpImageFile,
}
# Channels OpenCV returns (IMREAD_UNCHANGED) for each Pillow mode: palettes are expanded.
_MODE_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "I;16B": 1, "LA": 2, "RGBA": 4}
_SUPPORTED = "only grey, RGB or RGBA images are supported"
_RESCALE_SAMPLE = 4_000_000  # elements used to estimate the display limits of a large image
_RESCALE_BLOCK = 4_000_000  # elements converted per step, to bound the float copy


@dataclass(frozen=True)
class ImageInfo:
    """What an image file holds, as read from its header.

    Attributes
    ----------
    width, height
        Size in pixels.
    channels
        Channels of the stored image after choosing the first plane: 1 grey, 2 grey+alpha,
        3 RGB, 4 RGBA (palettes count as their expanded colours).
    dtype
        NumPy dtype name of the stored pixels (``"uint8"``, ``"uint16"``, ``"float32"``...).
    n_pages
        Planes, pages or series in the file (1 for ordinary images); only the first is used.
    format
        ``"tiff"``, ``"png"``, ``"bmp"`` or ``"jpeg"``.
    pixel_size_um
        Micrometres per pixel from the TIFF resolution tags, when they hold a microscopy
        scale; None otherwise (screen DPI such as 72 or 96 is not a pixel size).
    orientation
        The EXIF orientation (1-8) of a JPEG, already applied: ``width``, ``height`` and the
        pixels are as the photo is meant to be seen (a mask must match that). 1 when there is
        none or it was not applied.
    """

    width: int
    height: int
    channels: int
    dtype: str
    n_pages: int
    format: str
    pixel_size_um: float | None = None
    orientation: int = 1


@dataclass(frozen=True)
class LoadedImage:
    """A decoded image: what is shown and what was stored.

    Attributes
    ----------
    rgb
        (H, W, 3) uint8: what the viewer shows and the models train on.
    original
        (H, W) or (H, W, C) first plane in the stored dtype, channels in RGB(A) order.
    info
        Header facts; ``channels`` and ``dtype`` describe ``original``.
    """

    rgb: np.ndarray
    original: np.ndarray
    info: ImageInfo


# --- Public API -------------------------------------------------------------------------------
def probe_image(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, *, exif_orientation: bool = True
) -> ImageInfo:
    """Read an image's header, without decoding its pixels.

    Parameters
    ----------
    path
        Image file (TIFF, PNG, BMP or JPEG, recognised by content).
    max_pixels
        Largest accepted width x height.
    exif_orientation
        Report a JPEG's size as its EXIF orientation shows it (default), or as stored.

    Returns
    -------
    ImageInfo
        Size, channels, pixel type, number of planes and format.

    Raises
    ------
    ImageReadError
        If the file is missing, empty, not a supported image, too large, of an unsupported pixel
        type or channel count, or its header is corrupt. A truncated pixel area is only found
        by :func:`read_image`.
    """
    path = Path(path)
    fmt = _sniff(path)
    with _guard(path, fmt):
        if fmt == "tiff":
            with tifffile.TiffFile(path) as tif:
                info = _tiff_layout(path, tif)[0]
        else:
            with path.open("rb") as fh:
                info = _pil_header(fh, fmt, exif_orientation)
    _check_image(path, info, max_pixels)
    return info


def read_image(
    path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, *, exif_orientation: bool = True
) -> LoadedImage:
    """Decode an image file for display and analysis.

    Parameters
    ----------
    path
        Image file (TIFF, PNG, BMP or JPEG, recognised by content).
    max_pixels
        Largest accepted width x height, checked from the header before decoding.
    exif_orientation
        Turn a JPEG as its EXIF orientation says (default), or keep the pixels as stored
        (images catalogued before CytoReview honoured the orientation).

    Returns
    -------
    LoadedImage
        The stored first plane and its (H, W, 3) uint8 display version.

    Raises
    ------
    ImageReadError
        If the file is missing, empty, truncated, corrupt, not a supported image, too large, or
        of an unsupported pixel type or channel count.
    """
    path = Path(path)
    original, info = _decode(path, lambda i: _check_image(path, i, max_pixels), exif_orientation)
    try:
        rgb = to_display_rgb(original)
    except ValueError as exc:  # a layout the header did not reveal
        raise ImageReadError(path, str(exc)) from None
    return LoadedImage(rgb=rgb, original=original, info=info)


def to_display_rgb(array: np.ndarray) -> np.ndarray:
    """Convert any supported image array to (H, W, 3) uint8 for display.

    Grey is repeated into three channels and alpha is dropped. uint8 values pass unchanged;
    other integer and float types are stretched between their 0.5th and 99.5th percentiles,
    taken over all colour channels together so that the colour balance is kept. NaN and
    infinities map to 0, and a constant image becomes all zeros.

    Parameters
    ----------
    array
        (H, W) or (H, W, C) with C in 1..4, integer or float.

    Returns
    -------
    numpy.ndarray
        A new (H, W, 3) uint8 array; it never shares memory with ``array``.

    Raises
    ------
    ValueError
        For other shapes, an empty image, or bool, complex or object pixels.
    """
    a = np.asarray(array)
    if a.ndim not in (2, 3):
        raise ValueError(f"array of shape {a.shape} is not an image")
    reason = _unsupported(a.dtype, a.shape[2] if a.ndim == 3 else 1)
    if reason:
        raise ValueError(reason)
    if a.size == 0:
        raise ValueError("image has no pixels (width or height is 0)")
    if a.ndim == 2:
        a = a[..., None]
    a = a[..., :1] if a.shape[2] == 2 else a[..., :3]  # drop alpha
    if a.dtype != np.uint8:
        a = _rescale_to_uint8(a)
    out = np.repeat(a, 3, axis=2) if a.shape[2] == 1 else np.ascontiguousarray(a)
    # The display copy must not alias the stored pixels: editing one would change the other.
    return out.copy() if np.may_share_memory(out, array) else out


def read_label_mask(path: str | Path, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a label mask: 0 background, 1 cytoplasm, 2 nucleus.

    Parameters
    ----------
    path
        PNG or TIFF file holding one channel (or grey stored as three equal channels); uint8,
        uint16 and other numeric types are accepted when every value is 0, 1 or 2.
    expected_shape
        (height, width) of the mask's image; a mask of another size is refused.

    Returns
    -------
    numpy.ndarray
        (H, W) uint8 with values in {0, 1, 2}.

    Raises
    ------
    MaskFileError
        If the file is unreadable or not a label image of the right size and values.
    """
    path = Path(path)
    limit = DEFAULT_MAX_PIXELS
    if expected_shape is not None:  # the mask has to be as large as its image anyway
        limit = max(limit, int(expected_shape[0]) * int(expected_shape[1]))

    def check(info: ImageInfo) -> None:
        if info.format not in ("png", "tiff"):
            raise MaskFileError(path, f"masks must be PNG or TIFF files, not {info.format.upper()}")
        if expected_shape is not None and (info.height, info.width) != tuple(expected_shape):
            raise MaskFileError(
                path,
                f"mask is {info.width} x {info.height} (width x height) but its image is "
                f"{expected_shape[1]} x {expected_shape[0]}",
            )
        _check_size(path, info, limit)

    try:
        mask, _ = _decode(path, check)
    except ImageReadError as exc:
        raise MaskFileError(path, exc.reason) from exc
    if mask.ndim == 3 and mask.shape[2] != 3:
        reason = f"mask has {mask.shape[2]} channels; expected a single-channel label image"
        raise MaskFileError(path, reason)
    if mask.ndim == 3:  # grey saved as RGB is fine; real colours are not labels
        if (mask != mask[..., :1]).any():
            raise MaskFileError(path, "colour mask; expected a label image")
        mask = mask[..., 0]
    if mask.dtype.kind not in "biuf":
        raise MaskFileError(path, f"unsupported pixel type {mask.dtype}")
    if mask.dtype == np.uint8:  # bincount is much faster than sorting for the usual case
        values = np.flatnonzero(np.bincount(mask.ravel(), minlength=256))
    else:
        values = np.unique(mask)
    if not all(v in VALID_LABELS for v in values.tolist()):
        shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values[:8].tolist())
        more = ", ..." if len(values) > 8 else ""
        raise MaskFileError(path, f"mask values must be 0, 1 or 2 (found {shown}{more})")
    return np.ascontiguousarray(mask, dtype=np.uint8)


def read_ignore_mask(path: str | Path, expected_shape: tuple[int, int]) -> np.ndarray:
    """Read an "ignore" mask (any non-zero pixel is left out of scoring) as a bool array.

    Raises
    ------
    MaskFileError
        If the file is unreadable or its size differs from ``expected_shape`` (height, width).
    """
    path = Path(path)

    def check(info: ImageInfo) -> None:
        if (info.height, info.width) != tuple(expected_shape):
            raise MaskFileError(
                path,
                f"ignore mask is {info.width} x {info.height} (width x height) but its image is "
                f"{expected_shape[1]} x {expected_shape[0]}",
            )

    try:
        mask, _ = _decode(path, check)
    except ImageReadError as exc:
        raise MaskFileError(path, exc.reason) from exc
    return (mask.reshape(*mask.shape[:2], -1) != 0).any(axis=2)


# --- File access and checks -------------------------------------------------------------------
def _not_regular(mode: int) -> str | None:
    """Why a file of this ``st_mode`` is not read as an image, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not an image file"
    kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device or socket"
    return f"is {kind}, not a regular file; not opened"


def _sniff(path: Path) -> str:
    """Return the format from the file's first bytes, or raise a clear error.

    Only regular files are opened: reading a named pipe would wait forever for a writer, and
    a device could be endless. The type is checked before opening and again on the open file
    (non-blocking), so a pipe swapped in between cannot hang the import either.
    """
    try:
        reason = _not_regular(path.stat().st_mode)
        if reason:
            raise ImageReadError(path, reason)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        try:
            reason = _not_regular(os.fstat(fd).st_mode)
            head = b"" if reason else os.read(fd, 16)
        finally:
            os.close(fd)
        if reason:
            raise ImageReadError(path, reason)
    except FileNotFoundError:
        if path.is_symlink():
            raise ImageReadError(path, "broken symbolic link (its target is missing)") from None
        raise ImageReadError(path, "file not found") from None
    except PermissionError:
        raise ImageReadError(path, "cannot read file (permission denied)") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot read file ({exc.strerror or exc})") from None
    if not head:
        raise ImageReadError(path, "file is empty (0 bytes)")
    fmt = next((f for m, f in _MAGIC.items() if head.startswith(m)), "")
    fmt = "WebP" if head.startswith(b"RIFF") and head[8:12] == b"WEBP" else fmt
    if fmt in ("tiff", "png", "jpeg", "bmp"):
        return fmt
    if fmt:
        raise ImageReadError(path, f"{fmt} images are not supported; use TIFF, PNG or JPEG")
    raise ImageReadError(path, "not an image file")


@contextlib.contextmanager
def _guard(path: Path, fmt: str) -> Iterator[None]:
    """Turn any library exception into an ImageReadError that names the file."""
    try:
        yield
    except InputFileError:
        raise
    except MemoryError:
        raise ImageReadError(path, "not enough memory to read this image") from None
    except Exception as exc:  # decoders raise anything at all on corrupt input
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ImageReadError(path, f"truncated or corrupt {fmt.upper()} ({detail})") from exc


def _unsupported(dtype: np.dtype, channels: int) -> str | None:
    """Why an image with these pixels cannot be shown, or None if it can."""
    if dtype.kind not in "uif":
        return f"unsupported pixel type {dtype}"
    if not 1 <= channels <= 4:
        return f"{channels} channels; {_SUPPORTED}"
    return None


def _check_size(path: Path, info: ImageInfo, max_pixels: int) -> None:
    """Refuse empty images and images above ``max_pixels``, from the header alone."""
    if info.width <= 0 or info.height <= 0:
        raise ImageReadError(path, "image has no pixels (width or height is 0)")
    n = info.width * info.height
    if n > max_pixels:
        size = f"{n / 1e6:.1f} megapixels" if n >= 100_000 else f"{n} pixels"
        limit = (
            f"{max_pixels / 1e6:g} megapixels" if max_pixels >= 100_000 else f"{max_pixels} pixels"
        )
        raise ImageReadError(
            path,
            f"image is {info.width} x {info.height} = {size}, above the limit of {limit} "
            "(raise it with --max-pixels)",
        )


def _check_image(path: Path, info: ImageInfo, max_pixels: int) -> None:
    _check_size(path, info, max_pixels)
    reason = _unsupported(np.dtype(info.dtype), info.channels)
    if reason:
        raise ImageReadError(path, reason)


def _decode(
    path: Path, check: Callable[[ImageInfo], None], exif_orientation: bool = False
) -> tuple[np.ndarray, ImageInfo]:
    """Decode the first plane; ``check`` sees the header info first and may refuse it."""
    fmt = _sniff(path)
    with _guard(path, fmt):
        if fmt == "tiff":
            array, info = _decode_tiff(path, check)
        else:
            array, info = _decode_other(path, fmt, check, exif_orientation)
    if array.shape[:2] != (info.height, info.width):
        raise ImageReadError(path, f"decoded size {array.shape[:2]} differs from the header")
    channels = array.shape[2] if array.ndim == 3 else 1
    return array, replace(info, channels=channels, dtype=array.dtype.name)


# --- PNG, BMP, JPEG: header by Pillow, pixels by OpenCV ---------------------------------------
def _pil_header(fh: BinaryIO, fmt: str, exif_orientation: bool = False) -> ImageInfo:
    im = _PIL_OPENERS[fmt](fh)
    channels = _MODE_CHANNELS.get(im.mode, 3)  # CMYK JPEGs are decoded to RGB by OpenCV
    dtype = "uint8"
    if fmt == "png":
        # Pillow reports 16-bit RGB PNGs as 8-bit "RGB"; the IHDR bit depth is the truth.
        fh.seek(24)
        dtype = "uint16" if fh.read(1) == b"\x10" else "uint8"
        if channels == 3 and "transparency" in im.info:  # OpenCV adds the tRNS alpha
            channels = 4
    orientation = _exif_orientation(im) if fmt == "jpeg" and exif_orientation else 1
    width, height = (im.height, im.width) if orientation >= 5 else (im.width, im.height)
    n_frames = getattr(im, "n_frames", 1)
    return ImageInfo(width, height, channels, dtype, n_frames, fmt, orientation=orientation)


def _exif_orientation(im: Any) -> int:
    """The EXIF orientation tag (1-8) of an opened Pillow image; 1 when absent or unreadable."""
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - damaged EXIF: show the pixels as stored, not refuse them
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Turn stored pixels as EXIF ``orientation`` says (same result as Pillow's exif_transpose).

    2 mirrors left-right, 3 turns 180 degrees, 4 mirrors top-bottom, 5 transposes, 6 turns 90
    degrees clockwise, 7 transposes across the other diagonal, 8 turns 90 degrees
    anticlockwise.
    """
    if orientation == 2:
        array = array[:, ::-1]
    elif orientation == 3:
        array = array[::-1, ::-1]
    elif orientation == 4:
        array = array[::-1]
    elif orientation == 5:
        array = array.swapaxes(0, 1)
    elif orientation == 6:
        array = np.rot90(array, -1)
    elif orientation == 7:
        array = array[::-1, ::-1].swapaxes(0, 1)
    elif orientation == 8:
        array = np.rot90(array, 1)
    return np.ascontiguousarray(array)


def _jpeg_complete(data: bytes) -> bool:
    """Tell whether an end-of-image marker follows the last scan.

    Entropy-coded data cannot contain 0xFFD9 (0xFF bytes are stuffed), and embedded thumbnails
    come before the main scan, so this is a cheap, reliable truncation test.
    """
    sos = data.rfind(b"\xff\xda")
    return sos >= 0 and data.find(b"\xff\xd9", sos) >= 0


def _decode_other(
    path: Path, fmt: str, check: Callable[[ImageInfo], None], exif_orientation: bool = False
) -> tuple[np.ndarray, ImageInfo]:
    data = path.read_bytes()
    info = _pil_header(io.BytesIO(data), fmt, exif_orientation)
    check(info)
    # OpenCV 4 decodes a truncated JPEG with grey fill and only a warning on stderr.
    if fmt == "jpeg" and not _jpeg_complete(data):
        raise ImageReadError(path, "truncated or corrupt JPEG")
    if fmt == "png":  # checked first: libpng prints its own complaints to stderr
        pixels, damage = pixel_chunks_only(data)
        if pixels is None:
            raise ImageReadError(path, damage or "truncated or corrupt PNG")
        data = pixels
    # IMREAD_UNCHANGED keeps 16-bit PNGs 16-bit and keeps alpha.
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ImageReadError(path, f"truncated or corrupt {fmt.upper()}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if info.channels == 2 and array.ndim == 3 and array.shape[2] == 4:
        array = np.ascontiguousarray(array[..., [0, 3]])  # OpenCV expands grey+alpha to BGRA
    elif array.ndim == 3:
        code = cv2.COLOR_BGR2RGB if array.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        array = cv2.cvtColor(array, code)
    return _apply_orientation(array, info.orientation), info


# --- TIFF: tifffile, first plane of the first series ------------------------------------------
def _tiff_layout(path: Path, tif: tifffile.TiffFile) -> tuple[ImageInfo, list[int], str]:
    """Plan how to read the first plane: (info, page indices within the series, page axes).

    Y, X and one channel axis are kept: a page's samples (S) if it has them, else a per-page
    channel axis (C) as in OME-TIFF. Every other axis (Z, T, pages...) is read at index 0.
    """
    series = tif.series[0]  # a pyramid's level 0 is the series itself
    page = series.keyframe
    axes, shape, page_axes = series.axes, tuple(series.shape), page.axes
    if 0 in shape or 0 in page.shape:
        raise ImageReadError(path, "image has no pixels (width or height is 0)")
    if "Y" not in page_axes or "X" not in page_axes or not axes.endswith(page_axes):
        raise ImageReadError(path, f"unsupported TIFF layout (axes {axes})")
    n_lead = len(axes) - len(page_axes)
    lead_axes, lead_shape = axes[:n_lead], shape[:n_lead]
    chan = "S" if "S" in page_axes else next((a for a in "CS" if a in lead_axes), "")
    channels = shape[axes.index(chan)] if chan else 1
    spans = [range(n if a == chan else 1) for a, n in zip(lead_axes, lead_shape, strict=True)]
    keys = [int(np.ravel_multi_index(i, lead_shape)) if i else 0 for i in itertools.product(*spans)]
    other = [n for a, n in zip(axes, shape, strict=True) if a not in ("Y", "X", chan)]
    n_pages = int(np.prod(other, dtype=np.int64)) + len(tif.series) - 1
    dtype = series.dtype.name
    if page.photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
        channels, dtype = 3, "uint8"  # indices are shown through their colour map
    if _is_cmyk(path, page):
        if chan != "S" or channels < 4:
            raise ImageReadError(path, f"CMYK TIFF with {channels} ink(s); expected 4")
        channels = 3  # converted to RGB when read
    width, height = shape[axes.index("X")], shape[axes.index("Y")]
    info = ImageInfo(width, height, channels, dtype, n_pages, "tiff", _tiff_pixel_size(page))
    return info, keys, page_axes


#: Micrometres per TIFF ResolutionUnit (1 none, 2 inch, 3 cm; 4 mm and 5 µm are tifffile's).
_UNIT_UM: dict[int, float] = {2: 25_400.0, 3: 10_000.0, 4: 1_000.0, 5: 1.0}
_UNIT_NAMES: dict[str, int] = {
    "none": 1, "inch": 2, "in": 2, "centimeter": 3, "centimetre": 3, "cm": 3,
    "millimeter": 4, "millimetre": 4, "mm": 4, "micrometer": 5, "micrometre": 5, "um": 5,
}  # fmt: skip


def pixel_size_from_tiff_resolution(x_resolution: Any, unit: Any) -> float | None:
    """Micrometres per pixel from the TIFF XResolution and ResolutionUnit tags.

    Parameters
    ----------
    x_resolution
        Pixels per unit: a (numerator, denominator) rational as stored in the tag, or a number.
    unit
        ResolutionUnit: 1 or "none" (no absolute unit), 2 or "inch", 3 or "cm"/"centimeter"
        (4 "mm" and 5 "um", written by tifffile, are accepted too).

    Returns
    -------
    float or None
        µm per pixel, or None when the unit is "none" or unknown, the resolution is zero,
        negative or malformed, or the size is not a microscope's (the one rule,
        :func:`cytoreview.defaults.check_pixel_size`): image editors write 72, 96 or 300 dpi by
        default (352.8, 264.6, 84.7 µm/px), which is no calibration.
    """
    if isinstance(unit, str):
        unit = _UNIT_NAMES.get(unit.strip().lower().replace("µ", "u"), 0)
    pair = x_resolution if isinstance(x_resolution, tuple | list) else (x_resolution, 1)
    try:
        numerator, denominator = (float(v) for v in pair)
        return round(check_pixel_size(_UNIT_UM[int(unit)] * denominator / numerator), 6)
    except (TypeError, ValueError, KeyError, ZeroDivisionError):
        return None  # unit "none" or unknown, malformed, zero or implausible


def _tiff_pixel_size(page: Any) -> float | None:
    """Micrometres per pixel from XResolution / ResolutionUnit, or None when not microscopy."""
    tags = page.tags
    res, unit = tags.get("XResolution"), tags.get("ResolutionUnit")
    if res is None or unit is None:
        return None
    return pixel_size_from_tiff_resolution(res.value, unit.value)


def _decode_tiff(path: Path, check: Callable[[ImageInfo], None]) -> tuple[np.ndarray, ImageInfo]:
    with tifffile.TiffFile(path) as tif:
        info, keys, page_axes = _tiff_layout(path, tif)
        check(info)
        series = tif.series[0]
        try:
            planes = np.stack([series.pages[k].asarray() for k in keys])
        except ValueError as exc:
            if "imagecodecs" not in str(exc):
                raise
            name = series.keyframe.compression.name
            return _tiff_via_pillow(path, exc, name, keys), info
        page = series.keyframe
        if info.dtype == "uint8" and page.photometric == tifffile.PHOTOMETRIC.PALETTE:
            cmap = page.colormap
            cmap = (cmap >> 8).astype(np.uint8) if cmap.max() > 255 else cmap.astype(np.uint8)
            return np.ascontiguousarray(cmap.T[planes[0]]), info  # (3, N) map
    axes = "K" + page_axes  # K: the pages read
    planes = planes[tuple(slice(None) if a in "KYXS" else 0 for a in axes)]
    kept = [a for a in axes if a in "KYXS"]
    planes = planes.transpose([kept.index(a) for a in "YXSK" if a in kept])
    planes = planes.reshape(planes.shape[0], planes.shape[1], -1)  # S or K, one is 1 long
    if _is_cmyk(path, page):
        return _cmyk_to_rgb(planes[..., :4]), info  # extra samples (alpha) are dropped
    return np.ascontiguousarray(planes[..., 0] if planes.shape[2] == 1 else planes), info


def _is_cmyk(path: Path, page: Any) -> bool:
    """Tell whether a TIFF page holds CMYK inks (photometric SEPARATED, ink set CMYK)."""
    if page.photometric != tifffile.PHOTOMETRIC.SEPARATED:
        return False
    inkset = page.tags.get("InkSet")  # 1 CMYK (also the default), 2 other inks
    if inkset is not None and int(inkset.value) != 1:
        raise ImageReadError(path, "separated TIFF with inks other than CMYK is not supported")
    return True


def _cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    """(H, W, 4) CMYK to (H, W, 3) RGB of the same dtype: R = (1 - C)(1 - K), and so on.

    The same formula as Pillow's and libjpeg's; without a colour profile it is what every
    viewer shows for an untagged CMYK file.
    """
    if cmyk.dtype.kind == "f":
        full = 1.0
        rgb = (full - cmyk[..., :3]) * (full - cmyk[..., 3:4])
        return np.ascontiguousarray(rgb.astype(cmyk.dtype))
    top = int(np.iinfo(cmyk.dtype).max)
    inv = top - cmyk.astype(np.int64)
    rgb = (inv[..., :3] * inv[..., 3:4] + top // 2) // top  # rounded, exact in integers
    return np.ascontiguousarray(np.clip(rgb, 0, top).astype(cmyk.dtype))


def _tiff_via_pillow(path: Path, exc: Exception, compression: str, keys: list[int]) -> np.ndarray:
    """Decode a LZW/JPEG-compressed TIFF with Pillow when tifffile lacks ``imagecodecs``."""
    reason = f"TIFF compression {compression} needs the imagecodecs package"
    if keys != [0]:  # Pillow reads one page; channels spread over pages are beyond it
        raise ImageReadError(path, reason) from exc
    try:
        with path.open("rb") as fh:
            im = TiffImagePlugin.TiffImageFile(fh)
            im.load()
            if im.mode in ("P", "CMYK"):
                im = im.convert("RGB")
            array = np.asarray(im)
    except Exception as pil_exc:  # Pillow was the last resort
        raise ImageReadError(path, reason) from pil_exc
    return (array * np.uint8(255)).astype(np.uint8) if array.dtype == bool else array


def _rescale_to_uint8(a: np.ndarray) -> np.ndarray:
    """Stretch (H, W, C) numbers to uint8 between robust limits (see :func:`to_display_rgb`)."""
    flat = a.reshape(-1)
    sample = flat[:: max(1, flat.size // _RESCALE_SAMPLE)].astype(np.float64)
    sample = sample[np.isfinite(sample)]
    out = np.zeros(a.shape, np.uint8)
    if sample.size == 0:  # all NaN or infinite
        return out
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    rows = max(1, _RESCALE_BLOCK // max(1, a.shape[1] * a.shape[2]))
    for r in range(0, a.shape[0], rows):
        block = a[r : r + rows].astype(np.float64)
        # An (almost) constant image has no range to stretch: no division by zero.
        v = (block - lo) * (255.0 / (hi - lo)) if hi > lo else np.where(block > lo, 255.0, 0.0)
        if a.dtype.kind == "f":
            v[~np.isfinite(block)] = 0.0  # NaN and infinities count as the low limit
        out[r : r + rows] = np.rint(np.clip(v, 0.0, 255.0))
    return out
