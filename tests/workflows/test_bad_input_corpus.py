"""A corpus of bad and unusual input, every file built here: each gets one clear line.

For every case the import runs to its end and this holds:

- the offending file (or manifest line) is named in exactly one warning, on one line, with the
  reason, and no traceback reaches the user;
- the good file beside it is imported;
- the project is otherwise unchanged: what was there before (image rows, their files, mask
  versions) is untouched, and nothing but the good files (and accepted unusual ones) is added.

Unusual but valid input (1x1, 16-bit, float, CMYK, multi-page, BigTIFF, odd names, links...)
has a defined behaviour, checked case by case. A manifest that cannot be read at all is refused
as a whole with one line naming it, and the project stays as it was.
"""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from cytoreview.cli.main import main
from cytoreview.errors import CytoReviewError
from cytoreview.storage.hashing import file_sha256
from cytoreview.storage.project import Project
from cytoreview.storage.records import ImageRecord
from cytoreview.workflows.importing import import_images
from tests.conftest import cell_image, run_job, write_label_png, write_rgb_png

H, W = 40, 48
_, MASK = cell_image(H, W)


@dataclass
class Setup:
    """What a case wrote and what the import must do with it."""

    source: Path
    masks: Path | None = None
    #: Text (a path, or "<csv>: line N") that exactly one warning must contain; None: accepted.
    bad: str | None = None
    #: Words of the reason, in that warning (or in the refusal of a whole manifest).
    words: str = ""
    #: How many images the import adds (the good file, plus accepted unusual ones).
    added: int = 1
    #: The whole manifest is refused with one error line; nothing is imported.
    refused: bool = False
    #: Extra checks on the imported images, by name.
    check: Callable[[Project, dict[str, ImageRecord]], None] | None = None
    #: Names the project must show for the case's own (accepted) file.
    names: list[str] = field(default_factory=list)


def _good(folder: Path, name: str = "good", seed: int = 5) -> Path:
    rgb, _ = cell_image(H, W, seed=seed)
    return write_rgb_png(folder / f"{name}.png", rgb)


def _png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose header claims another size (a decompression bomb by header)."""
    _ok, png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    data = bytearray(png.tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _jpeg_declaring(width: int, height: int) -> bytes:
    _ok, jpg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(jpg.tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _tiff_declaring(width: int, height: int) -> bytes:
    """A grey 8-bit TIFF header for ``width`` x ``height`` with 16 bytes of pixels."""

    def entry(tag: int, kind: int, value: int) -> bytes:
        if kind == 3:  # SHORT, left-justified in the 4-byte value field
            return struct.pack("<HHIHH", tag, kind, 1, value, 0)
        return struct.pack("<HHII", tag, kind, 1, value)

    tags = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8 + 2 + 12 * 9 + 4),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, 16),
    ]
    ifd = struct.pack("<H", len(tags)) + b"".join(entry(*t) for t in tags) + b"\0\0\0\0"
    return b"II*\x00" + struct.pack("<I", 8) + ifd + bytes(16)


# --- Cases: one image folder with a good file and one bad or unusual file ---------------------
def _refused(name: str, write: Callable[[Path], object], words: str) -> Callable[[Path], Setup]:
    def build(root: Path) -> Setup:
        src = root / "src"
        _good(src)
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        return Setup(src, bad=str(path), words=words)

    return build


def _accepted(
    name: str,
    write: Callable[[Path], object],
    check: Callable[[Project, ImageRecord], None],
    expect_name: str | None = None,
) -> Callable[[Path], Setup]:
    def build(root: Path) -> Setup:
        src = root / "src"
        _good(src)
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        stem = expect_name if expect_name is not None else Path(name).stem

        def verify(project: Project, records: dict[str, ImageRecord]) -> None:
            check(project, records[stem])
            assert project.load_image(records[stem]).rgb.dtype == np.uint8

        return Setup(src, added=2, check=verify, names=[stem])

    return build


def _write_bytes(data: bytes) -> Callable[[Path], object]:
    return lambda path: path.write_bytes(data)


def _truncated(fmt: str) -> Callable[[Path], object]:
    def write(path: Path) -> None:
        rgb, _ = cell_image(H, W, seed=9)
        if fmt == "tif":
            tifffile.imwrite(path, rgb, photometric="rgb")
        else:
            _ok, data = cv2.imencode(f".{fmt}", rgb)
            path.write_bytes(data.tobytes())
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return write


def _tif(array: np.ndarray, **kwargs: object) -> Callable[[Path], object]:
    return lambda path: tifffile.imwrite(path, array, **kwargs)


def _cv2(array: np.ndarray) -> Callable[[Path], object]:
    return lambda path: cv2.imwrite(str(path), array)


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "gone.png")


def _link_to_good(path: Path) -> None:
    rgb, _ = cell_image(H, W, seed=11)
    target = write_rgb_png(path.parent.parent / "elsewhere" / "target.png", rgb)
    path.symlink_to(target)


def _rotated_jpeg(path: Path) -> None:
    rgb, _ = cell_image(H, W, seed=12)
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 8
    image.save(path, quality=95, exif=exif.tobytes())


def _cmyk(path: Path) -> None:
    cmyk = np.zeros((H, W, 4), np.uint8)
    cmyk[..., 1:3] = 255  # magenta + yellow = red
    tifffile.imwrite(path, cmyk, photometric="separated")


def _shape(h: int, w: int, channels: int | None = None) -> Callable[[Project, ImageRecord], None]:
    def check(project: Project, record: ImageRecord) -> None:
        assert (record.height, record.width) == (h, w)
        if channels is not None:
            assert record.channels == channels

    return check


def _dtype(dtype: str) -> Callable[[Project, ImageRecord], None]:
    def check(project: Project, record: ImageRecord) -> None:
        assert record.dtype == dtype and project.load_image(record).original.dtype == dtype

    return check


def _red(project: Project, record: ImageRecord) -> None:
    assert project.load_image(record).rgb[0, 0].tolist() == [255, 0, 0]


def _pages(n: int) -> Callable[[Project, ImageRecord], None]:
    return lambda project, record: _assert(record.n_pages == n)


def _assert(condition: bool) -> None:
    assert condition


def _unknown_class(root: Path) -> Setup:
    src = root / "src"
    _good(src / "NILM")
    path = _good(src / "Carcinoma", "cell", seed=6)
    return Setup(src, bad=str(path), words="unknown class 'Carcinoma'")


def _not_an_image_type(root: Path) -> Setup:
    src = root / "src"
    _good(src)
    (src / "notes.txt").write_text("a note\n")
    return Setup(src, bad=str(src / "notes.txt"), words="not an image type (.txt)")


def _folder_named_like_image(root: Path) -> Setup:
    src = root / "src"
    _good(src)
    (src / "NILM" / "scan.tif").mkdir(parents=True)
    return Setup(src, bad=str(src / "NILM" / "scan.tif"), words="folder named like an image")


_RGB9, _ = cell_image(H, W, seed=9)
FOLDER_CASES: dict[str, Callable[[Path], Setup]] = {
    "empty": _refused("empty.png", _write_bytes(b""), "file is empty"),
    "truncated png": _refused("cut.png", _truncated("png"), "truncated or corrupt PNG"),
    "truncated jpeg": _refused("cut.jpg", _truncated("jpg"), "truncated or corrupt JPEG"),
    "truncated tiff": _refused("cut.tif", _truncated("tif"), "truncated or corrupt TIFF"),
    "random bytes": _refused(
        "noise.png", _write_bytes(np.random.default_rng(1).bytes(512)), "not an image file"
    ),
    "random after tiff magic": _refused(
        "noise.tif", _write_bytes(b"II*\x00" + np.random.default_rng(2).bytes(512)), "TIFF"
    ),
    "bomb png": _refused(
        "bomb.png", _write_bytes(_png_declaring(100_000, 100_000)), "above the limit"
    ),
    "bomb jpeg": _refused(
        "bomb.jpg", _write_bytes(_jpeg_declaring(65_000, 65_000)), "above the limit"
    ),
    "bomb tiff": _refused(
        "bomb.tif", _write_bytes(_tiff_declaring(100_000, 100_000)), "above the limit"
    ),
    "gif": _refused(
        "anim.png",
        lambda p: Image.fromarray(_RGB9).save(p, format="GIF"),
        "GIF images are not supported",
    ),
    "complex pixels": _refused(
        "complex.tif", _tif(np.zeros((8, 8), np.complex64)), "unsupported pixel type"
    ),
    "five channels": _refused(
        "five.tif",
        _tif(np.zeros((8, 8, 5), np.uint8), photometric="minisblack", planarconfig="contig"),
        "5 channels",
    ),
    "named pipe": _refused("pipe.png", _fifo, "named pipe"),
    "dangling symlink": _refused("dangling.png", _dangling, "broken symbolic link"),
    "folder named like an image": _folder_named_like_image,
    "not an image type": _not_an_image_type,
    "unknown class": _unknown_class,
    "1x1": _accepted("dot.png", _cv2(np.full((1, 1, 3), 200, np.uint8)), _shape(1, 1, 3)),
    "16-bit": _accepted(
        "deep.png", _cv2(np.arange(H * W, dtype=np.uint16).reshape(H, W) * 20), _dtype("uint16")
    ),
    "float": _accepted(
        "float.tif",
        _tif(np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W)),
        _dtype("float32"),
    ),
    "grey": _accepted("grey.png", _cv2(_RGB9[..., 0]), _shape(H, W, 1)),
    "rgba": _accepted(
        "alpha.png", _cv2(np.dstack([_RGB9, np.full((H, W), 9, np.uint8)])), _shape(H, W, 4)
    ),
    "cmyk tiff": _accepted("cmyk.tif", _cmyk, _red),
    "multi-page": _accepted(
        "stack.tif", _tif(np.stack([_RGB9[..., 0]] * 3), photometric="minisblack"), _pages(3)
    ),
    "bigtiff": _accepted("big.tif", _tif(_RGB9, bigtiff=True, photometric="rgb"), _shape(H, W, 3)),
    "exif rotated jpeg": _accepted("turned.jpg", _rotated_jpeg, _shape(W, H, 3)),
    "spaces in the name": _accepted("a cell  01.png", _cv2(_RGB9[::-1]), _shape(H, W)),
    "quotes in the name": _accepted(
        """it's "x".png""", _cv2(_RGB9[:, ::-1]), _shape(H, W), "it's _x_"
    ),
    "unicode name": _accepted("célula_细胞.png", _cv2(_RGB9[::-1, ::-1]), _shape(H, W)),
    "html name": _accepted(
        "<img src=x onerror=alert(1)>.png",
        _cv2(_RGB9),
        _shape(H, W),
        "_img src=x onerror=alert(1)_",
    ),
    "name of 240 characters": _accepted(
        "n" * 240 + ".png", _cv2(_RGB9 // 2), _shape(H, W), "n" * 200
    ),
    "symlink to an image": _accepted("link.png", _link_to_good, _shape(H, W), "link"),
}


# --- Cases: a CSV manifest ---------------------------------------------------------------------
def _manifest(
    rows: str | bytes,
    words: str,
    *,
    bad_line: int | None = None,
    bad_file: str | None = None,
    added: int = 1,
    refused: bool = False,
    extra: Callable[[Path], None] | None = None,
    names: tuple[str, ...] = (),
) -> Callable[[Path], Setup]:
    """A manifest listing ``good.png`` (line 2) and then ``rows``; ``{root}`` is replaced."""

    def build(root: Path) -> Setup:
        data = root / "data"
        _good(data / "images")
        if extra is not None:
            extra(data)
        body = rows if isinstance(rows, bytes) else rows.replace("{root}", str(root)).encode()
        csv = data / "list.csv"
        if refused:
            csv.write_bytes(body)
            return Setup(csv, bad=str(csv), words=words, added=0, refused=True)
        csv.write_bytes(b"path,class\nimages/good.png,NILM\n" + body)
        if bad_line is not None:
            bad = f"{csv}: line {bad_line}"
        elif bad_file is not None:
            bad = bad_file.replace("{root}", str(root))
        else:
            bad = None
        return Setup(csv, bad=bad, words=words, added=added, names=list(names))

    return build


def _second_good(data: Path) -> None:
    rgb, _ = cell_image(H, W, seed=21)
    write_rgb_png(data / "other" / "second.png", rgb)


def _manifest_fifo(data: Path) -> None:
    os.mkfifo(data / "images" / "pipe.png")


def _manifest_folder(data: Path) -> None:
    (data / "images" / "dir.png").mkdir()


MANIFEST_CASES: dict[str, Callable[[Path], Setup]] = {
    "csv absent path": _manifest(
        "images/missing.png,NILM\n", "file not found", bad_file="{root}/data/images/missing.png"
    ),
    "csv absolute path": _manifest(
        "{root}/data/other/second.png,HSIL\n", "", added=2, extra=_second_good
    ),
    "csv dot-dot path": _manifest(
        "images/../other/second.png,HSIL\n", "", added=2, extra=_second_good
    ),
    "csv entry ...png": _manifest(
        "images/...png,HSIL\n",
        "",
        added=2,
        names=("image",),
        extra=lambda d: write_rgb_png(d / "images" / "...png", _RGB9),
    ),
    "csv nul byte": _manifest(b"images/x\x00.png,NILM\n", "NUL byte", bad_line=3),
    "csv huge field": _manifest(
        b"images/" + b"x" * 140_000 + b".png,NILM\n", "longer than 131072", bad_line=3
    ),
    "csv names a fifo": _manifest(
        "images/pipe.png,NILM\n",
        "named pipe",
        bad_file="{root}/data/images/pipe.png",
        extra=_manifest_fifo,
    ),
    "csv names a folder": _manifest(
        "images/dir.png,NILM\n",
        "is a folder",
        bad_file="{root}/data/images/dir.png",
        extra=_manifest_folder,
    ),
    "csv missing column": _manifest(
        "file,label\nimages/good.png,NILM\n",
        "no 'path' column (columns found: file, label)",
        refused=True,
    ),
    "csv wrong delimiter": _manifest(
        "path|class\nimages/good.png|NILM\n", "separator '|' is not recognised", refused=True
    ),
    "csv utf-16": _manifest(
        "path,class\nimages/good.png,NILM\n".encode("utf-16-le"), "NUL bytes", refused=True
    ),
}


def _csv_variant(header: bytes, sep: bytes) -> Callable[[Path], Setup]:
    def build(root: Path) -> Setup:
        data = root / "data"
        _good(data / "images")
        csv = data / "list.csv"
        csv.write_bytes(header + b"path" + sep + b"class\nimages/good.png" + sep + b"NILM\n")
        return Setup(csv)

    return build


MANIFEST_CASES["csv with bom"] = _csv_variant(b"\xef\xbb\xbf", b",")
MANIFEST_CASES["csv semicolons"] = _csv_variant(b"", b";")
MANIFEST_CASES["csv tabs"] = _csv_variant(b"\xef\xbb\xbf", b"\t")


# --- Cases: masks --------------------------------------------------------------------------------
def _mask_case(
    write: Callable[[Path], object], name: str, words: str, added: int = 1
) -> Callable[[Path], Setup]:
    def build(root: Path) -> Setup:
        src, masks = root / "src", root / "masks"
        _good(src)
        masks.mkdir()
        write(masks / name)
        return Setup(src, masks=masks, bad=str(masks / name), words=words, added=added)

    return build


def _two_images_one_stem(path: Path) -> None:
    write_label_png(path, MASK)
    rgb, _ = cell_image(H, W, seed=31)
    tifffile.imwrite(path.parent.parent / "src" / "good.tif", rgb, photometric="rgb")


MASK_CASES: dict[str, Callable[[Path], Setup]] = {
    "mask of the wrong shape": _mask_case(
        lambda p: write_label_png(p, MASK[:20]), "good.png", "but its image is"
    ),
    "mask with wrong values": _mask_case(
        lambda p: write_label_png(p, MASK * 100), "good.png", "0, 1 or 2"
    ),
    "rgb mask": _mask_case(
        lambda p: write_rgb_png(p, np.dstack([MASK * 100, MASK, MASK])), "good.png", "colour mask"
    ),
    "jpeg mask": _mask_case(lambda p: cv2.imwrite(str(p), MASK), "good.jpg", "lossy"),
    "empty mask file": _mask_case(_write_bytes(b""), "good.png", "file is empty"),
    "orphan mask": _mask_case(
        lambda p: write_label_png(p, MASK), "nobody.png", "no image named 'nobody'"
    ),
    "mask for two images": _mask_case(
        _two_images_one_stem, "good.png", "matches 2 images", added=2
    ),
}

CASES = {**FOLDER_CASES, **MANIFEST_CASES, **MASK_CASES}
_NEEDS_FIFO = {"named pipe", "csv names a fifo"}


# --- The project the corpus is imported into ------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with one image and its manual mask, copied fresh for every case."""
    root = tmp_path_factory.mktemp("corpus")
    rgb, mask = cell_image(H, W, seed=1)
    write_rgb_png(root / "src" / "NILM" / "base.png", rgb)
    write_label_png(root / "masks" / "base.png", mask)
    with Project.init(root / "proj", actor="t") as project:
        _, report = run_job(
            import_images(project, root / "src", actor="t", masks_dir=root / "masks")
        )
        assert report.added == ["base"] and report.masks_added == 1
    return root / "proj"


def _state(project: Project) -> tuple:
    """What must not change: image rows, their files' hashes, mask versions."""
    images = project.images()
    files = {im.name: file_sha256(project.image_path(im)) for im in images}
    versions = [v for im in images for v in project.mask_versions(im.id)]
    return images, files, versions


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_corpus(case: str, template: Path, tmp_path: Path) -> None:
    if case in _NEEDS_FIFO and not hasattr(os, "mkfifo"):
        pytest.skip("named pipes are POSIX")
    root = tmp_path / "proj"
    shutil.copytree(template, root)
    setup = CASES[case](tmp_path)
    with Project.open(root) as project:
        before = _state(project)
        try:
            events, report = run_job(
                import_images(project, setup.source, actor="t", masks_dir=setup.masks)
            )
        except CytoReviewError as exc:  # the whole manifest refused: one line naming it
            assert setup.refused, f"{case}: {exc}"
            message = str(exc)
            assert message.startswith(setup.bad or "") and setup.words in message
            assert "\n" not in message
            assert _state(project) == before
            return
        assert not setup.refused, f"{case}: expected the manifest to be refused"
        warnings = [e.message for e in events if e.level == "warning"]
        for message in (e.message for e in events):
            assert "\n" not in message and "Traceback" not in message, message
        if setup.bad is not None:
            naming = [w for w in warnings if setup.bad in w]
            assert len(naming) == 1, (case, warnings)
            assert setup.words in naming[0], naming[0]
        # The good file (and any accepted unusual one) went in; nothing else did.
        images_before, files_before, versions_before = before
        images, files, versions = _state(project)
        assert len(report.added) == setup.added, (case, report.added, warnings)
        assert "good" in report.added
        assert len(images) == len(images_before) + setup.added
        assert [im for im in images if im.name == "base"] == images_before
        assert {k: files[k] for k in files_before} == files_before
        assert [v for v in versions if v.image_id == images_before[0].id] == versions_before
        assert len(versions) == len(versions_before)  # no bad mask was attached
        records = {im.name: im for im in images}
        assert all(name in records for name in setup.names), (setup.names, list(records))
        if setup.check is not None:
            setup.check(project, records)
        for record in images:  # every catalogued image can be read back
            project.load_image(record)


def test_corpus_size() -> None:
    """The issue asks for at least 30 cases; each is one parametrised test above."""
    assert len(CASES) >= 30


def test_cli_names_every_bad_file_in_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The folder corpus through the command line: exit 0, one warning line per bad file."""
    src = tmp_path / "src"
    bad = []
    for case, build in FOLDER_CASES.items():
        if case in _NEEDS_FIFO and not hasattr(os, "mkfifo"):
            continue
        setup = build(tmp_path / case.replace(" ", "_"))
        for entry in sorted(setup.source.rglob("*")):
            if entry.name == "good.png" or (entry.is_dir() and not entry.suffix):
                continue
            target = src / entry.relative_to(setup.source)
            target.parent.mkdir(parents=True, exist_ok=True)
            if entry.is_symlink() or not (entry.is_file() or entry.is_dir()):
                os.rename(entry, target)  # links, pipes: moved as they are
            elif entry.is_dir():
                target.mkdir(exist_ok=True)
            else:
                shutil.copy(entry, target)
        if setup.bad is not None:
            bad.append(Path(setup.bad).name)
    _good(src)
    assert main(["init", str(tmp_path / "proj")]) == 0
    capsys.readouterr()
    assert main(["import", str(tmp_path / "proj"), str(src)]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.startswith("warning:")]
    for name in bad:
        assert sum(name in line for line in lines) == 1, (name, lines)
