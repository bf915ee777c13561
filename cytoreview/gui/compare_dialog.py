"""Comparing encoders: the dialog that chooses them, and the table of what was measured.

The recipe is the Train form's (method, preset, epochs, time budget, device...): the dialog only
chooses which encoders; the train panel runs the job (progress, Stop) through
:func:`cytoreview.workflows.compare.compare_encoders`, the same use case as
``cytoreview compare-encoders``.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QGridLayout,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cytoreview.gui.help_texts import INTRO_STYLE
from cytoreview.plugin_api import describe_settings, find
from cytoreview.workflows.compare import PAPER_ENCODERS, SCORE_KEYS, EncoderComparison

__all__ = ["CompareDialog", "ComparisonTable", "encoder_choices"]

_INTRO = (
    "Train the chosen method once per encoder, with the Train form's recipe (method, preset, "
    "epochs, time budget, device) on the same painted masks and the same validation split, "
    "then score each on that split at native resolution. Checked by default: the five "
    "backbones Wubineh et al. compared. Each encoder is a full training run: on a CPU, allow "
    "minutes per encoder (set a time budget in the Train form)."
)


def encoder_choices(method: str) -> tuple[str, ...]:
    """The encoders a segmenter offers (its ``encoder`` setting's choices; empty: none)."""
    specs = {s.name: s for s in describe_settings(find("segmenter", method).settings)}
    spec = specs.get("encoder")
    return tuple(spec.choices or ()) if spec is not None else ()


class CompareDialog(QDialog):
    """Check boxes of the method's encoders; the paper's five checked."""

    def __init__(self, method: str, recipe: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Compare encoders of {method}")
        layout = QVBoxLayout(self)
        intro = QLabel(_INTRO)
        intro.setWordWrap(True)
        intro.setStyleSheet(INTRO_STYLE)
        layout.addWidget(intro)
        recipe_line = QLabel(f"Recipe: {recipe}")
        recipe_line.setWordWrap(True)
        layout.addWidget(recipe_line)
        grid = QGridLayout()
        self.boxes: dict[str, QCheckBox] = {}
        for i, name in enumerate(encoder_choices(method)):
            box = QCheckBox(name)
            box.setChecked(name in PAPER_ENCODERS)
            box.toggled.connect(self._update)
            self.boxes[name] = box
            grid.addWidget(box, i // 3, i % 3)
        layout.addLayout(grid)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.go = buttons.addButton("Compare", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self._update()

    def encoders(self) -> list[str]:
        """The checked encoders, in the list's order."""
        return [name for name, box in self.boxes.items() if box.isChecked()]

    def _update(self) -> None:
        self.go.setEnabled(len(self.encoders()) >= 1)


class ComparisonTable(QDialog):
    """The measured table: one row per encoder, where the CSV and JSON were written."""

    def __init__(self, report: EncoderComparison, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Encoder comparison")
        self.resize(900, 320)
        layout = QVBoxLayout(self)
        head = QLabel(
            f"{report.n_train} training / {report.n_val} validation images, one split for "
            "all; scores are means over the validation images at native resolution"
            + (" (stopped before the end)" if report.cancelled else "")
        )
        head.setWordWrap(True)
        layout.addWidget(head)
        columns = ["encoder", "status", "minutes", *SCORE_KEYS]
        self.table = QTableWidget(len(report.rows), len(columns))
        self.table.setHorizontalHeaderLabels([c.replace("_", " ") for c in columns])
        for r, row in enumerate(report.rows):
            cells = [row.encoder, row.status, f"{row.seconds / 60:.1f}"]
            cells += [f"{row.scores[k]:.3f}" if k in row.scores else "—" for k in SCORE_KEYS]
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        layout.addWidget(self.table)
        if report.table_csv is not None:
            where = QLabel(f"Written to {report.table_csv} (and .json)")
            where.setWordWrap(True)
            layout.addWidget(where)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
