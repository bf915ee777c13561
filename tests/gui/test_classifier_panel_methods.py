"""The classifier panel's methods and their settings come from the plugin catalog."""

from __future__ import annotations

import pytest

from cytoreview.defaults import CLS

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot, test_plugins):
    from cytoreview.gui.classifier_panel import ClassifierPanel
    from cytoreview.gui.state import WorkbenchState

    widget = ClassifierPanel(WorkbenchState(actor="tester"))
    qtbot.addWidget(widget)
    return widget


def cli_request(*flags: str):
    """What ``train-cls proj FLAGS`` asks for (the parser is built from the current catalog)."""
    from cytoreview.cli.commands_cls import train_request
    from cytoreview.cli.main import build_parser

    return train_request(build_parser().parse_args(["train-cls", "proj", *flags]))


def test_the_methods_and_their_settings_come_from_the_catalog(panel, test_plugins) -> None:
    listed = [panel.arch.itemText(i) for i in range(panel.arch.count())]
    assert listed == test_plugins.names("classifier")
    assert "declared-mlp" in listed and panel.arch.currentText() == CLS.arch
    assert panel.arch_form.isHidden() and panel.request() == cli_request()  # no settings
    panel.arch.setCurrentText("declared-mlp")
    assert list(panel.arch_form.widgets) == ["hidden"] and not panel.arch_form.isHidden()
    assert panel.request() == cli_request("--arch", "declared-mlp")
    panel.arch_form.widgets["hidden"].setValue(256)
    request = panel.request()
    assert (request.arch, dict(request.settings)) == ("declared-mlp", {"hidden": 256})
    assert request == cli_request("--arch", "declared-mlp", "--declared-mlp-hidden", "256")
    panel.arch.setCurrentText("fusion-gap")
    assert panel.arch_form.isHidden() and dict(panel.request().settings) == {}


def test_the_mask_backbone_is_offered_only_to_a_method_that_reads_the_mask(panel) -> None:
    assert panel.mask_backbone.isEnabled() and panel.mask_backbone.currentText() == "as image"
    panel.mask_backbone.setCurrentText("resnet50")
    assert panel.request() == cli_request("--mask-backbone", "resnet50")
    for arch in ("image-only", "declared-mlp"):  # uses_mask False
        panel.arch.setCurrentText(arch)
        assert not panel.mask_backbone.isEnabled()
        assert "does not read the mask" in panel.mask_backbone.toolTip()
        assert not panel.measurements.isEnabled()  # measurements are read from masks
        assert "read from masks" in panel.measurements.toolTip()
        assert panel.request() == cli_request("--arch", arch)  # the hidden choice is not sent
    panel.arch.setCurrentText("fusion-flatten")
    assert panel.mask_backbone.isEnabled() and panel.measurements.isEnabled()
