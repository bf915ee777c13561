"""Image names safe as file names, and catalog paths that cannot lead out of their folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from cytoreview.errors import UnsafePathError
from cytoreview.storage.names import MAX_NAME_BYTES, name_component, path_inside, safe_image_name


@pytest.mark.parametrize(
    ("stem", "name"),
    [
        ("cell 01", "cell 01"),  # spaces, quotes, unicode and plain HTML-free names are kept
        ("célula_ü", "célula_ü"),
        ("it's", "it's"),
        ("..", "image"),  # the stem of "...png"
        (".", "image"),
        ("", "image"),
        ("...hidden", "hidden"),
        ("trailing. ", "trailing"),
        ("a/b\\c", "a_b_c"),
        ("tab\there\nnew", "tab_here_new"),
        ("nul\x00byte", "nul_byte"),
        ('<b>"x"|y?*:z</b>', "_b__x__y___z__b_"),
        ("CON", "_CON"),
        ("lpt1.scan", "_lpt1.scan"),
        ("console", "console"),
    ],
)
def test_safe_image_name(stem: str, name: str) -> None:
    assert safe_image_name(stem) == name


def test_long_names_are_cut_on_a_character_boundary() -> None:
    name = safe_image_name("é" * 300)
    assert len(name.encode("utf-8")) <= MAX_NAME_BYTES and name == "é" * (MAX_NAME_BYTES // 2)
    assert safe_image_name("x" * 240) == "x" * MAX_NAME_BYTES


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "a\\b", "x\x00"])
def test_name_component_refuses_what_is_not_one_plain_name(name: str) -> None:
    with pytest.raises(UnsafePathError, match="not a plain file name"):
        name_component(name)


@pytest.mark.parametrize("name", ["cell", "a b", "..x", "x..", "é"])
def test_name_component_keeps_plain_names(name: str) -> None:
    assert name_component(name) == name


@pytest.mark.parametrize(
    "relative",
    [
        "../x.png",
        "images/../../x.png",
        "/etc/passwd",
        "C:\\x.png",
        "\\\\host\\share\\x",
        "",
        "images\\..\\..\\x",
        "a\x00b",
    ],
)
def test_path_inside_refuses_ways_out(tmp_path: Path, relative: str) -> None:
    with pytest.raises(UnsafePathError):
        path_inside(tmp_path, relative)


def test_path_inside_joins_ordinary_paths(tmp_path: Path) -> None:
    assert path_inside(tmp_path, "masks/a b/v0001.png") == tmp_path / "masks" / "a b" / "v0001.png"
