"""``cytoreview set-class``: one image or a CSV table; one clear line per refusal, no traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoreview.cli.main import build_parser, main
from cytoreview.storage.project import Project
from tests.conftest import write_rgb_png


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    for name, label in (("c1", "NILM"), ("c2", "LSIL"), ("c3", "HSIL")):
        rgb = rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)
        write_rgb_png(tmp_path / "src" / label / f"{name}.png", rgb)
    assert cli("--user", "setup", "init", tmp_path / "p") == 0
    assert cli("--user", "setup", "import", tmp_path / "p", tmp_path / "src") == 0
    return tmp_path / "p"


def labels(proj: Path) -> dict[str, str | None]:
    with Project.open(proj) as project:
        return {im.name: im.class_label for im in project.images()}


def test_set_class_of_one_image(proj: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert cli("--user", "dr_a", "set-class", proj, "c2", "hsil") == 0
    assert capsys.readouterr().out.strip() == "c2: LSIL -> HSIL"
    assert labels(proj)["c2"] == "HSIL"
    with Project.open(proj) as project:
        entry = [e for e in project.audit_entries() if e.action == "set_class"][-1]
    assert (entry.actor, entry.details["old"], entry.details["new"]) == ("dr_a", "LSIL", "HSIL")
    assert cli("set-class", proj, "c2", "HSIL") == 0
    assert "already HSIL, nothing changed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("c2", "carcinoma"), "unknown class 'carcinoma'; valid: NILM, ASC-US, LSIL, HSIL"),
        (("nope", "HSIL"), "no image named 'nope'"),
        (("c2",), "give IMAGE CLASS"),
        (("fix.csv",), "a class table is read with --csv: `set-class PROJECT --csv fix.csv`"),
        (("c2", "HSIL", "--csv", "x.csv"), "either IMAGE CLASS or --csv FILE"),
    ],
)
def test_refusals_are_one_line(proj: Path, capsys, args: tuple[str, ...], expected: str) -> None:
    capsys.readouterr()
    assert cli("set-class", proj, *args) == 1
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert labels(proj) == {"c1": "NILM", "c2": "LSIL", "c3": "HSIL"}


def test_set_class_from_a_table(proj: Path, tmp_path: Path, capsys) -> None:
    table = tmp_path / "fix.csv"
    table.write_text("image,class\nc1.png,ASC-US\nc2,oops\nc3,HSIL\n")
    capsys.readouterr()
    assert cli("--user", "dr_b", "set-class", proj, "--csv", table) == 1  # a row was refused
    captured = capsys.readouterr()
    assert "c1: NILM -> ASC-US" in captured.out
    assert "1 class(es) changed, 1 already right, 1 row(s) refused" in captured.out
    (refusal,) = captured.err.strip().splitlines()
    assert f"{table}: line 3: unknown class 'oops'; valid: NILM" in refusal
    assert labels(proj) == {"c1": "ASC-US", "c2": "LSIL", "c3": "HSIL"}
    table.write_text("file;diagnosis\nc1;NILM\n")
    assert cli("set-class", proj, "--csv", table) == 1
    err = capsys.readouterr().err
    assert "no 'image' or 'class' column" in err and len(err.strip().splitlines()) == 1


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["set-class", "--help"])
    assert info.value.code == 0
    assert "--csv FILE" in capsys.readouterr().out
