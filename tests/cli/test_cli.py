"""The command line end to end on a small synthetic project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from cytoreview.cli.main import build_parser, main
from tests.conftest import PATIENCE_S

COMMANDS = ["init", "import", "seeds", "status", "export", "audit", "demo-data", "demo"]


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in COMMANDS:
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([command, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: cytoreview {command}" in out and len(out.splitlines()) > 3


def test_end_to_end_small_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, proj = tmp_path / "data", tmp_path / "proj"
    assert cli("--user", "dr_a", "demo-data", data, "--n", "12", "--fields", "0") == 0
    assert len(list((data / "masks").glob("*.png"))) == 12
    assert cli("--user", "dr_a", "init", proj) == 0
    assert cli("--user", "dr_a", "import", proj, data / "images", "--masks", data / "masks") == 0
    out = capsys.readouterr().out
    assert "12 image(s) added" in out and "12 mask(s) added" in out
    # Importing again changes nothing.
    assert cli("import", proj, data / "images") == 0
    assert "0 image(s) added, 12 already in the project" in capsys.readouterr().out

    assert cli("seeds", proj, "--per-class", "2", "--seed", "3") == 0
    capsys.readouterr()
    assert cli("status", proj, "--json") == 0
    status = json.loads(capsys.readouterr().out)
    rows = {r["label"]: r for r in status["classes"]}
    assert {k: r["images"] for k, r in rows.items()} == {
        "NILM": 3,
        "ASC-US": 3,
        "LSIL": 3,
        "HSIL": 3,
    }
    assert all(r["seeds"] == 2 and r["seeds_painted"] == 2 for r in rows.values())
    assert sum(r["masks"]["manual"] for r in rows.values()) == 12

    assert cli("export", proj, "masks", "--out", tmp_path / "exported") == 0
    assert "12 mask(s) written" in capsys.readouterr().out
    exported = sorted((tmp_path / "exported").glob("*.png"))
    assert len(exported) == 12
    mask = cv2.imread(str(exported[0]), cv2.IMREAD_UNCHANGED)
    assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 1, 2}

    assert cli("audit", proj, "--json") == 0
    entries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert entries[0]["action"] == "init" and entries[0]["actor"] == "dr_a"
    assert sum(e["action"] == "import" for e in entries) == 12
    assert any(e["action"] == "set_seeds" for e in entries)


def test_errors_exit_nonzero_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("status", tmp_path / "nowhere") == 1
    err = capsys.readouterr().err.strip()
    assert "not a CytoReview project" in err and len(err.splitlines()) == 1
    assert cli("init", tmp_path / "p", "--scheme", "herlev", "--not-revisable", "martian") == 1
    assert "unknown class 'martian'" in capsys.readouterr().err
    assert cli("init", tmp_path / "p", "--classes", "NILM", "ASC-H", "HSIL") == 0
    assert cli("init", tmp_path / "p") == 1
    assert "already exists" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("file,label\nx.png,NILM\n")
    assert cli("import", tmp_path / "p", bad) == 1
    assert "no 'path' column" in capsys.readouterr().err


def test_import_of_only_bad_files_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_text("not an image")
    assert cli("init", tmp_path / "p") == 0
    assert cli("import", tmp_path / "p", src) == 1
    captured = capsys.readouterr()
    assert "a.png" in captured.err and "nothing could be imported" in captured.err


def test_console_script_runs_demo(tmp_path: Path) -> None:
    """The installed `cytoreview` command, as a user types it."""
    exe = Path(sys.executable).with_name("cytoreview")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "cytoreview"]
    env = {**os.environ, "CYTOREVIEW_USER": "demo-user", "COLUMNS": "100"}
    result = subprocess.run(
        [
            *command,
            "demo",
            "--out",
            str(tmp_path / "demo"),
            "--n",
            "8",
            "--per-class",
            "1",
            "--epochs",
            "2",
            "--cls-epochs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=PATIENCE_S,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "4 seed image(s) painted" in result.stdout
    assert "4 image(s) auto-segmented; 4 painted ones left alone" in result.stdout
    assert "train-seg" in result.stdout and "--init seg-" in result.stdout
    assert (tmp_path / "demo" / "overview.png").stat().st_size > 1000
    assert "8 image(s) classified, 8 Grad-CAM++ heatmap(s)" in result.stdout
    assert "scored on the test split (1 held-out images)" in result.stdout
    assert (tmp_path / "demo" / "report" / "report.html").stat().st_size > 10_000
    assert (tmp_path / "demo" / "exports" / "predictions.csv").is_file()
    # Running the demo again replaces the previous demo, but never a folder it did not make.
    quick = ["--n", "8", "--per-class", "1", "--epochs", "0", "--cls-epochs", "0"]
    again = subprocess.run(
        [*command, "demo", "--out", str(tmp_path / "demo"), *quick],
        capture_output=True, text=True, timeout=PATIENCE_S, env=env,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("precious")
    refused = subprocess.run(
        [*command, "demo", "--out", str(foreign)], capture_output=True, text=True,
        timeout=PATIENCE_S, env=env,
    )  # fmt: skip
    assert refused.returncode == 1 and "not made by `cytoreview demo`" in refused.stderr
    assert (foreign / "thesis.docx").read_text() == "precious"


def test_train_segment_evaluate_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, proj = tmp_path / "data", tmp_path / "proj"
    assert cli("demo-data", data, "--n", "16", "--fields", "0") == 0
    assert cli("init", proj) == 0
    assert cli("import", proj, data / "images") == 0
    assert cli("seeds", proj, "--per-class", "2") == 0
    # Paint the seeds: import their true masks (a re-import adds masks to known images).
    painted = tmp_path / "painted"
    painted.mkdir()
    from cytoreview.storage.project import Project

    with Project.open(proj) as project:
        seeds = [im.name for im in project.images() if im.is_seed]
        others = [im.name for im in project.images() if not im.is_seed]
    for name in seeds:
        (painted / f"{name}.png").write_bytes((data / "masks" / f"{name}.png").read_bytes())
    assert cli("import", proj, data / "images", "--masks", painted) == 0
    capsys.readouterr()
    assert cli("train-seg", proj, "--epochs", "2", "--input-size", "64") == 0
    out = capsys.readouterr().out
    assert "finished (max_epochs) after 2 epoch(s)" in out and "Dice cytoplasm" in out
    assert cli("segment", proj) == 0
    out = capsys.readouterr().out
    assert "8 image(s) auto-segmented" in out and "8 with a human mask left alone" in out
    assert cli("segment", proj, "--tta", "--images", seeds[0], others[0]) == 0
    out = capsys.readouterr().out  # the seed has a person's mask: only the other is masked
    assert "1 image(s) auto-segmented" in out and "1 with a human mask left alone" in out
    assert cli("evaluate-seg", proj, "--truth", data / "masks", "--json") == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["all"]["n_images"] == 16 and set(scores["by_provenance"]) == {"auto", "manual"}
    assert scores["by_provenance"]["manual"]["mean"]["nucleus"]["dice"] == 1.0
    assert cli("export", proj, "masks", "--out", tmp_path / "out") == 0
    assert "16 mask(s) written" in capsys.readouterr().out
    assert len(list((tmp_path / "out").glob("*.png"))) == 16
    assert cli("train-seg", proj, "--init", "no-such-model.pt") == 1
    assert "no-such-model.pt: no such file, and not a model" in capsys.readouterr().err
