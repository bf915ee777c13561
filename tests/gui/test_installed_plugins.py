"""The first-party plugins, as installed by the README's set-up, in the workbench's lists.

No test catalog here: what `installer/setup.sh` installed is what a pathologist sees.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def items(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def test_the_installed_plugins_methods_are_offered_with_their_forms(qtbot) -> None:
    from cytoreview.gui.classifier_panel import ClassifierPanel
    from cytoreview.gui.state import WorkbenchState
    from cytoreview.gui.train_panel import TrainPanel
    from cytoreview.plugin_api import catalog, reset_catalog

    reset_catalog()  # the installed plugins, not a test catalog left by another test
    assert catalog().broken == []
    train = TrainPanel(WorkbenchState(actor="tester"))
    qtbot.addWidget(train)
    assert {"unet", "rse-unet"} <= set(items(train.method))
    train.method.setCurrentText("rse-unet")
    assert {"base_channels", "depth", "use_se"} <= set(train.method_form.widgets)
    assert items(train.preset) == ["none", "chowdary2023"]
    assert train.request().arch == "rse-unet"
    train.method.setCurrentText("unet")
    assert "wubineh2024" in items(train.preset)
    assert list(train.method_form.widgets) == ["encoder", "decoder_width"]
    assert train.generate_dialog.installed and "otsu" in items(train.generate_dialog.generator)
    assert "method" in train.generate_dialog.form.widgets  # otsu's multi-otsu / two-pass
    # Masks from class labels: the XAI generator, with its explanation and grouping choices.
    assert "xai-weak" not in items(train.generate_dialog.generator)
    assert items(train.labels_dialog.generator) == ["xai-weak"] and train.labels_dialog.installed
    assert {"explanation", "grouping", "grabcut"} <= set(train.labels_dialog.form.widgets)
    train.method.setCurrentText("pix2pix")
    assert {"kernel", "base_channels"} <= set(train.method_form.widgets)
    assert "castro-cortes2025" in items(train.preset)
    train.method.setCurrentText("unet")
    panel = ClassifierPanel(WorkbenchState(actor="tester"))
    qtbot.addWidget(panel)
    assert "feature-fusion-mlp" in items(panel.arch)
    panel.arch.setCurrentText("feature-fusion-mlp")
    assert {"vgg19", "lbp", "bovw", "variance"} <= set(panel.arch_form.widgets)
    assert not panel.mask_backbone.isEnabled()  # it reads no mask
