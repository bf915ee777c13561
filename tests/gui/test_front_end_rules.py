"""The workbench's docks apply the workflows' rules, the same ones the CLI applies.

Each test here failed before the rule moved out of the dock: the training forms' defaults
(the mask backbone was tied to the image backbone in the GUI only), the device shown while
training (parsed out of the progress text), approving from the Annotate dock (no review
record), the Review dock's measurements (on the GUI thread) and the Project table's rows
(joined in the GUI).
"""

from __future__ import annotations

import threading

import pytest

from cytoreview.cli.main import build_parser
from cytoreview.defaults import CLS
from cytoreview.storage.predictions import PredictionStore
from cytoreview.types import Progress, Provenance
from tests.conftest import PATIENCE_MS

pytestmark = pytest.mark.gui


@pytest.fixture
def state(qtbot):
    from cytoreview.gui.state import WorkbenchState

    return WorkbenchState(actor="tester")


# -- training settings: one source of defaults ---------------------------------------------------
def test_the_train_form_asks_for_what_train_seg_asks_for_without_flags(state, qtbot) -> None:
    from cytoreview.cli.commands_seg import train_request
    from cytoreview.gui.train_panel import TrainPanel

    panel = TrainPanel(state)
    qtbot.addWidget(panel)
    cli = train_request(build_parser().parse_args(["train-seg", "proj"]))
    assert panel.request() == cli


@pytest.mark.parametrize("backbone", [CLS.backbone, "resnet50"])
def test_the_classifier_form_asks_for_what_train_cls_asks_for(state, qtbot, backbone) -> None:
    """Every shared setting, the mask backbone too: the form has none of its own, so the rule
    that picks it must be the one the CLI applies when ``--mask-backbone`` is left out."""
    from cytoreview.cli.commands_cls import train_request
    from cytoreview.gui.classifier_panel import ClassifierPanel

    panel = ClassifierPanel(state)
    qtbot.addWidget(panel)
    panel.backbone.setCurrentText(backbone)
    cli = train_request(build_parser().parse_args(["train-cls", "proj", "--backbone", backbone]))
    assert panel.request() == cli
    # The measurement model: on by default in both, and switched off alike.
    assert cli.measurements is CLS.measurements and panel.measurements.isEnabled()
    panel.measurements.setChecked(False)
    off = build_parser().parse_args(["train-cls", "proj", "--backbone", backbone,
                                     "--no-measurements"])  # fmt: skip
    assert panel.request() == train_request(off)


def test_the_mask_backbone_rule() -> None:
    """Asked for > the parent's (fine-tuning) > the image branch's."""
    assert CLS.mask_backbone_for("resnet50") == "resnet50"
    assert CLS.mask_backbone_for("resnet50", "resnet18") == "resnet18"
    assert CLS.mask_backbone_for("resnet50", None, parent="resnet34") == "resnet34"
    assert CLS.mask_backbone_for("resnet50", "resnet18", parent="resnet34") == "resnet18"


# -- the device in use comes from the event, not from its text -----------------------------------
def test_the_train_panel_shows_the_device_the_event_names(state, qtbot) -> None:
    from cytoreview.gui.train_panel import TrainPanel

    panel = TrainPanel(state)
    qtbot.addWidget(panel)
    panel.on_progress(Progress("train", 0, 10, "starting", device="Test GPU (cuda:0), bf16"))
    assert panel.device_label.text() == "Device: Test GPU (cuda:0), bf16"
    # A message that reads like one names no device: the text is for people, never parsed.
    panel.on_progress(Progress("segment", 0, 3, "3 image(s) to segment on the moon"))
    assert panel.device_label.text() == "Device: Test GPU (cuda:0), bf16"
    panel.on_progress(Progress("segment", 0, 3, "3 image(s) to segment", device="CPU (4 cores)"))
    assert panel.device_label.text() == "Device: CPU (4 cores)"


# -- approving: one path, the same records from either dock --------------------------------------
def _approvals(project, image_id: int) -> list[tuple[str, int, str]]:
    rows = project.catalog.query(
        "SELECT reviewer, mask_version_id, decision FROM reviews WHERE image_id = ? ORDER BY id",
        (image_id,),
    )
    return [(r["reviewer"], r["mask_version_id"], r["decision"]) for r in rows]


def test_approving_from_either_dock_writes_the_version_and_the_review(workbench, qtbot) -> None:
    project, names = workbench.state.project, sorted(workbench.synth.truth)
    first, second = (project.image(n).id for n in names[:2])
    for image_id in (first, second):
        project.save_mask(image_id, workbench.synth.truth[project.image(image_id).name],
                          Provenance.AUTO, actor="model")  # fmt: skip
    workbench.state.notify_masks_changed(None)

    workbench.state.open_image(first)
    version = workbench.annotate_panel.approve()
    assert version.provenance is Provenance.APPROVED
    assert _approvals(project, first) == [("tester", version.id, "approve")]
    # Approving again adds no version, but the decision is logged, as the Review dock logs it.
    assert workbench.annotate_panel.approve().id == version.id
    assert _approvals(project, first) == [("tester", version.id, "approve")] * 2

    workbench.state.open_image(second)
    version_id = workbench.panels["review"].accept()
    assert project.mask_versions(second)[-1].id == version_id
    assert project.mask_versions(second)[-1].provenance is Provenance.APPROVED
    assert _approvals(project, second) == [("tester", version_id, "approve")]
    assert PredictionStore(project).latest_reviews().get(second) is None  # no class call made


# -- the Review dock's details: one workflow call, on a worker thread -----------------------------
def test_the_review_dock_measures_off_the_gui_thread(workbench, qtbot, monkeypatch) -> None:
    from cytoreview.workflows import review_data

    measured_on: list[threading.Thread] = []
    measure = review_data.measure_image

    def spy(*args, **kwargs):
        measured_on.append(threading.current_thread())
        return measure(*args, **kwargs)

    monkeypatch.setattr(review_data, "measure_image", spy)
    project, review = workbench.state.project, workbench.panels["review"]
    name = sorted(workbench.synth.truth)[3]
    image_id = project.image(name).id
    project.save_mask(image_id, workbench.synth.truth[name], Provenance.AUTO, actor="model")
    with qtbot.waitSignal(review.details_shown, timeout=PATIENCE_MS,
                          check_params_cb=lambda i: i == image_id):  # fmt: skip
        workbench.state.open_image(image_id)
    assert measured_on and threading.main_thread() not in measured_on
    # What the dock shows is the workflow's answer, which the CLI or a report can ask too.
    expected = review_data.image_details(project, image_id)
    assert review.details == expected
    assert review.cells.rowCount() == len(expected.measurements.cells) >= 1
    assert (
        review.expert_label.text() == f"Expert call: none yet; class label: {expected.class_label}"
    )


# -- the Project table's rows: the workflow's join -------------------------------------------------
def test_the_project_table_shows_the_workflows_rows(workbench) -> None:
    from cytoreview.workflows.status import image_rows, mask_states

    project, panel = workbench.state.project, workbench.project_panel
    names = sorted(workbench.synth.truth)
    ids = [project.image(n).id for n in names[:2]]
    project.save_mask(ids[0], workbench.synth.truth[names[0]], Provenance.AUTO, actor="model",
                      uncertainty=0.4)  # fmt: skip
    classes = list(project.scheme.classes)
    probs = {c: (0.7 if c == classes[1] else 0.1) for c in classes}
    from cytoreview.storage.predictions import PredictionInput

    PredictionStore(project).save_predictions(
        "cls-hand", "bethesda", [PredictionInput(ids[1], classes[1], probs, 0.3)], actor="t"
    )
    panel.reload()
    shown = [panel.model.row(i) for i in range(panel.model.rowCount())]
    assert shown == image_rows(project)
    assert shown[panel.model.source_row_of(ids[1])].prediction == f"{classes[1]} 70%"
    # A mask saved later changes its row in place, as the workflow says.
    project.save_mask(ids[1], workbench.synth.truth[names[1]], Provenance.MANUAL, actor="t")
    workbench.state.notify_masks_changed([ids[1]])
    row = panel.model.row(panel.model.source_row_of(ids[1]))
    state = mask_states(project, [ids[1]])[ids[1]]
    assert (
        (row.status, row.mask_uncertainty) == (state.status, state.uncertainty) == ("manual", None)
    )
