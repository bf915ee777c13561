"""PNG files are checked before libpng decodes them: a damaged one is named in one clear line,
and nothing (not even a harmless odd colour profile) makes libpng print to stderr."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cytoreview.errors import ImageReadError
from cytoreview.storage.images import read_image
from cytoreview.storage.png_chunks import pixel_chunks_only
from tests.conftest import cell_image, write_rgb_png


def _png(rgb: np.ndarray, **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", **save)
    return buffer.getvalue()


def test_damage_is_found_and_named(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    rgb, _ = cell_image(60, 80)
    good = write_rgb_png(tmp_path / "good.png", rgb).read_bytes()
    idat = good.index(b"IDAT")
    cases = {
        "cut.png": (good[: len(good) // 2], "the file ends in the middle of chunk IDAT"),
        "no-end.png": (good[: good.index(b"IEND") - 4], "the file ends before its end chunk"),
        "flipped.png": (good[: idat + 20] + bytes([good[idat + 20] ^ 0xFF]) + good[idat + 21 :],
                        "chunk IDAT fails its checksum"),
    }  # fmt: skip
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        assert str(info.value) == f"{path}: truncated or corrupt PNG ({reason})"
    assert capfd.readouterr().err == ""  # libpng said nothing by itself


def test_odd_colour_profile_decodes_silently(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    rgb, _ = cell_image(30, 40)
    path = tmp_path / "icc.png"
    path.write_bytes(_png(rgb, icc_profile=b"x" * 200))  # libpng: "iCCP: too short"
    assert np.array_equal(read_image(path).rgb, rgb)
    assert capfd.readouterr().err == ""


def test_kept_chunks_give_the_same_pixels() -> None:
    rgb, _ = cell_image(20, 24)
    rgba = np.dstack([rgb, np.arange(20 * 24, dtype=np.uint8).reshape(20, 24)])
    data = _png(rgba, icc_profile=b"y" * 300)
    kept, reason = pixel_chunks_only(data)
    assert reason is None and kept is not None and len(kept) < len(data)
    assert b"iCCP" in data and b"iCCP" not in kept
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(kept))), rgba)
    # A file whose every chunk checks but has no pixels is refused too.
    ihdr_end = 8 + 12 + 13
    iend = b"\x00\x00\x00\x00IEND" + zlib.crc32(b"IEND").to_bytes(4, "big")
    assert pixel_chunks_only(data[:ihdr_end] + iend) == (
        None,
        "truncated or corrupt PNG (no image data)",
    )
