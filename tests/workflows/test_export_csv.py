"""The predictions CSV opens in a spreadsheet as data: no cell runs as a formula."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cytoreview.storage.predictions import PredictionInput, PredictionStore
from cytoreview.storage.project import Project
from cytoreview.workflows.export import csv_cell, export_predictions
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.projects import build_scheme
from tests.conftest import cell_image, run_job, write_label_png, write_rgb_png


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+1", "'=1+1"), ("+cmd", "'+cmd"), ("-cell", "'-cell"), ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"), ("\rx", "'\rx"), ("NILM", "NILM"), ("a=b", "a=b"), ("", ""),
        (-0.5, "-0.5"), (0.1234567, "0.123457"), (3, 3), (None, ""), (float("nan"), ""),
    ],
)  # fmt: skip
def test_csv_cell(value: object, cell: object) -> None:
    assert csv_cell(value) == cell


def test_predictions_export_neutralises_formulas(tmp_path: Path) -> None:
    hostile_class = "@SUM(A1)"
    scheme = build_scheme(None, ["NILM", hostile_class], ["NILM"])
    src = tmp_path / "src"
    stems = {hostile_class: ["=HYPERLINK(x)", "-2+3"], "NILM": ["+cmd", "plain"]}
    for k, (label, names) in enumerate(stems.items()):
        for i, stem in enumerate(names):
            rgb, mask = cell_image(seed=k * 10 + i)
            write_rgb_png(src / label / f"{stem}.png", rgb)
            write_label_png(tmp_path / "masks" / f"{stem}.png", mask)
    with Project.init(tmp_path / "proj", actor="t", scheme=scheme) as project:
        run_job(import_images(project, src, actor="t", masks_dir=tmp_path / "masks"))
        record = project.image("-2+3")
        probs = {"NILM": 0.25, hostile_class: 0.75}
        pred = PredictionInput(record.id, hostile_class, probs, uncertainty=0.8)
        PredictionStore(project).save_predictions("cls-t", "bethesda", [pred], actor="t")
        out = tmp_path / "p.csv"
        run_job(export_predictions(project, out))
    with out.open(newline="", encoding="utf-8") as handle:
        rows = {row["image"]: row for row in csv.DictReader(handle)}
    assert sorted(rows) == ["'+cmd", "'-2+3", "'=HYPERLINK(x)", "plain"]
    row = rows["'-2+3"]
    assert row["true_class"] == row["pred_class"] == f"'{hostile_class}"
    assert float(row[f"prob_{hostile_class}"]) == 0.75 and float(row["uncertainty"]) == 0.8
    assert float(rows["plain"]["nucleus_area_px"]) > 0  # numbers stay numbers
    assert not any(
        cell.startswith(("=", "+", "-", "@")) for r in rows.values() for cell in r.values()
    )
