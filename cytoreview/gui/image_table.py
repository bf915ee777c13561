"""The image table of the project panel, and its seed-quota cockpit.

A model/view pair: :class:`ImageTableModel` holds one plain row per image and repaints single
rows when a mask changes; :class:`ImageFilterProxy` filters and sorts without touching the
rows, so thousands of images stay fast (2000 rows load, sort and filter in about 0.05 s).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qtpy.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QStyledItemDelegate,
    QVBoxLayout,
    QWidget,
)

# The rows come from the workflow (one join for every front end); ImageRow is re-exported here,
# where the table's callers have always found it.
from cytoreview.workflows.status import MASK_STATES, ProjectStatus
from cytoreview.workflows.status import ImageRow as ImageRow

NO_CLASS = "(no class)"
COLUMNS = ("Name", "Class", "Mask", "Seed", "Prediction", "Uncert.")
#: Column tooltips (the header explains what the numbers mean).
COLUMN_TIPS = (
    "Image name",
    "The expert's class label: select the row, then click the cell (or press F2) to correct it",
    "Current mask: none, manual, auto, corrected or approved",
    "In the seed set to paint by hand",
    "The classifier's call and its probability",
    "The larger of the auto mask's and the prediction's uncertainty (0 sure ... 1 undecided): "
    "the review queue's order",
)
SORT_ROLE = Qt.ItemDataRole.UserRole
ID_ROLE = Qt.ItemDataRole.UserRole + 1
CLASS_COLUMN = 1
#: Sets an image's class; returns the class it has afterwards (None: the change was refused).
ClassSetter = Callable[[int, str], str | None]
#: Row tints by mask status: what still needs a person's eye stands out. Translucent, so the
#: theme's text colour stays readable on a dark or a light background.
STATUS_TINT = {"auto": QColor(255, 180, 0, 70), "approved": QColor(60, 200, 90, 70)}


class ImageTableModel(QAbstractTableModel):
    """Images of the project: name, class, mask status, seed flag."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[ImageRow] = []
        self._index: dict[int, int] = {}
        #: Makes the class column editable: called with (image id, class) on an edit.
        self.class_setter: ClassSetter | None = None

    def set_rows(self, rows: list[ImageRow]) -> None:
        """Replace every row (a project opened, images imported)."""
        self.beginResetModel()
        self._rows = list(rows)
        self._index = {row.id: i for i, row in enumerate(self._rows)}
        self.endResetModel()

    def set_status(
        self, statuses: dict[int, str], uncertainties: dict[int, float | None] | None = None
    ) -> None:
        """Change the mask status (and mask uncertainty) of some images; repaint their rows."""
        uncertainties = uncertainties or {}
        for image_id, status in statuses.items():
            i = self._index.get(image_id)
            if i is None:
                continue
            row = self._rows[i]
            uncertainty = uncertainties.get(image_id, row.mask_uncertainty)
            if (row.status, row.mask_uncertainty) != (status, uncertainty):
                row.status, row.mask_uncertainty = status, uncertainty
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

    def set_class_label(self, image_id: int, class_label: str | None) -> None:
        """Show a new class label for an image (set elsewhere, e.g. from the review dock)."""
        i = self._index.get(image_id)
        if i is not None and self._rows[i].class_label != class_label:
            self._rows[i].class_label = class_label
            self.dataChanged.emit(self.index(i, CLASS_COLUMN), self.index(i, CLASS_COLUMN))

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        """Qt: the class cell is editable when a setter is connected."""
        flags = super().flags(index)
        if index.isValid() and index.column() == CLASS_COLUMN and self.class_setter is not None:
            flags |= Qt.ItemFlag.ItemIsEditable
        return flags

    def setData(self, index: QModelIndex, value: Any, role: int = 2) -> bool:  # noqa: N802
        """Qt: an edited class cell goes through :attr:`class_setter` (the workflow)."""
        if (
            not index.isValid()
            or index.column() != CLASS_COLUMN
            or role != Qt.ItemDataRole.EditRole
            or self.class_setter is None
        ):
            return False
        row = self._rows[index.row()]
        new = self.class_setter(row.id, str(value))
        if new is None:
            return False
        self.set_class_label(row.id, new)
        return True

    def row(self, i: int) -> ImageRow:
        """The row at source position ``i``."""
        return self._rows[i]

    def source_row_of(self, image_id: int) -> int | None:
        """Source position of an image, if shown."""
        return self._index.get(image_id)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        """Qt: number of images."""
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        """Qt: number of columns."""
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Any, role: int = 0) -> Any:  # noqa: N802
        """Qt: column titles."""
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.ToolTipRole:
            return COLUMN_TIPS[section]
        return None

    def data(self, index: QModelIndex, role: int = 0) -> Any:
        """Qt: cell contents, sort keys, the image id and row tints."""
        if not index.isValid():
            return None
        row, col = self._rows[index.row()], index.column()
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            if col == 0:
                return row.name
            if col == 1:
                return row.class_label or ("" if role == SORT_ROLE else NO_CLASS)
            if col == 2:
                return MASK_STATES.index(row.status) if role == SORT_ROLE else row.status
            if col == 3:
                return int(row.seed) if role == SORT_ROLE else ("seed" if row.seed else "")
            if col == 4:
                if role == SORT_ROLE:  # by class, then by probability
                    return f"{row.pred_class or ''}\t{row.pred_probability or 0.0:.6f}"
                return row.prediction
            uncertainty = row.uncertainty
            if role == SORT_ROLE:
                return -1.0 if uncertainty is None else uncertainty
            return "" if uncertainty is None else f"{uncertainty:.2f}"
        if role == Qt.ItemDataRole.EditRole and col == CLASS_COLUMN:
            return row.class_label or ""
        if role == ID_ROLE:
            return row.id
        if role == Qt.ItemDataRole.BackgroundRole and row.status in STATUS_TINT:
            return QBrush(STATUS_TINT[row.status])
        return None


class ImageFilterProxy(QSortFilterProxyModel):
    """Filters by class, mask status, seed flag and name; sorts by the model's sort keys."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.class_label: str | None = None  # None: any; NO_CLASS: unlabelled
        self.status: str | None = None
        self.seeds_only = False
        self.text = ""
        self.setSortRole(SORT_ROLE)

    def set_filter(self, **changes: Any) -> None:
        """Change ``class_label``, ``status``, ``seeds_only`` or ``text`` and re-filter."""
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9; invalidateFilter is deprecated
            self.beginFilterChange()
            for key, value in changes.items():
                setattr(self, key, value)
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:  # pragma: no cover - older Qt
            for key, value in changes.items():
                setattr(self, key, value)
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: QModelIndex) -> bool:  # noqa: N802
        """Qt: whether an image passes the filters."""
        row = self.sourceModel().row(source_row)
        if self.class_label is not None and (row.class_label or NO_CLASS) != self.class_label:
            return False
        if self.status is not None and row.status != self.status:
            return False
        if self.seeds_only and not row.seed:
            return False
        return not self.text or self.text.lower() in row.name.lower()

    def image_id(self, proxy_row: int) -> int:
        """The image id shown at ``proxy_row``."""
        return int(self.data(self.index(proxy_row, 0), ID_ROLE))

    def proxy_row_of(self, image_id: int) -> int | None:
        """Where an image is shown, or None if it is filtered out."""
        source = self.sourceModel().source_row_of(image_id)
        if source is None:
            return None
        proxy = self.mapFromSource(self.sourceModel().index(source, 0))
        return proxy.row() if proxy.isValid() else None


class ClassDelegate(QStyledItemDelegate):
    """Edits the class cell with a drop-down of the project's classes."""

    def __init__(self, classes: Callable[[], Sequence[str]], parent: Any = None) -> None:
        super().__init__(parent)
        self._classes = classes

    def createEditor(self, parent: QWidget, option: Any, index: QModelIndex) -> QWidget:  # noqa: N802
        """Qt: a combo box of the classes."""
        combo = QComboBox(parent)
        combo.addItems(list(self._classes()))
        combo.setToolTip("The image's class: training and evaluation use it")
        return combo

    def setEditorData(self, editor: QWidget, index: QModelIndex) -> None:  # noqa: N802
        """Qt: start on the image's class."""
        if isinstance(editor, QComboBox):
            editor.setCurrentText(str(index.data(Qt.ItemDataRole.EditRole) or ""))

    def setModelData(self, editor: QWidget, model: Any, index: QModelIndex) -> None:  # noqa: N802
        """Qt: hand the chosen class to the model (which asks the workflow)."""
        if isinstance(editor, QComboBox) and editor.currentText() != index.data(
            Qt.ItemDataRole.EditRole
        ):
            model.setData(index, editor.currentText(), Qt.ItemDataRole.EditRole)


class SeedCockpit(QGroupBox):
    """Painted seeds against the target, per class, with the project's warnings."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__("Seed quota (painted / target)", parent)
        outer = QVBoxLayout(self)
        self._grid = QGridLayout()
        outer.addLayout(self._grid)
        self._bars: dict[str, QProgressBar] = {}
        self._counts: dict[str, QLabel] = {}
        self.warnings = QLabel("")
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #e0a030")
        self.warnings.setVisible(False)
        outer.addWidget(self.warnings)
        self.actions = QHBoxLayout()  # the panel puts its seed-picking controls here
        outer.addLayout(self.actions)

    def show_status(self, status: ProjectStatus) -> None:
        """Show a fresh :func:`project_status`."""
        labels = [row.label for row in status.classes]
        if list(self._bars) != labels:  # another class scheme: rebuild the rows
            while self._grid.count():
                widget = self._grid.takeAt(0).widget()
                if widget is not None:
                    widget.deleteLater()
            self._bars, self._counts = {}, {}
            for i, label in enumerate(labels):
                self._grid.addWidget(QLabel(label), i, 0)
                bar = QProgressBar()
                bar.setMaximumHeight(18)
                self._grid.addWidget(bar, i, 1)
                count = QLabel("")
                self._grid.addWidget(count, i, 2)
                self._bars[label], self._counts[label] = bar, count
        for row in status.classes:
            bar = self._bars[row.label]
            target = row.seed_target or row.seeds
            bar.setMaximum(max(target, 1))
            bar.setValue(min(row.seeds_painted, max(target, 1)))
            bar.setFormat(f"{row.seeds_painted} / {target}" if target else "no seeds picked")
            human = sum(row.masks[k] for k in ("manual", "corrected", "approved"))
            self._counts[row.label].setText(f"{row.images} images, {human} painted")
        self.warnings.setText("\n".join(status.warnings))
        self.warnings.setVisible(bool(status.warnings))
