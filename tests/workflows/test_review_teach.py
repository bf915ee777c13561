"""Review queue order and actions, disagreements, and teaching mode, on a tiny project with
hand-made predictions (no model needed: the logic is what is tested)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoreview.errors import NotEnoughDataError, ProjectError
from cytoreview.storage.hashing import file_sha256
from cytoreview.storage.images import read_image
from cytoreview.storage.predictions import PredictionInput, PredictionStore
from cytoreview.storage.project import Project
from cytoreview.types import Provenance
from cytoreview.workflows.review import (
    approve,
    disagreements,
    record_call,
    review_queue,
    skip,
)
from cytoreview.workflows.teach import case_weights, next_case, submit_answer, trainee_score
from tests.conftest import cell_image, write_rgb_png

LABELS = ["NILM", "NILM", "HSIL", "HSIL", "LSIL"]


@pytest.fixture
def filled(project: Project, tmp_path: Path) -> Project:
    ids = []
    for i, label in enumerate(LABELS):
        rgb, mask = cell_image(seed=i)
        path = write_rgb_png(tmp_path / f"img{i}.png", rgb)
        rec = project.add_image(path, read_image(path).info, file_sha256(path), actor="t",
                                class_label=label)  # fmt: skip
        ids.append(rec.id)
        project.save_mask(rec.id, mask, Provenance.AUTO, actor="model", uncertainty=0.1 * i)
    classes = list(project.scheme.classes)
    preds = []
    for image_id, label, unc in zip(ids, ["NILM", "HSIL", "HSIL", "HSIL", "NILM"],
                                    [0.2, 0.9, 0.05, 0.3, 0.7], strict=True):  # fmt: skip
        probs = {c: (0.7 if c == label else 0.1) for c in classes}
        preds.append(PredictionInput(image_id, label, probs, unc))
    PredictionStore(project).save_predictions("cls-x", "bethesda", preds, actor="t")
    return project


def test_queue_is_most_uncertain_first_and_skips_go_last(filled: Project) -> None:
    queue = review_queue(filled)
    names = [it.name for it in queue]
    # priority = max(mask uncertainty 0.1*i, prediction uncertainty); ties go by name
    assert names == ["img1", "img4", "img3", "img0", "img2"]
    assert queue[0].priority == pytest.approx(0.9)
    assert "model says HSIL, expert NILM" in queue[0].reasons
    skip(filled, queue[0].image_id, reviewer="dr_a")
    assert [it.name for it in review_queue(filled)][-1] == "img1"


def test_approve_makes_a_new_approved_version_and_leaves_the_queue(filled: Project) -> None:
    first = next(it for it in review_queue(filled) if it.name == "img0")
    version_id = approve(filled, first.image_id, reviewer="dr_a", class_call="NILM")
    versions = filled.mask_versions(first.image_id)
    assert versions[-1].id == version_id and versions[-1].provenance is Provenance.APPROVED
    assert np.array_equal(
        filled.read_mask_version(versions[-1]), filled.read_mask_version(versions[0])
    )
    assert "img0" not in [it.name for it in review_queue(filled)]
    assert "img0" in [it.name for it in review_queue(filled, include_done=True)]
    with pytest.raises(ProjectError, match="no mask to approve"):
        rgb, _ = cell_image(seed=9)
        path = write_rgb_png(filled.root.parent / "x.png", rgb)
        rec = filled.add_image(path, read_image(path).info, file_sha256(path), actor="t")
        approve(filled, rec.id, reviewer="dr_a")


def test_disagreements_use_the_reviewers_call_over_the_label(filled: Project) -> None:
    found = {d.name: d for d in disagreements(filled)}
    assert set(found) == {"img1", "img4"}
    assert found["img1"].expert == "NILM" and found["img1"].model == "HSIL"
    record_call(filled, found["img1"].image_id, "HSIL", reviewer="dr_b")  # the label was wrong
    assert {d.name for d in disagreements(filled)} == {"img4"}


def test_teaching_scores_and_brings_missed_classes_back(filled: Project) -> None:
    rng = np.random.default_rng(0)
    ids = {r.name: r.id for r in filled.images()}
    feedback = submit_answer(filled, "ana", ids["img2"], "NILM", seconds=3.0)  # an HSIL missed
    assert not feedback.correct and feedback.truth == "HSIL" and feedback.model_pred == "HSIL"
    assert feedback.score.n == 1 and feedback.score.accuracy == 0.0
    submit_answer(filled, "ana", ids["img0"], "nilm")
    score = trainee_score(filled, "ana")
    assert score.correct == 1 and score.recall["HSIL"] == 0.0 and score.recall["NILM"] == 1.0
    assert score.confusion[score.class_names.index("HSIL"), score.class_names.index("NILM")] == 1
    weights = case_weights(filled, "ana")
    hsil = weights[ids["img2"]] + weights[ids["img3"]]
    nilm = weights[ids["img0"]] + weights[ids["img1"]]
    assert hsil > 3 * nilm  # the missed class comes back far more often
    drawn = [next_case(filled, "ana", rng) for _ in range(200)]
    share_hsil = sum(d in (ids["img2"], ids["img3"]) for d in drawn) / len(drawn)
    assert share_hsil > 0.5
    assert next_case(filled, "ana", rng, exclude=ids["img2"]) != ids["img2"]
    assert trainee_score(filled, "ben").n == 0  # per trainee


def test_teaching_needs_labels(project: Project) -> None:
    with pytest.raises(NotEnoughDataError, match="labelled"):
        next_case(project, "ana", np.random.default_rng(0))
