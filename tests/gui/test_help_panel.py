"""The help dock's system check: the same report as ``cytoreview doctor``, for the open project."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QPlainTextEdit

from cytoreview.gui.help_panel import HelpPanel
from cytoreview.workflows import doctor_probes
from cytoreview.workflows.doctor_probes import QtFacts
from tests.conftest import PATIENCE_S

pytestmark = pytest.mark.gui


def test_system_check_shows_the_doctor_report_of_the_open_project(workbench, monkeypatch) -> None:
    # The Qt probe of this display is the CLI test's business; here it must not start a second
    # QApplication next to the test's one, so its facts are given.
    monkeypatch.setattr(doctor_probes, "qt_facts", lambda: QtFacts(":99", "xcb", "4.5", "GPU X"))
    panel = workbench.panels["help"]
    assert isinstance(panel, HelpPanel)
    assert workbench.docks["help"].windowTitle() == "Keys"
    view = panel.report_view
    assert isinstance(view, QPlainTextEdit) and view.isReadOnly()
    panel.check_button.click()
    assert not panel.check_button.isEnabled()  # one check at a time
    assert panel.runner.wait(PATIENCE_S)
    assert panel.check_button.isEnabled()
    text = view.toPlainText()
    report = panel.report
    assert report is not None and text.endswith(report.summary)
    names = [c.name for c in report.checks]
    assert names[0] == "python" and {"torch", "onnxruntime", "opengl", "catalog"} <= set(names)
    catalog = next(c for c in report.checks if c.name == "catalog")
    assert catalog.status == "OK" and str(workbench.synth.root) in catalog.detail
    assert "OK    opengl       Qt xcb, OpenGL 4.5 (GPU X)" in text
    for check in report.checks:  # every line of the report is in the text, fixes too
        assert check.detail in text and (not check.fix or check.fix in text)
