"""A method's settings form, built from its settings dataclass.

Every contribution (segmenter, classifier, mask generator) declares its settings once, as a
dataclass of :func:`cytoreview.plugin_api.option` fields; the command line's flags and this
form are both built from that one definition (:func:`cytoreview.plugin_api.describe_settings`),
so a default, a range or a help text cannot differ between the two front ends, and the
workbench has no code of its own for any method.

One widget per setting, by type: ``int`` a spin box, ``float`` a decimal spin box, ``bool`` a
check box, a setting with ``choices`` a drop-down, any other ``str`` a text field. Ranges are
the widgets' own, so a value out of range cannot be typed; the help text is the tooltip.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from cytoreview.errors import ConfigError
from cytoreview.gui.help_texts import INTRO_STYLE
from cytoreview.gui.progress_widgets import compact
from cytoreview.plugin_api import Contribution, SettingSpec, catalog, describe_settings

__all__ = ["SettingsForm", "fill_methods", "method_tooltip"]

#: A spin box's bounds when a setting names none (QSpinBox holds a C int).
INT_LIMIT = 2**31 - 1
FLOAT_LIMIT = 1e9
#: Decimals a float field may show at most (a learning rate of 1e-6 still fits).
MAX_DECIMALS = 8


def method_tooltip(contribution: Contribution) -> str:
    """What a method is, who made it and what it follows: the tooltip of its list entry."""
    lines = [contribution.description]
    if contribution.plugin and contribution.plugin != "cytoreview":
        lines.append(f"plugin {contribution.plugin} {contribution.version}")
    if contribution.citation:
        lines.append(contribution.citation)
    return "\n".join(lines)


def _label(name: str) -> str:
    """``min_area_px`` -> ``Min area px``: a setting's name as a form label."""
    words = name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _decimals(number: float) -> int:
    """Decimals needed to show ``number`` exactly (up to :data:`MAX_DECIMALS`)."""
    for places in range(MAX_DECIMALS + 1):
        if math.isclose(round(number, places), number, rel_tol=0, abs_tol=1e-12):
            return places
    return MAX_DECIMALS


def _float_step(default: float, low: float | None, high: float | None) -> float:
    """An arrow-key step a tenth of the default's order of magnitude (or of the range)."""
    scale = abs(default)
    if scale == 0 and low is not None and high is not None:
        scale = (high - low) / 10
    if scale == 0 or not math.isfinite(scale):
        return 0.1
    return 10.0 ** (math.floor(math.log10(scale)) - 1)


class SettingsForm(QWidget):
    """The settings of one contribution as a form; empty for a method that has none.

    Parameters
    ----------
    contribution
        The method whose settings to show (None: an empty form).
    describe
        Show the method's one-line description above its settings.

    Signals
    -------
    changed()
        A value was changed (by the user or by :meth:`set_values`).
    """

    changed = Signal()

    def __init__(
        self,
        contribution: Contribution | None = None,
        *,
        describe: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._describe = describe
        self._contribution: Contribution | None = None
        self._specs: dict[str, SettingSpec] = {}
        #: The field of each setting, by name (for tests and for panels that disable one).
        self.widgets: dict[str, QWidget] = {}
        self._outer = QVBoxLayout(self)
        self._outer.setContentsMargins(0, 0, 0, 0)
        self._outer.setSpacing(2)
        self._body: QWidget | None = None
        self.set_contribution(contribution)

    # -- building ------------------------------------------------------------------------------
    @property
    def contribution(self) -> Contribution | None:
        """The method shown."""
        return self._contribution

    @property
    def specs(self) -> list[SettingSpec]:
        """The settings shown, in declaration order."""
        return list(self._specs.values())

    def set_contribution(self, contribution: Contribution | None) -> None:
        """Show the settings of ``contribution`` (at their defaults) instead of the current ones."""
        if self._body is not None:
            self._outer.removeWidget(self._body)
            self._body.deleteLater()  # with every field and label of the old method
        self._contribution = contribution
        self._specs = {}
        self.widgets = {}
        self._body = QWidget(self)
        layout = QVBoxLayout(self._body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        if contribution is not None:
            if self._describe:
                about = QLabel(contribution.description)
                about.setWordWrap(True)
                about.setStyleSheet(INTRO_STYLE)
                about.setToolTip(method_tooltip(contribution))
                layout.addWidget(about)
            self._specs = {spec.name: spec for spec in describe_settings(contribution.settings)}
            if self._specs:
                layout.addLayout(self._grid(contribution))
        self._outer.addWidget(self._body)
        # A method without settings (or no method) takes no room in the panel.
        self.setVisible(bool(self._specs) or (self._describe and contribution is not None))

    def _grid(self, contribution: Contribution) -> QGridLayout:
        grid = QGridLayout()
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(6)
        grid.setVerticalSpacing(2)
        for row, spec in enumerate(self._specs.values()):
            widget = self._field(spec)
            tip = f"{spec.help} (default {self._shown(spec, spec.default)})".strip()
            label = QLabel(spec.label or _label(spec.name))
            label.setToolTip(tip)
            label.setBuddy(widget)
            widget.setToolTip(tip)
            widget.setObjectName(f"{contribution.name}.{spec.name}")
            grid.addWidget(label, row, 0)
            grid.addWidget(widget, row, 1)
            self.widgets[spec.name] = widget
        grid.setColumnStretch(1, 1)  # the fields take the width, not the labels
        return grid

    def _field(self, spec: SettingSpec) -> QWidget:
        """The widget of one setting, at its default, that reports its changes."""
        if spec.type is bool:
            box = QCheckBox()
            box.setChecked(bool(spec.default))
            box.toggled.connect(self.changed)
            return box
        if spec.choices:
            combo = compact(QComboBox())
            for choice in spec.choices:
                combo.addItem(str(choice), choice)  # the value itself travels as item data
            combo.setCurrentIndex(list(spec.choices).index(spec.default))
            combo.currentIndexChanged.connect(self.changed)
            return combo
        if spec.type is int:
            spin = compact(QSpinBox())
            low = -INT_LIMIT if spec.low is None else math.ceil(spec.low)
            high = INT_LIMIT if spec.high is None else math.floor(spec.high)
            spin.setRange(int(max(low, -INT_LIMIT)), int(min(high, INT_LIMIT)))
            spin.setValue(int(spec.default))
            spin.valueChanged.connect(self.changed)
            return spin
        if spec.type is float:
            dspin = compact(QDoubleSpinBox())
            low = -FLOAT_LIMIT if spec.low is None else float(spec.low)
            high = FLOAT_LIMIT if spec.high is None else float(spec.high)
            step = _float_step(float(spec.default), spec.low, spec.high)
            # Enough decimals for the default, the bounds and one arrow step, so that the form
            # shows (and hands back) exactly the default the CLI would use.
            places = max(2, *(_decimals(v) for v in (float(spec.default), low, high, step)))
            dspin.setDecimals(min(places, MAX_DECIMALS))
            dspin.setRange(low, high)
            dspin.setSingleStep(step)
            dspin.setValue(float(spec.default))
            dspin.valueChanged.connect(self.changed)
            return dspin
        line = compact(QLineEdit(str(spec.default)))
        line.textChanged.connect(self.changed)
        return line

    @staticmethod
    def _shown(spec: SettingSpec, value: Any) -> str:
        if spec.type is bool:
            return "on" if value else "off"
        return str(value)

    # -- values --------------------------------------------------------------------------------
    def value(self, name: str) -> Any:
        """The current value of setting ``name``, of the setting's type."""
        spec, widget = self._specs[name], self.widgets[name]
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        if isinstance(widget, QComboBox):
            return widget.currentData()
        if isinstance(widget, QSpinBox | QDoubleSpinBox):
            return spec.type(widget.value())
        assert isinstance(widget, QLineEdit)
        return widget.text()

    def all_values(self) -> dict[str, Any]:
        """Every setting's current value."""
        return {name: self.value(name) for name in self._specs}

    def values(self) -> dict[str, Any]:
        """The settings that differ from their defaults.

        What a request carries: a form left as it opened asks for ``{}``, exactly what the
        command line asks for when no setting flag is given, so the two requests are equal.
        """
        return {
            name: value
            for name, value in self.all_values().items()
            if value != self._specs[name].default
        }

    def set_values(self, values: Mapping[str, Any]) -> None:
        """Show ``values`` (checked as the command line checks them); the rest stay as they are.

        Raises
        ------
        ConfigError
            For a name the method does not have, or a value of the wrong type or out of range:
            a preset's typo must not silently become a default.
        """
        owner = self._contribution.name if self._contribution else "no method"
        unknown = sorted(set(values) - set(self._specs))
        if unknown:
            raise ConfigError(
                f"{owner}: unknown setting(s) {', '.join(unknown)}; valid: "
                + (", ".join(self._specs) or "none")
            )
        checked = {name: self._specs[name].check(value, owner) for name, value in values.items()}
        for name, value in checked.items():
            widget = self.widgets[name]
            if isinstance(widget, QCheckBox):
                widget.setChecked(value)
            elif isinstance(widget, QComboBox):
                widget.setCurrentIndex(widget.findData(value))
            elif isinstance(widget, QSpinBox | QDoubleSpinBox):
                widget.setValue(value)
            else:
                assert isinstance(widget, QLineEdit)
                widget.setText(value)

    def reset(self) -> None:
        """Every setting back to its default."""
        self.set_values({spec.name: spec.default for spec in self._specs.values()})


def fill_methods(
    combo: QComboBox,
    kind: str,
    default: str | None = None,
    where: Callable[[Contribution], bool] | None = None,
) -> list[Contribution]:
    """Fill ``combo`` with the installed methods of ``kind`` (the plugin catalog's order).

    Each entry's tooltip says what the method is and whom it follows; ``default`` is chosen
    when installed; ``where`` keeps only the methods it accepts. Returns the methods listed
    (none: the combo is left empty).
    """
    methods = [c for c in catalog().contributions(kind) if where is None or where(c)]
    combo.clear()
    for row, contribution in enumerate(methods):
        combo.addItem(contribution.name)
        combo.setItemData(row, method_tooltip(contribution), Qt.ItemDataRole.ToolTipRole)
    if default is not None and default in [c.name for c in methods]:
        combo.setCurrentText(default)
    return methods
