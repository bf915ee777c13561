"""The classification commands end to end: train-cls, classify, explain, evaluate-cls, export
predictions and report, on a small synthetic project with exact masks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import pytest

from cytoreview.launcher import main
from cytoreview.models.classifier_blocks import TINY_BACKBONE

COMMANDS = ["train-cls", "classify", "explain", "evaluate-cls", "report", "pixel-size", "gui"]


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


def _calls(proj: Path) -> dict[str, str]:
    """The newest Bethesda call of every image, read back through the export."""
    out = proj.parent / "calls.csv"
    assert cli("export", proj, "predictions", "--out", out) == 0
    with out.open() as handle:
        return {row["image"]: row["pred_class"] for row in csv.DictReader(handle)}


def test_every_classification_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in COMMANDS:
        with pytest.raises(SystemExit) as info:
            cli(command, "--help")
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: cytoreview {command}" in out and len(out.splitlines()) > 3


def test_classify_explain_evaluate_export_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, proj = tmp_path / "data", tmp_path / "proj"
    assert cli("demo-data", data, "--n", "24", "--fields", "0") == 0
    assert cli("init", proj) == 0
    assert cli("import", proj, data / "images", "--masks", data / "masks") == 0
    assert cli("report", proj, "--out", tmp_path / "early") == 0  # nothing trained yet: still fine
    assert (tmp_path / "early" / "report.html").stat().st_size > 1000
    capsys.readouterr()
    args = ["--backbone", TINY_BACKBONE, "--mask-backbone", TINY_BACKBONE, "--input-size", "64",
            "--epochs", "4", "--batch-size", "8", "--lr", "1e-3"]  # fmt: skip
    assert cli("--user", "dr_a", "train-cls", proj, *args) == 0
    out = capsys.readouterr().out
    assert "model cls-" in out and "validation" in out
    assert cli("classify", proj, "--engine", "torch") == 0
    out = capsys.readouterr().out
    assert "24 image(s) classified" in out and "torch on" in out
    by_torch = _calls(proj)
    assert cli("classify", proj) == 0  # the default engine: ONNX Runtime
    out = capsys.readouterr().out
    assert "24 image(s) classified" in out and "onnx on CPU (onnxruntime" in out
    assert "8 views averaged" not in out  # the default (cytoreview.defaults.CLS.tta)
    assert "and its measurement model" in out  # the default (CLS.measurements)
    assert _calls(proj) == by_torch  # the same call for every image
    assert cli("classify", proj, "--tta") == 0  # the mean of the 8 rotations and mirrors
    assert "8 views averaged" in capsys.readouterr().out
    assert cli("explain", proj, "--flipping-steps", "0", "--engine", "torch") == 0
    assert "(torch on" in capsys.readouterr().out
    assert cli("explain", proj, "--flipping-steps", "0") == 0
    out = capsys.readouterr().out
    assert "24 heatmap(s) with gradcam++" in out and "(onnx on" in out and "closed form" in out
    with pytest.raises(SystemExit) as info:
        cli("classify", proj, "--engine", "tensorrt")
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err
    assert cli("evaluate-cls", proj, "--json") == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["n_matched"] == 24 and evaluation["on_training_images"] == 24
    assert len(evaluation["multiclass"]["confusion_matrix"]) == 4

    out_csv = tmp_path / "predictions.csv"
    assert cli("export", proj, "predictions", "--out", out_csv) == 0
    with out_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 24
    assert list(rows[0])[:8] == [
        "image", "pred_class", "prob_NILM", "prob_ASC-US", "prob_LSIL", "prob_HSIL",
        "pred_binary", "prob_revisable",
    ]  # fmt: skip

    assert rows[0]["nucleus_area_um2"] == ""  # no pixel size known yet
    assert cli("pixel-size", proj, "0.5") == 0
    assert cli("export", proj, "predictions", "--out", out_csv) == 0
    with out_csv.open() as handle:
        first = next(csv.DictReader(handle))
    px, um2 = float(first["nucleus_area_px"]), float(first["nucleus_area_um2"])
    assert um2 == pytest.approx(px * 0.25, rel=1e-5)

    report = tmp_path / "report"
    assert cli("report", proj, "--out", report, "--gallery", "8") == 0
    html = (report / "report.html").read_text()
    for heading in ("Classification", "Gallery", "Morphometry"):
        assert heading in html
    plots = sorted((report / "plots").glob("*.png"))
    assert plots, "the plots are written beside the page too"
    for plot in plots:
        image = cv2.imread(str(plot))
        assert image is not None and image.shape[0] > 100 and image.std() > 5


def test_bad_truth_csv_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proj = tmp_path / "proj"
    assert cli("init", proj) == 0
    bad = tmp_path / "truth.csv"
    bad.write_bytes(b"\xff\xfe\x00garbage")
    assert cli("evaluate-cls", proj, "--truth", bad) == 1
    err = capsys.readouterr().err.strip()
    assert "truth.csv" in err and len(err.splitlines()) == 1
