"""Masks without painting: the train panel's choice of a mask generator and its settings.

The generators are the plugin catalog's (none is built in); the form of each one's settings is
built from its settings dataclass. With none installed the box stays, disabled, and its tooltip
says how to get one: a person learns that such a method exists.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QPushButton, QVBoxLayout, QWidget

from cytoreview.gui.help_texts import TOOLTIPS
from cytoreview.gui.progress_widgets import compact
from cytoreview.gui.settings_form import SettingsForm, fill_methods
from cytoreview.plugin_api import find

__all__ = ["GenerateBox"]


class GenerateBox(QGroupBox):
    """A mask generator list, the chosen one's settings and the button that runs it.

    The panel connects :attr:`button` to its job; this box only chooses.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Masks without painting", parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(4)
        self.generator = compact(QComboBox())
        methods = fill_methods(self.generator, "mask-generator")
        #: Whether any mask generator is installed.
        self.installed = bool(methods)
        self.form = SettingsForm(methods[0] if methods else None)
        self.button = QPushButton("Generate masks")
        row = QHBoxLayout()
        row.addWidget(self.generator, 1)
        row.addWidget(self.button)
        layout.addLayout(row)
        layout.addWidget(self.form)
        if self.installed:
            self.generator.setToolTip(TOOLTIPS["generator"])
            self.button.setToolTip(TOOLTIPS["generate_masks"])
            self.generator.currentTextChanged.connect(
                lambda name: self.form.set_contribution(find("mask-generator", name))
            )
        else:
            self.generator.addItem("none installed")
            self.generator.setEnabled(False)
            self.button.setEnabled(False)
            for widget in (self, self.generator, self.button):
                widget.setToolTip(TOOLTIPS["no_generator"])

    def name(self) -> str | None:
        """The chosen generator (None when none is installed)."""
        return self.generator.currentText() if self.installed else None

    def values(self) -> dict[str, Any]:
        """Its settings that differ from the defaults."""
        return self.form.values()
