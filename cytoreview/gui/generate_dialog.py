"""Masks without painting: the dialog that chooses a mask generator and its settings.

The generators are the plugin catalog's (none is built in); each one's settings form is built
from its settings dataclass. "Generate masks" lists the generators that work from the image
alone; the same dialog opened as "Masks from class labels" lists those that learn from the
project's class labels. The dialog only chooses: the train
panel runs the job (progress, Stop, the table refreshed), as it runs auto-segmentation.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from cytoreview.gui.help_texts import INTRO_STYLE, PANEL_HELP, TOOLTIPS
from cytoreview.gui.settings_form import SettingsForm, fill_methods
from cytoreview.plugin_api import find

__all__ = ["GenerateDialog"]


class GenerateDialog(QDialog):
    """A mask generator list and the chosen one's description and settings.

    Kept by the panel between uses, so the last choice and settings are offered again.
    """

    def __init__(self, parent: QWidget | None = None, *, from_labels: bool = False) -> None:
        super().__init__(parent)
        #: Whether this dialog offers the generators that learn from class labels (the
        #: "Masks from class labels" action) rather than every generator.
        self.from_labels = from_labels
        title = "Masks from class labels" if from_labels else "Generate masks without painting"
        self.setWindowTitle(title)
        self.setMinimumWidth(420)
        layout = QVBoxLayout(self)
        intro = QLabel(PANEL_HELP["from_labels" if from_labels else "generate"])
        intro.setWordWrap(True)
        intro.setStyleSheet(INTRO_STYLE)
        layout.addWidget(intro)
        self.generator = QComboBox()
        self.generator.setToolTip(TOOLTIPS["generator"])
        # Two dialogs, two kinds of generator: from the image alone, or learnt from labels.
        methods = fill_methods(
            self.generator, "mask-generator", where=lambda c: c.uses_labels == from_labels
        )
        #: Whether any mask generator is installed (else the panel's button is disabled).
        self.installed = bool(methods)
        row = QFormLayout()
        row.addRow("Generator", self.generator)
        layout.addLayout(row)
        self.form = SettingsForm(methods[0] if methods else None, describe=True)
        layout.addWidget(self.form)
        self.generator.currentTextChanged.connect(
            lambda name: self.form.set_contribution(find("mask-generator", name))
        )
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.generate_button = buttons.addButton("Generate", QDialogButtonBox.ButtonRole.AcceptRole)
        self.generate_button.setToolTip(
            TOOLTIPS["masks_from_labels" if from_labels else "generate_masks"]
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def name(self) -> str | None:
        """The chosen generator (None when none is installed)."""
        return self.generator.currentText() if self.installed else None

    def values(self) -> dict[str, Any]:
        """Its settings that differ from the defaults."""
        return self.form.values()
