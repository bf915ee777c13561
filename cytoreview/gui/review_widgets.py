"""Small widgets of the review and teaching panels: class probabilities, cell measurements."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from qtpy.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QLabel,
    QProgressBar,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from cytoreview.morphometry.measure import ImageMeasurements

#: Columns of the cell table (header, unit-free).
CELL_COLUMNS = ("cell", "nucleus", "cytoplasm", "N:C", "circularity", "mean grey")


class ProbabilityBars(QWidget):
    """One bar per class with the model's probability; the predicted class is bold."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._grid = QGridLayout(self)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self._grid.setVerticalSpacing(2)
        self.bars: dict[str, QProgressBar] = {}
        self._labels: dict[str, QLabel] = {}

    def set_classes(self, classes: Sequence[str]) -> None:
        """Rebuild the rows for another class scheme."""
        if list(self.bars) == list(classes):
            return
        while self._grid.count():
            widget = self._grid.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        self.bars, self._labels = {}, {}
        for i, name in enumerate(classes):
            label = QLabel(name)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setMaximumHeight(16)
            self._grid.addWidget(label, i, 0)
            self._grid.addWidget(bar, i, 1)
            self.bars[name], self._labels[name] = bar, label

    def show_probabilities(self, probabilities: dict[str, float], predicted: str | None) -> None:
        """Fill the bars (empty and "—" for classes without a probability)."""
        for name, bar in self.bars.items():
            p = probabilities.get(name)
            bar.setValue(0 if p is None else round(1000 * float(p)))
            bar.setFormat("—" if p is None else f"{100 * float(p):.1f} %")
            self._labels[name].setStyleSheet("font-weight: bold" if name == predicted else "")

    def values(self) -> dict[str, float]:
        """What the bars show now, in [0, 1] (for tests and screenshots)."""
        return {name: bar.value() / 1000 for name, bar in self.bars.items()}


def _number(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:,.{digits}f}"


class CellTable(QTableWidget):
    """Per-cell measurements of one image; areas in µm² when the pixel size is known."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(CELL_COLUMNS), parent)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.setMaximumHeight(130)
        self.show_measurements(None)

    def show_measurements(self, measured: ImageMeasurements | None) -> None:
        """Fill one row per cell (an empty table without a mask)."""
        um = measured is not None and measured.pixel_size_um is not None
        unit = "µm²" if um else "px"
        self.setHorizontalHeaderLabels(
            [
                "cell",
                f"nucleus {unit}",
                f"cytoplasm {unit}",
                "N:C",
                "circularity",
                "mean grey",
            ]
        )
        cells = [] if measured is None else measured.cells
        self.setRowCount(len(cells))
        for row, cell in enumerate(cells):
            if um:
                nucleus, cytoplasm = (
                    _number(cell.nucleus_area_um2, 1),
                    _number(cell.cytoplasm_area_um2, 1),
                )
            else:
                nucleus, cytoplasm = f"{cell.nucleus_area_px:,}", f"{cell.cytoplasm_area_px:,}"
            main = measured is not None and measured.main_cell_index == row
            values = (
                f"{cell.label}{' (main)' if main else ''}",
                nucleus,
                cytoplasm,
                _number(cell.nc_ratio),
                _number(cell.nucleus_circularity),
                _number(cell.nucleus_mean_intensity, 0),
            )
            for col, text in enumerate(values):
                self.setItem(row, col, QTableWidgetItem(text))
        self.resizeColumnsToContents()

    def cell_text(self, row: int, col: int) -> str:
        """The text shown in one cell of the table."""
        item = self.item(row, col)
        return "" if item is None else item.text()


def confusion_table(table: QTableWidget, classes: Sequence[str], matrix: np.ndarray) -> None:
    """Fill ``table`` with a confusion matrix (rows: truth, columns: answer)."""
    table.setRowCount(len(classes))
    table.setColumnCount(len(classes))
    table.setHorizontalHeaderLabels([f"→{c}" for c in classes])
    table.setVerticalHeaderLabels(list(classes))
    for i in range(len(classes)):
        for j in range(len(classes)):
            item = QTableWidgetItem(str(int(matrix[i, j])))
            if i == j:
                item.setToolTip("right answers")
            table.setItem(i, j, item)
    table.resizeColumnsToContents()
