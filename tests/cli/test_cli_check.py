"""``cytoreview check`` and the catalog refusals, from the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from cytoreview.cli.main import main
from cytoreview.storage.hashing import file_sha256
from cytoreview.storage.images import read_image
from cytoreview.storage.project import CATALOG_FILE, Project
from cytoreview.types import Provenance
from tests.conftest import cell_image, write_rgb_png


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def painted(tmp_path: Path) -> Path:
    project = Project.init(tmp_path / "proj", actor="dr_a")
    for k in range(2):
        rgb, mask = cell_image(seed=k)
        path = write_rgb_png(tmp_path / "src" / f"cell[{k}].png", rgb)  # rich markup in a name
        image = project.add_image(path, read_image(path).info, file_sha256(path), actor="t")
        project.save_mask(image.id, mask, Provenance.MANUAL, actor="dr_a")
    project.close()
    return project.root


def test_check_exit_status_and_one_line_per_problem(
    painted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("check", painted) == 0
    out = capsys.readouterr().out
    assert "catalog ok; 2 image(s), 2 mask version(s)" in out and "no problems" in out

    (painted / "images" / "cell[0].png").unlink()
    (painted / "masks" / ".x.png.abc.partial").write_bytes(b"half")
    assert cli("check", painted, "--temp-age", "0") == 1
    lines = capsys.readouterr().out.splitlines()
    assert "damage: images/cell[0].png: image 'cell[0]': the file is missing" in lines
    assert "leftover: masks/.x.png.abc.partial: temp file of a crashed write" in lines
    assert lines[-1].startswith("1 damaged, 1 leftover(s); `cytoreview check")

    assert cli("check", painted, "--repair", "--temp-age", "0") == 0
    out = capsys.readouterr().out
    assert "repair: restored: images/cell[0].png" in out and "no problems" in out
    assert cli("check", painted) == 0


def test_check_json(painted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    (painted / "images" / "stray.png").write_bytes(b"x")
    assert cli("check", painted, "--temp-age", "0", "--json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False and data["findings"][0]["kind"] == "orphan-file"


def test_status_on_an_empty_catalog_is_one_line_and_writes_nothing(
    painted: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog = painted / CATALOG_FILE
    catalog.write_bytes(b"")
    assert cli("status", painted) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(catalog) in err and "empty" in err
    assert catalog.stat().st_size == 0
    assert cli("check", painted) == 1
    assert "not a CytoReview catalog" in capsys.readouterr().out


def test_check_of_a_folder_without_project(tmp_path: Path, capsys) -> None:
    assert cli("check", tmp_path) == 1
    err = capsys.readouterr().err.strip()
    assert "not a CytoReview project" in err and len(err.splitlines()) == 1
