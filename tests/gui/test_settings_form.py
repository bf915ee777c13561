"""A method's settings form is built from its settings dataclass: widgets, ranges, values."""

from __future__ import annotations

import pytest

from cytoreview.errors import ConfigError
from cytoreview.plugin_api import Contribution, describe_settings
from tests.plugins.form_methods import EveryKindSettings, HeadSettings

pytestmark = pytest.mark.gui


def declared(settings: type, name: str = "every-kind-net") -> Contribution:
    return Contribution("segmenter", name, "a test method", "tests.plugins.form_methods:X",
                        settings=settings)  # fmt: skip


@pytest.fixture
def form(qtbot):
    from cytoreview.gui.settings_form import SettingsForm

    widget = SettingsForm(declared(EveryKindSettings))
    qtbot.addWidget(widget)
    return widget


def test_one_widget_per_setting_by_type_with_the_help_as_tooltip(form) -> None:
    from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLabel, QLineEdit, QSpinBox

    kinds = {name: type(widget) for name, widget in form.widgets.items()}
    assert kinds == {"depth": QSpinBox, "lr_scale": QDoubleSpinBox, "squeeze": QCheckBox,
                     "norm": QComboBox, "tag": QLineEdit}  # fmt: skip
    depth = form.widgets["depth"]
    assert (depth.minimum(), depth.maximum(), depth.value()) == (2, 6, 4)
    norm = form.widgets["norm"]
    assert [norm.itemText(i) for i in range(norm.count())] == ["batch", "group", "none"]
    for spec in describe_settings(EveryKindSettings):
        assert form.widgets[spec.name].toolTip().startswith(spec.help)
    labels = {w.text(): w for w in form.findChildren(QLabel)}
    assert labels["Lr scale"].buddy() is form.widgets["lr_scale"]
    assert labels["Lr scale"].toolTip() == form.widgets["lr_scale"].toolTip()
    assert labels["SE blocks"].buddy() is form.widgets["squeeze"]  # the setting's own label


def test_the_defaults_ask_for_nothing_and_changes_round_trip(form) -> None:
    assert form.values() == {}  # what the CLI asks for without a setting flag
    assert form.all_values() == {"depth": 4, "lr_scale": 0.005, "squeeze": True,
                                 "norm": "batch", "tag": ""}  # fmt: skip
    changed = {"depth": 5, "lr_scale": 0.0125, "squeeze": False, "norm": "none", "tag": "run 7"}
    form.set_values(changed)
    assert form.values() == changed
    assert all(type(v) is type(changed[k]) for k, v in form.values().items())
    form.widgets["norm"].setCurrentText("batch")  # back to its default: no longer asked for
    assert "norm" not in form.values()
    form.reset()
    assert form.values() == {}


def test_a_value_out_of_range_cannot_be_entered(form, qtbot) -> None:
    from qtpy.QtCore import Qt

    depth, scale = form.widgets["depth"], form.widgets["lr_scale"]
    depth.setValue(60)
    scale.setValue(-3.0)
    assert (depth.value(), scale.value()) == (6, 0.0001)
    depth.lineEdit().selectAll()
    qtbot.keyClicks(depth, "9")  # typing is refused too
    qtbot.keyClick(depth, Qt.Key.Key_Enter)
    assert 2 <= depth.value() <= 6
    with pytest.raises(ConfigError, match="depth"):
        form.set_values({"depth": 1})  # a preset's bad value is an error, not a clamp
    with pytest.raises(ConfigError, match="unknown setting"):
        form.set_values({"detph": 3})
    with pytest.raises(ConfigError, match="valid: batch, group, none"):
        form.set_values({"norm": "layer"})


def test_a_small_float_keeps_its_exact_default() -> None:
    """A learning rate of 1e-5 must not show (and come back) as 0.00."""
    from dataclasses import dataclass

    from cytoreview.gui.settings_form import SettingsForm
    from cytoreview.plugin_api import option

    @dataclass(frozen=True)
    class Rates:
        lr: float = option(1e-5, "learning rate", low=0.0)
        momentum: float = option(0.9, "momentum")

    form = SettingsForm(declared(Rates))
    assert form.values() == {}
    assert form.widgets["lr"].singleStep() == pytest.approx(1e-6)
    form.set_values({"lr": 3e-5})
    assert form.values() == {"lr": pytest.approx(3e-5)}
    form.deleteLater()


def test_switching_the_method_swaps_the_form(form, qtbot) -> None:
    form.set_values({"depth": 3})
    old = form.widgets["depth"]
    with qtbot.waitSignal(old.destroyed, timeout=2000):
        form.set_contribution(declared(HeadSettings, "declared-mlp"))
    assert list(form.widgets) == ["hidden"] and form.values() == {}
    assert not form.isHidden()
    # A method without settings takes no room at all.
    form.set_contribution(Contribution("classifier", "plain", "no settings", "m:x"))
    assert form.widgets == {} and form.values() == {} and form.isHidden()


def test_every_installed_method_has_a_form_at_its_defaults(qtbot, test_plugins) -> None:
    from cytoreview.gui.settings_form import SettingsForm

    for kind in ("segmenter", "classifier", "mask-generator"):
        for contribution in test_plugins.contributions(kind):
            form = SettingsForm(contribution)
            qtbot.addWidget(form)
            specs = describe_settings(contribution.settings)
            assert list(form.widgets) == [s.name for s in specs]
            assert form.all_values() == {s.name: s.default for s in specs}
            assert form.values() == {}
