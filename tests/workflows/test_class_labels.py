"""Setting or correcting an image's class after import: one image, a CSV table, a reviewer's call;
audited; training and evaluation then use the corrected class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoreview.errors import ManifestError, ProjectError, UnknownClassError
from cytoreview.storage.predictions import PredictionInput, PredictionStore
from cytoreview.storage.project import Project
from cytoreview.workflows.class_labels import (
    adopt_expert_call,
    set_classes_from_table,
    set_image_class,
)
from cytoreview.workflows.classification import collect_examples
from cytoreview.workflows.evaluate_cls import evaluate_classification
from cytoreview.workflows.importing import import_images
from tests.conftest import run_job, write_rgb_png

#: image name -> imported class
IMPORTED = {"a1": "NILM", "a2": "NILM", "b1": "LSIL", "c1": "HSIL", "c2.x": "HSIL"}


@pytest.fixture
def project(tmp_path: Path):
    rng = np.random.default_rng(0)
    for name, label in IMPORTED.items():
        rgb = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
        write_rgb_png(tmp_path / "src" / label / f"{name}.png", rgb)
    project = Project.init(tmp_path / "p", actor="setup")
    run_job(import_images(project, tmp_path / "src", actor="setup"))
    yield project
    project.close()


def _set_class_entries(project: Project) -> list:
    return [e for e in project.audit_entries() if e.action == "set_class"]


def test_one_image_is_corrected_and_audited(project: Project) -> None:
    change = set_image_class(project, "b1", "hsil", actor="dr_a")
    assert (change.name, change.old, change.new, change.changed) == ("b1", "LSIL", "HSIL", True)
    assert change.line() == "b1: LSIL -> HSIL"
    assert project.image("b1").class_label == "HSIL"
    (entry,) = _set_class_entries(project)
    assert entry.actor == "dr_a" and entry.at and entry.entity_id == change.image_id
    assert entry.details["old"] == "LSIL" and entry.details["new"] == "HSIL"
    assert entry.details["source"] == "typed"
    # A file name or path of the image names it too; a name with a dot stays a name.
    assert set_image_class(project, "scans/a1.png", "LSIL", actor="dr_a").new == "LSIL"
    assert set_image_class(project, "c2.x", "NILM", actor="dr_a").name == "c2.x"
    # Setting the class it already has changes nothing and writes no audit entry.
    before = len(_set_class_entries(project))
    assert not set_image_class(project, "b1", "HSIL", actor="dr_a").changed
    assert len(_set_class_entries(project)) == before


def test_unknown_classes_and_images_are_refused(project: Project) -> None:
    with pytest.raises(UnknownClassError, match="valid: NILM, ASC-US, LSIL, HSIL"):
        set_image_class(project, "b1", "carcinoma", actor="dr_a")
    with pytest.raises(ProjectError, match="no image named 'zz'"):
        set_image_class(project, "zz", "HSIL", actor="dr_a")
    assert project.image("b1").class_label == "LSIL" and _set_class_entries(project) == []


def test_a_table_applies_good_rows_and_names_each_bad_one(project: Project, tmp_path) -> None:
    table = tmp_path / "fix.csv"
    rows = ["Image;Class", "a1;LSIL", "a2.png;NILM", "b1;carcinoma", "zz;HSIL", "c1;",
            "c2.x;NILM", "c2.x;LSIL", "c1;ASC-US"]  # fmt: skip
    table.write_bytes("\ufeff".encode() + "\n".join(rows).encode() + b"\n")  # Excel's BOM
    report = set_classes_from_table(project, table, actor="dr_b")
    assert [c.line() for c in report.changes] == ["a1: NILM -> LSIL", "c1: HSIL -> ASC-US"]
    assert report.unchanged == 1  # a2 is NILM already
    assert len(report.problems) == 4
    for line, why in ((4, "unknown class 'carcinoma'; valid: NILM"), (5, "no image named 'zz'"),
                      (6, "empty image or class"), (8, "c2.x is listed again")):  # fmt: skip
        assert any(f"fix.csv: line {line}: {why}" in p for p in report.problems), (line, report)
    assert all("\n" not in p for p in report.problems)
    assert project.image("c2.x").class_label == "HSIL"  # two answers: neither applied
    assert project.image("b1").class_label == "LSIL"
    assert report.summary == "fix.csv: 2 class(es) changed, 1 already right, 4 row(s) refused"
    sources = [e.details["source"] for e in _set_class_entries(project)]
    assert sources == ["fix.csv line 2", "fix.csv line 9"]


def test_a_table_without_its_columns_is_refused_in_one_line(project: Project, tmp_path) -> None:
    table = tmp_path / "bad.csv"
    table.write_text("name,label\na1,HSIL\n")
    with pytest.raises(ManifestError, match=r"no 'image' or 'class' column.*found: name, label"):
        set_classes_from_table(project, table, actor="dr_b")
    # A row over csv's field limit is refused on its line; the rows around it still apply.
    table.write_text("image,class\na1,HSIL\n" + "b1," + "x" * 200_000 + "\nc1,NILM\n")
    report = set_classes_from_table(project, table, actor="dr_b")
    assert [c.line() for c in report.changes] == ["a1: NILM -> HSIL", "c1: HSIL -> NILM"]
    assert len(report.problems) == 1 and "bad.csv: line 3:" in report.problems[0]


def test_the_experts_call_becomes_the_label(project: Project) -> None:
    image_id = project.image("b1").id
    with pytest.raises(ProjectError, match="no expert call"):
        adopt_expert_call(project, image_id, actor="dr_a")
    PredictionStore(project).add_review(image_id, reviewer="dr_c", class_call="HSIL")
    change = adopt_expert_call(project, image_id, actor="dr_a")
    assert (change.old, change.new) == ("LSIL", "HSIL")
    (entry,) = _set_class_entries(project)
    assert entry.actor == "dr_a" and entry.details["source"].startswith("review call by dr_c")


def test_a_call_made_while_adopting_is_recorded_first_once(project: Project) -> None:
    image_id = project.image("b1").id
    reviews = PredictionStore(project)
    change = adopt_expert_call(project, image_id, actor="dr_a", call="ASC-US")
    assert (change.old, change.new) == ("LSIL", "ASC-US")
    newest = reviews.latest_reviews()[image_id]
    assert (newest.reviewer, newest.class_call) == ("dr_a", "ASC-US")
    n_entries = len(project.audit_entries())
    change = adopt_expert_call(project, image_id, actor="dr_a", call="ASC-US")  # the same again
    assert not change.changed and reviews.latest_reviews()[image_id].id == newest.id
    assert len(project.audit_entries()) == n_entries


def test_training_and_evaluation_use_the_corrected_class(project: Project) -> None:
    ids = {name: project.image(name).id for name in IMPORTED}
    classes = list(project.scheme.classes)
    preds = [PredictionInput(i, "HSIL", {c: float(c == "HSIL") for c in classes}, 0.0)
             for i in ids.values()]  # fmt: skip
    PredictionStore(project).save_predictions("cls-hand", "bethesda", preds, actor="t")
    before = evaluate_classification(project)
    set_image_class(project, "b1", "HSIL", actor="dr_a")
    _, examples = run_job(collect_examples(project, "bethesda", needs_mask=False))
    assert dict(zip(examples.names, examples.labels, strict=True))["b1"] == "HSIL"
    after = evaluate_classification(project)
    assert after.multiclass.accuracy == pytest.approx(before.multiclass.accuracy + 1 / 5)
