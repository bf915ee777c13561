"""Tests of the image and label-mask readers on small files synthesised under tmp_path."""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps

from cytoreview.errors import ImageReadError, MaskFileError
from cytoreview.storage.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageInfo,
    probe_image,
    read_image,
    read_label_mask,
    to_display_rgb,
)

H, W = 24, 32
RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
GREY = RNG.integers(0, 256, (H, W), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
RGB16 = RNG.integers(0, 65536, (H, W, 3), dtype=np.uint16)
ALPHA = RNG.integers(0, 256, (H, W), dtype=np.uint8)
LABELS = RNG.integers(0, 3, (H, W), dtype=np.uint8)


def cv2_write(path: Path, rgb_or_grey: np.ndarray) -> Path:
    """Write with OpenCV, which wants BGR(A) order."""
    a = rgb_or_grey
    if a.ndim == 3:
        a = cv2.cvtColor(a, cv2.COLOR_RGB2BGR if a.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), a)
    return path


def pil_write(path: Path, image: Image.Image, fmt: str, **kwargs: object) -> Path:
    image.save(path, format=fmt, **kwargs)
    return path


def expect_error(path: Path, *fragments: str, **kwargs: object) -> ImageReadError:
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    for fragment in fragments:
        assert fragment in info.value.reason, message
    return info.value


# --- Formats and layouts ----------------------------------------------------------------------
def test_constants() -> None:
    assert {".tif", ".tiff", ".png", ".bmp", ".jpg", ".jpeg"} == IMAGE_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in IMAGE_EXTENSIONS)
    assert DEFAULT_MAX_PIXELS == 100_000_000


def test_png_rgb_8bit(tmp_path: Path) -> None:
    img = read_image(cv2_write(tmp_path / "a.png", RGB))
    assert img.rgb.dtype == np.uint8 and np.array_equal(img.rgb, RGB)  # channel order kept
    assert np.array_equal(img.original, RGB)
    assert img.info == ImageInfo(W, H, 3, "uint8", 1, "png")
    assert not np.may_share_memory(img.rgb, img.original)


def test_png_grey_8bit_is_repeated(tmp_path: Path) -> None:
    img = read_image(cv2_write(tmp_path / "g.png", GREY))
    assert img.original.shape == (H, W) and np.array_equal(img.original, GREY)
    assert img.rgb.shape == (H, W, 3)
    assert all(np.array_equal(img.rgb[..., c], GREY) for c in range(3))


def test_png_grey_16bit_keeps_original(tmp_path: Path) -> None:
    img = read_image(cv2_write(tmp_path / "g16.png", GREY16))
    assert img.original.dtype == np.uint16 and np.array_equal(img.original, GREY16)
    assert img.info.dtype == "uint16" and img.info.channels == 1
    assert img.rgb.dtype == np.uint8 and img.rgb.shape == (H, W, 3)
    # Rescaling is monotonic: the brightest stored pixel is at least as bright as the darkest.
    assert img.rgb[..., 0].flat[GREY16.argmax()] >= img.rgb[..., 0].flat[GREY16.argmin()]


def test_png_rgb_16bit(tmp_path: Path) -> None:
    img = read_image(cv2_write(tmp_path / "c16.png", RGB16))
    assert img.original.dtype == np.uint16 and np.array_equal(img.original, RGB16)
    assert img.info == ImageInfo(W, H, 3, "uint16", 1, "png")


def test_png_rgba_drops_alpha(tmp_path: Path) -> None:
    rgba = np.dstack([RGB, ALPHA])
    img = read_image(cv2_write(tmp_path / "a.png", rgba))
    assert np.array_equal(img.original, rgba) and img.info.channels == 4
    assert np.array_equal(img.rgb, RGB)


def test_png_grey_alpha(tmp_path: Path) -> None:
    la = Image.fromarray(np.dstack([GREY, ALPHA]), mode="LA")
    img = read_image(pil_write(tmp_path / "la.png", la, "PNG"))
    assert img.original.shape == (H, W, 2) and img.info.channels == 2
    assert np.array_equal(img.original[..., 0], GREY) and np.array_equal(
        img.original[..., 1], ALPHA
    )
    assert np.array_equal(img.rgb, np.dstack([GREY] * 3))


def test_png_palette(tmp_path: Path) -> None:
    pal = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    img = read_image(pil_write(tmp_path / "p.png", pal, "PNG"))
    assert np.array_equal(img.rgb, np.asarray(pal.convert("RGB")))


def test_bmp(tmp_path: Path) -> None:
    img = read_image(cv2_write(tmp_path / "a.bmp", RGB))
    assert np.array_equal(img.rgb, RGB) and img.info.format == "bmp"


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpeg(tmp_path: Path, mode: str) -> None:
    smooth = cv2.GaussianBlur(RGB, (9, 9), 3)  # JPEG is lossy; smooth content stays close
    src = Image.fromarray(smooth).convert(mode)
    img = read_image(pil_write(tmp_path / "a.jpg", src, "JPEG", quality=95))
    expected = np.asarray(src.convert("RGB")).astype(int)
    assert img.info.format == "jpeg" and img.info.channels == (3 if mode == "RGB" else 1)
    assert np.abs(img.rgb.astype(int) - expected).mean() < 4


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    """The pixels (and the size a mask must have) are those of the photo as meant to be seen."""
    blocks = np.kron(RNG.integers(0, 256, (3, 4, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8))
    src = Image.fromarray(blocks)
    exif = src.getexif()
    exif[0x0112] = orientation
    path = pil_write(tmp_path / "o.jpg", src, "JPEG", quality=98, exif=exif.tobytes())
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")).astype(int)
    img = read_image(path)
    assert img.info.orientation == orientation
    assert (img.info.height, img.info.width) == shown.shape[:2] == img.rgb.shape[:2]
    assert probe_image(path).width == img.info.width
    assert np.abs(img.rgb.astype(int) - shown).mean() < 1  # same decoder, same turn
    stored = read_image(path, exif_orientation=False)  # images catalogued before the fix
    assert stored.rgb.shape == blocks.shape and stored.info.orientation == 1


def test_cmyk_tiff_is_converted_to_rgb(tmp_path: Path) -> None:
    cmyk = np.zeros((2, 3, 4), np.uint8)
    cmyk[0] = [(0, 255, 255, 0), (255, 0, 255, 0), (255, 255, 0, 0)]  # red, green, blue
    cmyk[1] = [(0, 0, 0, 0), (0, 0, 0, 255), (0, 0, 0, 128)]  # white, black, mid grey
    tifffile.imwrite(tmp_path / "c.tif", cmyk, photometric="separated")
    img = read_image(tmp_path / "c.tif")
    expected = [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255] * 3, [0] * 3, [127] * 3]]
    assert img.rgb.tolist() == expected and img.info.channels == 3
    assert probe_image(tmp_path / "c.tif").channels == 3
    deep = cmyk.astype(np.uint16) * 257
    tifffile.imwrite(tmp_path / "c16.tif", deep, photometric="separated")
    img16 = read_image(tmp_path / "c16.tif")
    assert img16.original.dtype == np.uint16 and img16.original[0, 0].tolist() == [65535, 0, 0]


def test_cmyk_jpeg_colours(tmp_path: Path) -> None:
    smooth = cv2.GaussianBlur(RGB, (9, 9), 3)
    path = pil_write(
        tmp_path / "c.jpg", Image.fromarray(smooth).convert("CMYK"), "JPEG", quality=95
    )
    assert np.abs(read_image(path).rgb.astype(int) - smooth.astype(int)).mean() < 4


def test_other_inks_are_refused(tmp_path: Path) -> None:
    tifffile.imwrite(
        tmp_path / "i.tif",
        np.zeros((4, 4, 4), np.uint8),
        photometric="separated",
        extratags=[(332, "H", 1, 2, True)],
    )
    expect_error(tmp_path / "i.tif", "inks other than CMYK")


def test_extension_that_lies_is_ignored(tmp_path: Path) -> None:
    png_as_jpg = cv2_write(tmp_path / "a.png", RGB).rename(tmp_path / "a.jpg")
    assert np.array_equal(read_image(tmp_path / "a.jpg").rgb, RGB)
    assert probe_image(png_as_jpg).format == "png"
    tifffile.imwrite(tmp_path / "t.png", RGB, photometric="rgb")
    assert np.array_equal(read_image(tmp_path / "t.png").rgb, RGB)


def test_str_path_is_accepted(tmp_path: Path) -> None:
    assert read_image(str(cv2_write(tmp_path / "a.png", RGB))).info.width == W


def test_tiff_rgb(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", RGB, photometric="rgb")
    img = read_image(tmp_path / "a.tif")
    assert np.array_equal(img.rgb, RGB) and np.array_equal(img.original, RGB)
    assert img.info == ImageInfo(W, H, 3, "uint8", 1, "tiff")


def test_tiff_grey_16bit(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "g.tif", GREY16)
    img = read_image(tmp_path / "g.tif")
    assert np.array_equal(img.original, GREY16) and img.info.dtype == "uint16"
    assert img.rgb.shape == (H, W, 3)


def test_tiff_float32_with_nan_and_inf(tmp_path: Path) -> None:
    data = np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)
    data[0, 0], data[0, 1], data[0, 2] = np.nan, np.inf, -np.inf
    tifffile.imwrite(tmp_path / "f.tif", data)
    img = read_image(tmp_path / "f.tif")
    assert img.original.dtype == np.float32 and np.isnan(img.original[0, 0])
    assert (img.rgb[0, :3] == 0).all()  # non-finite values show as the low limit
    assert img.rgb[-1, -1, 0] == 255


@pytest.mark.parametrize("dtype", ["int16", "uint32", "int32", "float16", "float64", "int8"])
def test_tiff_other_pixel_types(tmp_path: Path, dtype: str) -> None:
    data = (np.arange(H * W).reshape(H, W) - 100).astype(dtype)
    tifffile.imwrite(tmp_path / "x.tif", data)
    img = read_image(tmp_path / "x.tif")
    assert img.original.dtype == np.dtype(dtype) and img.info.dtype == dtype
    assert img.rgb.dtype == np.uint8 and img.rgb.min() == 0 and img.rgb.max() == 255


def test_tiff_multipage_uses_first_plane(tmp_path: Path) -> None:
    stack = RNG.integers(0, 256, (5, H, W), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "z.tif", stack)
    img = read_image(tmp_path / "z.tif")
    assert np.array_equal(img.original, stack[0]) and img.info.n_pages == 5
    assert img.info.channels == 1


def test_ome_tiff_channels_first(tmp_path: Path) -> None:
    cyx = RNG.integers(0, 4096, (3, H, W), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "c.ome.tif", cyx, metadata={"axes": "CYX"})
    img = read_image(tmp_path / "c.ome.tif")
    assert np.array_equal(img.original, np.moveaxis(cyx, 0, -1))
    assert img.info == ImageInfo(W, H, 3, "uint16", 1, "tiff")


def test_ome_tiff_tczyx_takes_index_zero(tmp_path: Path) -> None:
    data = RNG.integers(0, 4096, (2, 3, 4, H, W), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "t.ome.tif", data, metadata={"axes": "TCZYX"})
    img = read_image(tmp_path / "t.ome.tif")
    assert np.array_equal(img.original, np.moveaxis(data[0, :, 0], 0, -1))
    assert img.info.n_pages == 2 * 4 and img.info.channels == 3


def test_tiff_planar_rgb(tmp_path: Path) -> None:
    planar = np.moveaxis(RGB, -1, 0).copy()
    tifffile.imwrite(tmp_path / "p.tif", planar, photometric="rgb", planarconfig="separate")
    assert np.array_equal(read_image(tmp_path / "p.tif").rgb, RGB)


def test_tiff_pyramid_reads_level_zero(tmp_path: Path) -> None:
    big = RNG.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "pyr.ome.tif") as tw:
        tw.write(big, subifds=1, photometric="rgb", metadata={"axes": "YXS"})
        tw.write(big[::2, ::2], subfiletype=1, photometric="rgb")
    img = read_image(tmp_path / "pyr.ome.tif")
    assert img.original.shape == (64, 96, 3) and np.array_equal(img.rgb, big)


def test_tiff_grey_alpha(tmp_path: Path) -> None:
    ga = np.dstack([GREY, ALPHA])
    tifffile.imwrite(tmp_path / "ga.tif", ga, photometric="minisblack", extrasamples=["unassalpha"])
    img = read_image(tmp_path / "ga.tif")
    assert img.info.channels == 2 and np.array_equal(img.rgb, np.dstack([GREY] * 3))


def test_tiff_palette_shows_colours(tmp_path: Path) -> None:
    pal = Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    img = read_image(pil_write(tmp_path / "p.tif", pal, "TIFF"))
    assert np.array_equal(img.rgb, np.asarray(pal.convert("RGB")))


def test_tiff_lzw(tmp_path: Path) -> None:
    # Read by tifffile if imagecodecs is installed, else by the Pillow fallback.
    img = read_image(
        pil_write(tmp_path / "l.tif", Image.fromarray(RGB), "TIFF", compression="tiff_lzw")
    )
    assert np.array_equal(img.rgb, RGB)


# --- Probe ------------------------------------------------------------------------------------
def _writers(tmp: Path) -> list[Path]:
    tifffile.imwrite(tmp / "rgb.tif", RGB, photometric="rgb")
    tifffile.imwrite(
        tmp / "z.tif", RNG.integers(0, 9, (4, H, W), dtype=np.uint16), photometric="minisblack"
    )
    tifffile.imwrite(tmp / "c.ome.tif", RGB16.transpose(2, 0, 1).copy(), metadata={"axes": "CYX"})
    tifffile.imwrite(tmp / "f.tif", GREY.astype(np.float32))
    pil_write(tmp / "la.png", Image.fromarray(np.dstack([GREY, ALPHA]), mode="LA"), "PNG")
    pil_write(tmp / "p.png", Image.fromarray(RGB).convert("P"), "PNG")
    pil_write(tmp / "pt.png", Image.fromarray(RGB).convert("P"), "PNG", transparency=0)
    pil_write(tmp / "j.jpg", Image.fromarray(RGB), "JPEG")
    pil_write(tmp / "grey.bmp", Image.fromarray(GREY), "BMP")
    pil_write(tmp / "p.bmp", Image.fromarray(RGB).convert("P"), "BMP")
    pil_write(tmp / "pal.tif", Image.fromarray(RGB).convert("P"), "TIFF")
    return [
        cv2_write(tmp / "g16.png", GREY16),
        cv2_write(tmp / "c16.png", RGB16),
        cv2_write(tmp / "a.png", np.dstack([RGB, ALPHA])),
        cv2_write(tmp / "a.bmp", RGB),
        *sorted(p for p in tmp.iterdir() if p.suffix in {".tif", ".png", ".jpg", ".bmp"}),
    ]


def test_probe_agrees_with_read(tmp_path: Path) -> None:
    paths = _writers(tmp_path)
    assert len(set(paths)) >= 14
    for path in paths:
        assert probe_image(path) == read_image(path).info, path.name


def test_probe_reads_header_only(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", RGB, photometric="rgb")
    data = (tmp_path / "a.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])  # pixels cut, header intact
    assert probe_image(tmp_path / "cut.tif").width == W
    expect_error(tmp_path / "cut.tif", "truncated or corrupt TIFF")


# --- Display conversion -----------------------------------------------------------------------
def test_rescale_16bit_ramp(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 256 * 64).astype(np.uint16).reshape(64, 256)
    cv2_write(tmp_path / "r.png", ramp)
    img = read_image(tmp_path / "r.png")
    assert np.array_equal(img.original, ramp)
    flat = img.rgb[..., 0].ravel()
    assert np.all(np.diff(flat.astype(int)) >= 0)  # monotonic
    assert flat[0] == 0 and flat[-1] == 255 and len(np.unique(flat)) > 200


def test_rescale_is_robust_to_outliers() -> None:
    data = np.tile(np.arange(1000, dtype=np.uint16), (10, 1))
    data[0, 0] = 65535  # one hot pixel must not squash everything else to black
    out = to_display_rgb(data)
    assert out[5, 999, 0] >= 250 and out[5, 500, 0] > 100


def test_rescale_keeps_colour_balance() -> None:
    green = np.tile(np.linspace(0, 1000, 101), (10, 1))
    out = to_display_rgb(np.dstack([green / 2, green, np.zeros_like(green)]).astype(np.float32))
    r, g = out[..., 0].astype(float), out[..., 1].astype(float)
    # One shared range: red stays half of green instead of both filling 0..255.
    assert np.allclose(r[:, 10:90], g[:, 10:90] / 2, atol=2) and out[..., 2].max() == 0
    assert g[0, 90] > 200 and r[0, 90] < 130


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.int32])
def test_constant_image_becomes_black(dtype: type) -> None:
    out = to_display_rgb(np.full((5, 6), 700, dtype=dtype))
    assert out.shape == (5, 6, 3) and out.dtype == np.uint8 and not out.any()


def test_all_nan_image_becomes_black() -> None:
    assert not to_display_rgb(np.full((4, 4, 3), np.nan, np.float32)).any()


def test_uint8_passes_unchanged_as_a_copy() -> None:
    out = to_display_rgb(RGB)
    assert np.array_equal(out, RGB) and not np.may_share_memory(out, RGB)
    grey = to_display_rgb(GREY[..., None])
    assert grey.shape == (H, W, 3) and np.array_equal(grey[..., 2], GREY)


@pytest.mark.parametrize(
    ("array", "fragment"),
    [
        (np.zeros((4, 4), np.complex64), "unsupported pixel type complex64"),
        (np.zeros((4, 4), bool), "unsupported pixel type bool"),
        (np.zeros((4, 4), object), "unsupported pixel type object"),
        (np.zeros((4, 4, 5), np.uint8), "5 channels; only grey, RGB or RGBA"),
        (np.zeros((2, 4, 4, 3), np.uint8), "not an image"),
        (np.zeros((0, 4), np.uint8), "no pixels"),
    ],
)
def test_to_display_rgb_refuses(array: np.ndarray, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        to_display_rgb(array)


# --- Errors -----------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.png", "file not found")
    with pytest.raises(ImageReadError, match="file not found"):
        probe_image(tmp_path / "nope.png")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "d.png").mkdir()
    expect_error(tmp_path / "d.png", "folder")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_named_pipe_is_refused_without_waiting(tmp_path: Path) -> None:
    """Opening a FIFO for reading waits for a writer forever: it must not be opened at all."""
    os.mkfifo(tmp_path / "pipe.png")
    expect_error(tmp_path / "pipe.png", "named pipe (FIFO)", "not opened")
    with pytest.raises(ImageReadError, match="named pipe"):
        probe_image(tmp_path / "pipe.png")


def test_broken_link_is_named(tmp_path: Path) -> None:
    (tmp_path / "link.png").symlink_to(tmp_path / "gone.png")
    expect_error(tmp_path / "link.png", "broken symbolic link")


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.tif").write_bytes(b"")
    assert expect_error(tmp_path / "e.tif").reason == "file is empty (0 bytes)"


@pytest.mark.parametrize("name", ["notes.png", "table.tif", "x.jpg"])
def test_text_file_is_not_an_image(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_text("id,class\nh1,NILM\n")
    assert expect_error(tmp_path / name).reason == "not an image file"


def test_gif_is_named(tmp_path: Path) -> None:
    pil_write(tmp_path / "a.png", Image.fromarray(RGB), "GIF")
    expect_error(tmp_path / "a.png", "GIF images are not supported")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP"])
@pytest.mark.parametrize("keep", [0.5, 0.98])
def test_truncated_files(tmp_path: Path, fmt: str, keep: float) -> None:
    path = pil_write(tmp_path / f"a.{fmt.lower()}", Image.fromarray(RGB), fmt)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    expect_error(path, f"truncated or corrupt {fmt}")


def test_truncated_jpeg_is_caught_before_opencv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = pil_write(tmp_path / "a.jpg", Image.fromarray(RGB), "JPEG")
    path.write_bytes(path.read_bytes()[:-2])  # only the end-of-image marker is missing
    # OpenCV 4 returns such a file filled with grey (OpenCV 5 returns None): mimic the former.
    monkeypatch.setattr(cv2, "imdecode", lambda *_: np.full((H, W, 3), 128, np.uint8))
    assert expect_error(path).reason == "truncated or corrupt JPEG"


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_truncated_tiff(tmp_path: Path, keep: float) -> None:
    tifffile.imwrite(tmp_path / "a.tif", RGB16, photometric="rgb", compression="zlib")
    data = (tmp_path / "a.tif").read_bytes()
    (tmp_path / "a.tif").write_bytes(data[: int(len(data) * keep)])
    expect_error(tmp_path / "a.tif", "truncated or corrupt TIFF")


def test_tiff_header_only(tmp_path: Path) -> None:
    (tmp_path / "h.tif").write_bytes(b"II*\x00\xff\xff\x00\x00")
    expect_error(tmp_path / "h.tif", "truncated or corrupt TIFF")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (np.zeros((H, W), np.complex64), "unsupported pixel type complex64"),
        (np.zeros((H, W), bool), "unsupported pixel type bool"),
    ],
)
def test_unsupported_pixel_type(tmp_path: Path, data: np.ndarray, reason: str) -> None:
    tifffile.imwrite(tmp_path / "x.tif", data)
    assert expect_error(tmp_path / "x.tif").reason == reason
    with pytest.raises(ImageReadError, match=reason):
        probe_image(tmp_path / "x.tif")


def test_too_many_channels_contiguous(tmp_path: Path) -> None:
    data = RNG.integers(0, 256, (H, W, 5), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "s.tif", data, photometric="minisblack", planarconfig="contig")
    reason = "5 channels; only grey, RGB or RGBA images are supported"
    assert expect_error(tmp_path / "s.tif").reason == reason


def test_too_many_channels_ome(tmp_path: Path) -> None:
    cyx = RNG.integers(0, 256, (6, H, W), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "c.ome.tif", cyx, metadata={"axes": "CYX"})
    expect_error(tmp_path / "c.ome.tif", "6 channels")


def test_max_pixels_on_small_image(tmp_path: Path) -> None:
    path = cv2_write(tmp_path / "a.png", RGB)
    err = expect_error(path, max_pixels=100)
    assert err.reason == (
        f"image is {W} x {H} = {W * H} pixels, above the limit of 100 pixels "
        "(raise it with --max-pixels)"
    )
    assert read_image(path, max_pixels=W * H).info.width == W  # the limit is inclusive


def test_huge_tiff_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, np.zeros((2, 2), np.uint8))
    with tifffile.TiffFile(path, mode="r+b") as tif:  # declare 30000 x 30000, keep 4 bytes
        tif.pages[0].tags["ImageWidth"].overwrite(30000)
        tif.pages[0].tags["ImageLength"].overwrite(30000)
    reason = (
        "image is 30000 x 30000 = 900.0 megapixels, above the limit of 100 megapixels "
        "(raise it with --max-pixels)"
    )
    assert expect_error(path).reason == reason  # decoding would say "truncated or corrupt"
    with pytest.raises(ImageReadError, match=r"900\.0 megapixels"):
        probe_image(path)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_huge_png_is_refused_before_pillow_or_opencv(tmp_path: Path) -> None:
    # 30000 x 30000 is also over Pillow's own bomb limit; our message must win.
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0"))
    )
    (tmp_path / "huge.png").write_bytes(data + _png_chunk(b"IEND", b""))
    expect_error(tmp_path / "huge.png", "900.0 megapixels", "--max-pixels")


def test_zero_size_tiff(tmp_path: Path) -> None:
    with warnings.catch_warnings():  # tifffile warns that such a file is nonconformant
        warnings.simplefilter("ignore")
        tifffile.imwrite(tmp_path / "z.tif", np.zeros((0, 10), np.uint8))
    expect_error(tmp_path / "z.tif", "no pixels")


# --- Label masks ------------------------------------------------------------------------------
def test_mask_png(tmp_path: Path) -> None:
    mask = read_label_mask(cv2_write(tmp_path / "m.png", LABELS), expected_shape=(H, W))
    assert mask.dtype == np.uint8 and np.array_equal(mask, LABELS)


def test_mask_tiff_uint16(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "m.tif", LABELS.astype(np.uint16))
    mask = read_label_mask(tmp_path / "m.tif")
    assert mask.dtype == np.uint8 and np.array_equal(mask, LABELS)


def test_mask_grey_as_rgb(tmp_path: Path) -> None:
    mask = read_label_mask(cv2_write(tmp_path / "m.png", np.dstack([LABELS] * 3)))
    assert mask.shape == (H, W) and np.array_equal(mask, LABELS)


def test_mask_colour_is_refused(tmp_path: Path) -> None:
    colour = np.dstack([LABELS, LABELS, np.roll(LABELS, 1)])
    with pytest.raises(MaskFileError, match="colour mask; expected a label image"):
        read_label_mask(cv2_write(tmp_path / "m.png", colour))


def test_mask_bad_values_are_named(tmp_path: Path) -> None:
    bad = LABELS.copy()
    bad[LABELS == 2] = 255
    with pytest.raises(MaskFileError) as info:
        read_label_mask(cv2_write(tmp_path / "m.png", bad))
    assert info.value.reason == "mask values must be 0, 1 or 2 (found 0, 1, 255)"


def test_mask_float_values(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "ok.tif", LABELS.astype(np.float32))
    assert np.array_equal(read_label_mask(tmp_path / "ok.tif"), LABELS)
    tifffile.imwrite(tmp_path / "bad.tif", LABELS.astype(np.float32) / 2)
    with pytest.raises(MaskFileError, match=r"found 0, 0\.5, 1\)"):
        read_label_mask(tmp_path / "bad.tif")


def test_mask_wrong_shape(tmp_path: Path) -> None:
    path = cv2_write(tmp_path / "m.png", LABELS)
    with pytest.raises(MaskFileError) as info:
        read_label_mask(path, expected_shape=(H, H))
    assert info.value.reason == f"mask is {W} x {H} (width x height) but its image is {H} x {H}"


def test_mask_jpeg_is_refused(tmp_path: Path) -> None:
    path = pil_write(tmp_path / "m.jpg", Image.fromarray(LABELS), "JPEG")
    with pytest.raises(MaskFileError, match="PNG or TIFF"):
        read_label_mask(path)


def test_mask_with_many_channels(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "m.tif", np.zeros((H, W, 4), np.uint8), photometric="rgb")
    with pytest.raises(MaskFileError, match="4 channels"):
        read_label_mask(tmp_path / "m.tif")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "file is empty (0 bytes)"),
        (b"not,an,image\n", "not an image file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated or corrupt PNG"),
    ],
)
def test_mask_unreadable(tmp_path: Path, content: bytes, reason: str) -> None:
    (tmp_path / "m.png").write_bytes(content)
    with pytest.raises(MaskFileError) as info:
        read_label_mask(tmp_path / "m.png")
    assert info.value.reason.startswith(reason) and str(info.value).startswith(str(tmp_path))
    with pytest.raises(MaskFileError, match="file not found"):
        read_label_mask(tmp_path / "missing.png")


def test_read_ignore_mask(tmp_path: Path) -> None:
    from cytoreview.storage.images import read_ignore_mask

    raw = np.zeros((6, 5), np.uint8)
    raw[1, 2] = 255
    path = tmp_path / "ignore.png"
    cv2.imwrite(str(path), raw)
    mask = read_ignore_mask(path, (6, 5))
    assert mask.dtype == bool and mask.sum() == 1 and mask[1, 2]
    with pytest.raises(MaskFileError, match="ignore mask is 5 x 6"):
        read_ignore_mask(path, (5, 5))
