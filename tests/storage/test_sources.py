"""Finding images: folder trees and CSV manifests, and their bad cases."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cytoreview.errors import ManifestError
from cytoreview.storage.sources import index_masks, scan_folder, scan_manifest, scan_source
from tests.conftest import write_label_png, write_rgb_png

RGB = np.zeros((8, 8, 3), np.uint8)


def test_folder_tree_subfolders_are_classes(tmp_path: Path) -> None:
    write_rgb_png(tmp_path / "NILM" / "a.png", RGB)
    write_rgb_png(tmp_path / "HSIL" / "deeper" / "b.png", RGB)
    write_rgb_png(tmp_path / "loose.png", RGB)
    (tmp_path / "HSIL" / "notes.txt").write_text("hello")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "NILM" / "Thumbs.db").write_bytes(b"x")
    scan = scan_folder(tmp_path)
    found = {item.path.name: item.class_label for item in scan.items}
    assert found == {"a.png": "NILM", "b.png": "HSIL", "loose.png": None}
    assert [p.path.name for p in scan.problems] == ["notes.txt"]
    assert "not an image type (.txt)" in str(scan.problems[0])


def test_manifest_relative_paths_classes_and_splits(tmp_path: Path) -> None:
    write_rgb_png(tmp_path / "imgs" / "a.png", RGB)
    write_rgb_png(tmp_path / "imgs" / "b.tif.png", RGB)
    csv = tmp_path / "m.csv"
    csv.write_text("\ufeffpath,class,split\nimgs/a.png,HSIL,train\nimgs/b.tif.png,,test\n,NILM,\n")
    scan = scan_manifest(csv)
    assert [(i.path, i.class_label, i.split) for i in scan.items] == [
        (tmp_path / "imgs" / "a.png", "HSIL", "train"),
        (tmp_path / "imgs" / "b.tif.png", None, "test"),
    ]
    assert len(scan.problems) == 1 and "line 4: empty 'path'" in str(scan.problems[0])
    assert scan.items[0].origin == "m.csv line 2"


def test_manifest_semicolons_stems_and_custom_columns(tmp_path: Path) -> None:
    write_rgb_png(tmp_path / "images" / "h40_01.png", RGB)
    csv = tmp_path / "labels.csv"
    csv.write_text("id;bethesda\nh40_01;LSIL\n")
    scan = scan_manifest(
        csv, path_column="id", class_column="bethesda", image_dir=tmp_path / "images"
    )
    assert scan.items[0].path == tmp_path / "images" / "h40_01.png"
    assert scan.items[0].class_label == "LSIL"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the manifest is empty"),
        ("file,label\na.png,NILM\n", "no 'path' column (columns found: file, label)"),
        ("path,class\n", "header but no rows"),
    ],
)
def test_bad_manifests_name_the_file(tmp_path: Path, content: str, message: str) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(content)
    with pytest.raises(ManifestError, match=r"bad\.csv") as info:
        scan_manifest(csv)
    assert message in str(info.value)


def test_manifest_not_utf8_and_bad_split(tmp_path: Path) -> None:
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(ManifestError, match="not a UTF-8 text file"):
        scan_manifest(binary)
    csv = tmp_path / "split.csv"
    csv.write_text("path,split\na.png,training\n")
    scan = scan_manifest(csv)
    assert not scan.items and "split 'training' is not train, val or test" in str(scan.problems[0])


def test_missing_class_column_when_named(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("path\na.png\n")
    with pytest.raises(ManifestError, match="no 'bethesda' column"):
        scan_manifest(csv, class_column="bethesda")


def test_scan_source_rejects_other_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such file or folder"):
        scan_source(tmp_path / "nope")
    other = tmp_path / "x.json"
    other.write_text("{}")
    with pytest.raises(ManifestError, match="expected a folder of images, a CSV manifest or a"):
        scan_source(other)


def test_index_masks_refuses_ambiguous_stems(tmp_path: Path) -> None:
    mask = np.zeros((4, 4), np.uint8)
    write_label_png(tmp_path / "a.png", mask)
    write_label_png(tmp_path / "sub" / "a.png", mask)
    write_label_png(tmp_path / "b.png", mask)
    found, problems = index_masks(tmp_path)
    assert set(found) == {"b"}
    assert "more than one mask named 'a'" in str(problems[0])
    with pytest.raises(ManifestError, match="mask folder does not exist"):
        index_masks(tmp_path / "missing")


def test_folder_names_links_pipes_and_folders_that_look_like_images(tmp_path: Path) -> None:
    """Nothing under the source is skipped without a word, and nothing non-regular is opened."""
    write_rgb_png(tmp_path / "NILM" / "good.png", RGB)
    (tmp_path / "NILM" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "NILM" / "folder.tif").mkdir()
    (tmp_path / "linked_class").symlink_to(tmp_path / "NILM")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "NILM" / "pipe.png")
    scan = scan_folder(tmp_path)
    assert [i.path.name for i in scan.items] == ["good.png"]
    reasons = {p.path.name: p.reason for p in scan.problems}
    assert "broken symbolic link" in reasons.pop("dangling.png")
    assert "folder named like an image" in reasons.pop("folder.tif")
    assert "not followed" in reasons.pop("linked_class")
    if hasattr(os, "mkfifo"):
        assert "named pipe" in reasons.pop("pipe.png")
    assert reasons == {}


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        (b"path,class\na.png,NILM\nb\x00.png,NILM\n", 3, "NUL byte"),
        (b"path,class\n" + b"x" * 140_000 + b".png,NILM\na.png,NILM\n", 2, "longer than 131072"),
    ],
)
def test_manifest_rows_that_cannot_be_read_are_named(
    tmp_path: Path, content: bytes, line: int, words: str
) -> None:
    csv = tmp_path / "m.csv"
    csv.write_bytes(content)
    scan = scan_manifest(csv)
    assert len(scan.problems) == 1, scan.problems
    assert str(scan.problems[0]).startswith(f"{csv}: line {line}: ")
    assert words in str(scan.problems[0]) and "\n" not in str(scan.problems[0])
    assert [i.path.name for i in scan.items] == ["a.png"]


def test_manifest_in_utf16_or_binary_is_one_line(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_bytes("path,class\na.png,NILM\n".encode("utf-16-le"))
    with pytest.raises(ManifestError, match="NUL bytes: not a plain-text CSV"):
        scan_manifest(csv)


@pytest.mark.parametrize(("sep", "named"), [(";", None), ("\t", None), ("|", "'|'"), (":", "':'")])
def test_manifest_separators(tmp_path: Path, sep: str, named: str | None) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text(f"\ufeffpath{sep}class\na.png{sep}NILM\n")
    if named is None:
        assert [i.class_label for i in scan_manifest(csv).items] == ["NILM"]
        return
    with pytest.raises(ManifestError) as info:
        scan_manifest(csv)
    message = str(info.value)
    assert f"separator {named} is not recognised" in message and "expected 'path'" in message


def test_masks_folder_reports_what_cannot_be_a_mask(tmp_path: Path) -> None:
    mask = np.zeros((4, 4), np.uint8)
    write_label_png(tmp_path / "a.png", mask)
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "c.bmp").write_bytes(b"BM")
    (tmp_path / "d.png").symlink_to(tmp_path / "gone.png")
    found, problems = index_masks(tmp_path)
    assert set(found) == {"a"}
    reasons = {p.path.name: p.reason for p in problems}
    assert "lossy" in reasons["b.jpg"] and "PNG or TIFF" in reasons["b.jpg"]
    assert "not a mask file type (.bmp)" in reasons["c.bmp"]
    assert "broken symbolic link" in reasons["d.png"]
