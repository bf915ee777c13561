"""Correcting an image's class in the workbench: the Project table's class cell and the Review
dock's "make it the label"; both go through the audited workflow."""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox

from cytoreview.gui.image_table import CLASS_COLUMN
from cytoreview.storage.predictions import PredictionStore

pytestmark = pytest.mark.gui


def _set_class_entries(project) -> list:
    return [e for e in project.audit_entries() if e.action == "set_class"]


def test_the_class_cell_edits_through_the_workflow(workbench, qtbot) -> None:
    panel, project = workbench.project_panel, workbench.state.project
    name = sorted(workbench.synth.truth)[1]
    record = project.image(name)
    new = next(c for c in project.scheme.classes if c != record.class_label)
    row = panel.proxy.proxy_row_of(record.id)
    index = panel.proxy.index(row, CLASS_COLUMN)
    assert panel.proxy.flags(index) & Qt.ItemFlag.ItemIsEditable
    assert not panel.proxy.flags(panel.proxy.index(row, 0)) & Qt.ItemFlag.ItemIsEditable
    # As a person does it: select the row, F2 on the class cell, pick, Enter.
    panel.table.setCurrentIndex(index)
    panel.table.setFocus()
    qtbot.keyClick(panel.table, Qt.Key.Key_F2)
    combo = panel.table.viewport().findChild(QComboBox)
    assert combo is not None
    assert [combo.itemText(i) for i in range(combo.count())] == list(project.scheme.classes)
    assert combo.currentText() == record.class_label
    combo.setCurrentText(new)
    qtbot.keyClick(combo, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: project.image(name).class_label == new)
    assert panel.proxy.index(row, CLASS_COLUMN).data() == new
    (entry,) = _set_class_entries(project)
    assert entry.actor == "tester" and entry.details["source"] == "project table"
    assert (entry.details["old"], entry.details["new"]) == (record.class_label, new)
    assert any(f"class of {name}: {record.class_label} -> {new}" in text
               for _, text in workbench.messages)  # fmt: skip
    # A refused class (not of the scheme) changes nothing and says why.
    assert panel.set_image_class(record.id, "carcinoma") is None
    assert project.image(name).class_label == new
    assert "valid: NILM" in workbench.messages[-1][1]


def test_the_review_dock_makes_the_experts_call_the_label(workbench, qtbot) -> None:
    project, review = workbench.state.project, workbench.panels["review"]
    name = sorted(workbench.synth.truth)[2]
    record = project.image(name)
    call = next(c for c in project.scheme.classes if c != record.class_label)
    workbench.state.open_image(record.id)
    review.call_combo.setCurrentText(call)
    review.adopt_button.click()
    assert project.image(name).class_label == call
    assert PredictionStore(project).latest_reviews()[record.id].class_call == call
    (entry,) = _set_class_entries(project)
    assert entry.actor == "tester" and entry.details["source"].startswith("review call by tester")
    table = workbench.project_panel
    row = table.model.source_row_of(record.id)
    assert table.model.row(row).class_label == call  # the table follows
    assert f"({call})" in workbench.annotate_panel.title.text()
    # The dock's details are read on a worker thread: they follow a moment later.
    qtbot.waitUntil(lambda: f"class label: {call}" in review.expert_label.text())
