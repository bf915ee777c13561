"""What a user looks for first: the licence, the version, a changelog, an icon, a menu entry."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

from PIL import Image

import cytoreview
from tests.conftest import PATIENCE_S

ROOT = Path(__file__).resolve().parents[1]


def test_license_is_the_apache_2_text_the_metadata_names() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text and len(text.splitlines()) > 190
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_version_option_prints_the_package_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cytoreview", "--version"],
        capture_output=True, text=True, timeout=PATIENCE_S,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == f"cytoreview {cytoreview.__version__}"


def test_changelog_has_the_current_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog") and cytoreview.__version__ in text


def test_icon_svg_and_its_256_px_png() -> None:
    svg = (ROOT / "resources" / "cytoreview.svg").read_text(encoding="utf-8")
    assert "<svg" in svg and 'viewBox="0 0 256 256"' in svg
    with Image.open(ROOT / "resources" / "cytoreview.png") as png:
        assert png.format == "PNG" and png.size == (256, 256) and png.mode == "RGBA"
        assert png.getpixel((0, 0))[3] == 0 and png.getpixel((128, 128))[3] == 255
    # The Windows shortcut's icon (installer/offline/install.ps1), every size Explorer asks for.
    with Image.open(ROOT / "resources" / "cytoreview.ico") as ico:
        assert ico.format == "ICO"
        assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= ico.info["sizes"]


def test_desktop_entry_starts_the_workbench() -> None:
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # keys are case-sensitive
    entry.read(ROOT / "resources" / "cytoreview.desktop", encoding="utf-8")
    desk = entry["Desktop Entry"]
    assert desk["Type"] == "Application" and desk["Exec"] == "cytoreview gui"
    assert desk["Icon"] == "cytoreview" and desk["Terminal"] == "false"
    assert {"Science", "MedicalSoftware"} <= set(desk["Categories"].rstrip(";").split(";"))
