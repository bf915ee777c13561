"""Whole-slide images opened lazily: levels, regions, pixel size, both readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoreview.data.synthetic import synth_field
from cytoreview.errors import InputFileError
from cytoreview.storage.slides import open_slide, write_pyramid_tiff


@pytest.fixture(scope="module")
def slide_pixels() -> np.ndarray:
    """A 1536 x 2048 mosaic of synthetic Pap fields (a small slide)."""
    rows = [
        np.concatenate(
            [synth_field(["NILM", "HSIL"], r * 4 + c, (512, 512)).image for c in range(4)], axis=1
        )
        for r in range(3)
    ]
    return np.concatenate(rows, axis=0)


@pytest.mark.parametrize("flavour", ["ome", "aperio"])
def test_a_pyramid_opens_lazily_with_its_levels_and_pixel_size(
    tmp_path: Path, slide_pixels: np.ndarray, flavour: str
) -> None:
    suffix = ".ome.tif" if flavour == "ome" else ".svs"
    path = write_pyramid_tiff(
        tmp_path / f"slide{suffix}", slide_pixels, levels=3, pixel_size_um=0.25,
        flavour=flavour, objective_power=40,
    )  # fmt: skip
    assert not list(tmp_path.glob("*.part"))
    with open_slide(path) as slide:
        assert [(lv.height, lv.width) for lv in slide.levels] == [
            (1536, 2048),
            (768, 1024),
            (384, 512),
        ]
        assert [lv.downsample for lv in slide.levels] == [1.0, 2.0, 4.0]
        assert slide.pixel_size_um == pytest.approx(0.25)
        if flavour == "aperio":
            assert slide.objective_power == 40
        # Lazy: a dask array, chunked like the file's tiles, nothing read yet.
        level0 = slide.level_array(0)
        assert level0.shape == (1536, 2048, 3) and level0.numblocks[0] > 1
        region = slide.read_region(0, 700, 900, 300, 400)
        assert np.array_equal(region, slide_pixels[700:1000, 900:1300])  # lossless zlib
        edge = slide.read_region(2, 300, 400, 200, 200)  # clipped at the level's edge
        assert edge.shape == (84, 112, 3)


def test_openslide_reads_the_aperio_flavour(tmp_path: Path, slide_pixels: np.ndarray) -> None:
    from cytoreview.storage.slides import _open_openslide

    path = write_pyramid_tiff(tmp_path / "s.svs", slide_pixels, levels=2, pixel_size_um=0.5,
                              flavour="aperio")  # fmt: skip
    slide = _open_openslide(path)
    try:
        assert slide.reader == "openslide" and slide.pixel_size_um == pytest.approx(0.5)
        assert slide.levels[0].width == 2048
        region = slide.read_region(0, 100, 1000, 64, 80)
        assert np.array_equal(region, slide_pixels[100:164, 1000:1080])
    finally:
        slide.close()


def test_a_file_no_reader_opens_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"not a slide at all")
    with pytest.raises(InputFileError, match=r"broken\.svs.*not a slide"):
        open_slide(bad)
    with pytest.raises(InputFileError, match="no such file"):
        open_slide(tmp_path / "missing.ndpi")


def test_a_synthetic_slide_written_tile_by_tile_reads_back(tmp_path: Path) -> None:
    from cytoreview.data.synthetic_slide import SyntheticSlide
    from cytoreview.storage.slides import write_tiled_pyramid

    source = SyntheticSlide(1300, 1700, seed=3, field=256, empty_fraction=0.25)
    path = write_tiled_pyramid(tmp_path / "synth.ome.tif", source, levels=3, tile=256,
                               pixel_size_um=0.5)  # fmt: skip
    rgb, mask = source.region(0, 0, 1300, 1700)
    assert rgb.shape == (1300, 1700, 3) and set(np.unique(mask)) == {0, 1, 2}
    with open_slide(path) as slide:
        assert [(lv.height, lv.width) for lv in slide.levels] == [
            (1300, 1700), (650, 850), (325, 425)
        ]  # fmt: skip
        assert np.array_equal(slide.read_region(0, 0, 0, 1300, 1700), rgb)
        level1 = np.asarray(slide.level_array(1))
    # Level 1 is level 0 averaged 2 x 2, tile by tile, as the source made it.
    tiles = list(source.tiles(1, 256))
    assert np.array_equal(level1[:256, :256], tiles[0])
    # The same position gives the same pixels, whichever tile or region asked for it.
    again, again_mask = source.region(400, 500, 300, 300)
    assert np.array_equal(again, rgb[400:700, 500:800])
    assert np.array_equal(again_mask, mask[400:700, 500:800])
    masks = list(source.mask_tiles(0, 256))
    assert np.array_equal(masks[0], mask[:256, :256])


def test_a_synthetic_slide_has_bare_glass() -> None:
    from cytoreview.data.synthetic_slide import SyntheticSlide

    source = SyntheticSlide(2048, 2048, seed=0, field=256, empty_fraction=0.5)
    _, mask = source.region(0, 0, 2048, 2048)
    cells = [(mask[r : r + 256, c : c + 256] > 0).any()
             for r in range(0, 2048, 256) for c in range(0, 2048, 256)]  # fmt: skip
    assert 0.25 < 1 - np.mean(cells) < 0.75  # about half the fields are empty glass


def test_an_ome_zarr_image_opens_as_a_slide(tmp_path: Path, slide_pixels: np.ndarray) -> None:
    import zarr

    from cytoreview.storage.slides import is_slide_file

    path = tmp_path / "scan.ome.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    cyx = np.moveaxis(slide_pixels, -1, 0)  # NGFF images are channel-first
    datasets = []
    for k in range(2):
        level = cyx[:, :: 2**k, :: 2**k]
        group.create_array(str(k), shape=level.shape, chunks=(3, 256, 256), dtype="uint8")[:] = (
            level
        )
        datasets.append({"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 0.25 * 2**k, 0.25 * 2**k]}]})  # fmt: skip
    axes = [{"name": "c", "type": "channel"}] + [
        {"name": a, "type": "space", "unit": "micrometer"} for a in "yx"
    ]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    assert is_slide_file(path) and not is_slide_file(tmp_path)
    with open_slide(path) as slide:
        assert slide.reader == "zarr" and slide.pixel_size_um == pytest.approx(0.25)
        assert [(lv.height, lv.width, lv.downsample) for lv in slide.levels] == [
            (1536, 2048, 1.0), (768, 1024, 2.0),
        ]  # fmt: skip
        assert np.array_equal(slide.read_region(0, 10, 20, 30, 40), slide_pixels[10:40, 20:60])
    (path / ".zattrs").write_text("{broken")
    assert not is_slide_file(path)
