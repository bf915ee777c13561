"""``cytoreview compare-encoders`` end to end on a tiny synthetic project."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cytoreview.cli.main import main
from cytoreview.data.synthetic import synth_dataset
from tests.conftest import write_label_png, write_rgb_png


def test_compare_encoders_prints_the_table_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, sample in synth_dataset(10, seed=8, size_range=(48, 64)):
        write_rgb_png(tmp_path / "src" / sample.label / f"{name}.png", sample.image)
        write_label_png(tmp_path / "painted" / f"{name}.png", sample.mask)
    root = str(tmp_path / "proj")
    assert main(["init", root]) == 0
    assert main(["import", root, str(tmp_path / "src"), "--masks", str(tmp_path / "painted")]) == 0
    capsys.readouterr()
    args = ["--encoders", "resnet18", "--epochs", "1", "--input-size", "64", "--device", "cpu"]
    assert main(["compare-encoders", root, *args, "--preset", "wubineh2024", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (row,) = data["rows"]
    assert row["encoder"] == "resnet18" and row["status"] == "finished"
    assert {"accuracy", "dice_cytoplasm", "sensitivity_nucleus"} <= set(row["scores"])
    assert data["recipe"]["loss"] == "jaccard" and data["recipe"]["preset"] == "wubineh2024"
    assert data["recipe"]["input_size"] == 64 and data["recipe"]["epochs"] == 1
    assert Path(data["table_csv"]).is_file() and Path(data["table_json"]).is_file()
