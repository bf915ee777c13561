"""The project panel: open or create a project, import images, browse them, track the seed quota.

The image table is a model/view pair: :class:`ImageTableModel` holds one plain row per image
and updates single rows when a mask changes; :class:`ImageFilterProxy` filters and sorts
without touching the rows, so thousands of images stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qtpy.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt, QTimer
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from cytoreview.errors import CytoReviewError
from cytoreview.gui.help_texts import PANEL_HELP, TOOLTIPS
from cytoreview.gui.state import WorkbenchState
from cytoreview.gui.workers import JobRunner
from cytoreview.settings import DEFAULT_SEEDS_PER_CLASS
from cytoreview.storage.project import Project
from cytoreview.types import CLASS_SCHEMES, DEFAULT_SCHEME, Progress
from cytoreview.workflows.importing import ImportReport, import_images
from cytoreview.workflows.projects import build_scheme
from cytoreview.workflows.seeds import pick_seeds
from cytoreview.workflows.status import MASK_STATES, ProjectStatus, project_status

NO_CLASS = "(no class)"
COLUMNS = ("Name", "Class", "Mask", "Seed")
SORT_ROLE = Qt.ItemDataRole.UserRole
ID_ROLE = Qt.ItemDataRole.UserRole + 1
#: Row tints by mask status: what still needs a person's eye stands out.
STATUS_TINT = {"auto": QColor(255, 240, 200), "approved": QColor(215, 245, 215)}


@dataclass
class ImageRow:
    """One image as the table shows it."""

    id: int
    name: str
    class_label: str | None
    status: str  # "none" or a provenance value
    seed: bool


def rows_for(project: Project) -> list[ImageRow]:
    """Table rows of every image of ``project`` (two catalog queries)."""
    current = project.current_versions()
    return [
        ImageRow(im.id, im.name, im.class_label,
                 current[im.id].provenance.value if im.id in current else "none", im.is_seed)
        for im in project.images()
    ]  # fmt: skip


class ImageTableModel(QAbstractTableModel):
    """Images of the project: name, class, mask status, seed flag."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[ImageRow] = []
        self._index: dict[int, int] = {}

    def set_rows(self, rows: list[ImageRow]) -> None:
        """Replace every row (a project opened, images imported)."""
        self.beginResetModel()
        self._rows = list(rows)
        self._index = {row.id: i for i, row in enumerate(self._rows)}
        self.endResetModel()

    def set_status(self, statuses: dict[int, str]) -> None:
        """Change the mask status of some images; only their rows are repainted."""
        for image_id, status in statuses.items():
            i = self._index.get(image_id)
            if i is not None and self._rows[i].status != status:
                self._rows[i].status = status
                self.dataChanged.emit(self.index(i, 0), self.index(i, len(COLUMNS) - 1))

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
            return int(row.seed) if role == SORT_ROLE else ("seed" if row.seed else "")
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
        for key, value in changes.items():
            setattr(self, key, value)
        self.invalidateFilter()

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
        outer.addWidget(self.warnings)

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


class ProjectPanel(QWidget):
    """Open / create / import, the image table with filters, navigation and the seed cockpit."""

    def __init__(self, state: WorkbenchState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.model = ImageTableModel(self)
        self.proxy = ImageFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.importer = JobRunner("import", self)
        state.track_job(self.importer)
        self.last_import: ImportReport | None = None
        self._status_timer = QTimer(self)  # the cockpit refresh is coalesced
        self._status_timer.setSingleShot(True)
        self._status_timer.setInterval(300)
        self._status_timer.timeout.connect(self.refresh_cockpit)
        self._build()
        self.importer.progress.connect(self._on_import_progress)
        self.importer.succeeded.connect(self._on_import_done)
        self.importer.failed.connect(self._on_import_failed)
        self.importer.finished.connect(lambda: self._set_importing(False))
        state.project_changed.connect(self._on_project_changed)
        state.images_changed.connect(self.reload)
        state.masks_changed.connect(self._on_masks_changed)
        state.image_opened.connect(self._select_image)
        self._on_project_changed(state.project)

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        intro = QLabel(PANEL_HELP["project"])
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.path_label = QLabel("No project open")
        self.path_label.setWordWrap(True)
        self.path_label.setStyleSheet("font-weight: bold")
        layout.addWidget(self.path_label)
        row = QHBoxLayout()
        for attr, text, slot in (("open_button", "Open…", self._ask_open),
                                 ("new_button", "New…", self._ask_create),
                                 ("import_button", "Import folder…", self._ask_import)):  # fmt: skip
            button = QPushButton(text)
            button.clicked.connect(slot)
            setattr(self, attr, button)
            row.addWidget(button)
        self.open_button.setToolTip(TOOLTIPS["open_project"])
        self.new_button.setToolTip(TOOLTIPS["new_project"])
        self.import_button.setToolTip(TOOLTIPS["import_folder"])
        layout.addLayout(row)
        row = QHBoxLayout()
        self.import_bar = QProgressBar()
        self.import_bar.setFormat("%v / %m")
        self.cancel_import_button = QPushButton("Cancel")
        self.cancel_import_button.setToolTip(TOOLTIPS["cancel_import"])
        self.cancel_import_button.clicked.connect(self.importer.cancel)
        row.addWidget(self.import_bar)
        row.addWidget(self.cancel_import_button)
        layout.addLayout(row)
        self.import_log = QPlainTextEdit()
        self.import_log.setReadOnly(True)
        self.import_log.setMaximumHeight(70)
        self.import_log.setPlaceholderText("Import report: files skipped and why")
        layout.addWidget(self.import_log)
        self._set_importing(False)

        filters = QHBoxLayout()
        self.class_filter = QComboBox()
        self.class_filter.setToolTip(TOOLTIPS["filter_class"])
        self.class_filter.currentIndexChanged.connect(
            lambda _: self.proxy.set_filter(class_label=self.class_filter.currentData())
        )
        self.status_filter = QComboBox()
        self.status_filter.setToolTip(TOOLTIPS["filter_status"])
        self.status_filter.addItem("any mask", None)
        for status in MASK_STATES:
            self.status_filter.addItem(status, status)
        self.status_filter.currentIndexChanged.connect(
            lambda _: self.proxy.set_filter(status=self.status_filter.currentData())
        )
        self.seed_filter = QCheckBox("seeds")
        self.seed_filter.setToolTip(TOOLTIPS["filter_seeds"])
        self.seed_filter.toggled.connect(lambda on: self.proxy.set_filter(seeds_only=on))
        self.name_filter = QLineEdit()
        self.name_filter.setPlaceholderText("name…")
        self.name_filter.setToolTip(TOOLTIPS["filter_name"])
        self.name_filter.textChanged.connect(lambda text: self.proxy.set_filter(text=text))
        for widget in (self.class_filter, self.status_filter, self.seed_filter, self.name_filter):
            filters.addWidget(widget)
        layout.addLayout(filters)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setToolTip(TOOLTIPS["table"])
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(22)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in (1, 2, 3):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.table.activated.connect(self._on_activated)  # double-click or Enter
        self.table.setMinimumHeight(200)
        layout.addWidget(self.table, 1)

        row = QHBoxLayout()
        self.prev_button = QPushButton("◀ Previous")
        self.prev_button.setToolTip(TOOLTIPS["previous_image"])
        self.prev_button.clicked.connect(self.previous_image)
        self.next_button = QPushButton("Next ▶")
        self.next_button.setToolTip(TOOLTIPS["next_image"])
        self.next_button.clicked.connect(self.next_image)
        self.count_label = QLabel("")
        row.addWidget(self.prev_button)
        row.addWidget(self.next_button)
        row.addWidget(self.count_label, 1)
        layout.addLayout(row)

        self.cockpit = SeedCockpit()
        layout.addWidget(self.cockpit)
        row = QHBoxLayout()
        self.seeds_spin = QSpinBox()
        self.seeds_spin.setRange(1, 1000)
        self.seeds_spin.setValue(DEFAULT_SEEDS_PER_CLASS)
        self.seeds_spin.setSuffix(" per class")
        self.seeds_spin.setToolTip(TOOLTIPS["seeds_per_class"])
        self.pick_button = QPushButton("Pick seed set")
        self.pick_button.setToolTip(TOOLTIPS["pick_seeds"])
        self.pick_button.clicked.connect(lambda: self.pick_seeds(self.seeds_spin.value()))
        row.addWidget(self.seeds_spin)
        row.addWidget(self.pick_button)
        layout.addLayout(row)
        self.proxy.rowsInserted.connect(self._update_count)
        self.proxy.rowsRemoved.connect(self._update_count)
        self.proxy.modelReset.connect(self._update_count)
        self.proxy.layoutChanged.connect(self._update_count)

    # -- project -------------------------------------------------------------------------------
    def open_project(self, path: str | Path) -> Project | None:
        """Open the project at ``path``; errors are shown, not raised."""
        try:
            return self.state.open_project(path)
        except CytoReviewError as exc:
            self.state.message.emit("error", str(exc))
            return None

    def create_project(self, path: str | Path, scheme: str = DEFAULT_SCHEME) -> Project | None:
        """Create a project with a preset class scheme at ``path`` and open it."""
        try:
            return self.state.create_project(path, build_scheme(scheme))
        except CytoReviewError as exc:
            self.state.message.emit("error", str(exc))
            return None

    def _ask_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a CytoReview project")
        if folder:
            self.open_project(folder)

    def _ask_create(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "New project: choose an empty folder")
        if not folder:
            return
        names = sorted(CLASS_SCHEMES, key=lambda n: n != DEFAULT_SCHEME)
        scheme, ok = QInputDialog.getItem(self, "Class scheme", "Classes:", names, 0, False)
        if ok:
            self.create_project(folder, scheme)

    def _ask_import(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Import a folder of images")
        if folder:
            self.import_folder(folder)

    def import_folder(self, folder: str | Path) -> bool:
        """Import ``folder`` in the background; False if no project is open or one is running."""
        project = self.state.project
        if project is None or self.importer.is_running:
            return False
        actor = self.state.actor
        self.import_log.clear()
        self.import_bar.setRange(0, 0)
        self._set_importing(True)
        self.importer.start(lambda token: import_images(project, folder, actor=actor,
                                                        cancel=token))  # fmt: skip
        return True

    def _set_importing(self, running: bool) -> None:
        self.cancel_import_button.setEnabled(running)
        self.import_bar.setVisible(running)
        self.cancel_import_button.setVisible(running)

    def _on_import_progress(self, event: Progress) -> None:
        self.import_bar.setRange(0, max(event.total, 1))
        self.import_bar.setValue(event.step)
        if event.level == "warning":
            self.import_log.appendPlainText(event.message)

    def _on_import_done(self, report: ImportReport) -> None:
        self.last_import = report
        self.import_log.appendPlainText(report.summary)
        self.state.message.emit("warning" if report.problems else "info", report.summary)
        self.state.notify_images_changed()

    def _on_import_failed(self, error: BaseException) -> None:
        self.import_log.appendPlainText(f"import failed: {error}")
        self.state.message.emit("error", f"import failed: {error}")
        self.state.notify_images_changed()

    def pick_seeds(self, per_class: int) -> None:
        """Pick the seed set (``per_class`` images per class) and refresh the table."""
        project = self.state.project
        if project is None:
            return
        report = pick_seeds(project, actor=self.state.actor, per_class=per_class)
        for warning in report.warnings:
            self.state.message.emit("warning", warning)
        self.reload()

    def _on_project_changed(self, project: object) -> None:
        opened = isinstance(project, Project)
        for widget in (self.import_button, self.pick_button, self.prev_button, self.next_button):
            widget.setEnabled(opened)
        self.path_label.setText(str(project.root) if opened else "No project open")
        self.class_filter.blockSignals(True)
        self.class_filter.clear()
        self.class_filter.addItem("any class", None)
        if opened:
            for label in (*project.scheme.classes, NO_CLASS):
                self.class_filter.addItem(label, label)
        self.class_filter.blockSignals(False)
        self.proxy.set_filter(class_label=None)
        self.reload()

    def reload(self) -> None:
        """Re-read every image row and the cockpit from the catalog."""
        project = self.state.project
        self.model.set_rows(rows_for(project) if project is not None else [])
        self.refresh_cockpit()

    def refresh_cockpit(self) -> None:
        """Recount the seed quota."""
        if self.state.project is not None:
            self.cockpit.show_status(project_status(self.state.project))

    def _on_masks_changed(self, image_ids: object) -> None:
        project = self.state.project
        if project is None:
            return
        current = project.current_versions()
        ids = current.keys() if image_ids is None else image_ids
        self.model.set_status(
            {i: current[i].provenance.value if i in current else "none" for i in ids}  # type: ignore[union-attr]
        )
        self._status_timer.start()

    def _update_count(self, *_: Any) -> None:
        self.count_label.setText(f"{self.proxy.rowCount()} of {self.model.rowCount()} images")

    # -- navigation ----------------------------------------------------------------------------
    def _on_activated(self, index: QModelIndex) -> None:
        self.state.open_image(self.proxy.image_id(index.row()))

    def _select_image(self, image_id: object) -> None:
        row = self.proxy.proxy_row_of(int(image_id))  # type: ignore[call-overload]
        if row is not None:
            self.table.selectRow(row)
            self.table.scrollTo(self.proxy.index(row, 0))

    def step_image(self, step: int) -> int | None:
        """Open the image ``step`` rows below (negative: above) the current one in the table.

        Returns the image id opened, or None at either end or without images.
        """
        n = self.proxy.rowCount()
        if n == 0 or self.state.project is None:
            return None
        current = self.state.current_image_id
        row = self.proxy.proxy_row_of(current) if current is not None else None
        target = (0 if step > 0 else n - 1) if row is None else row + step
        if not 0 <= target < n:
            return None
        image_id = self.proxy.image_id(target)
        self.state.open_image(image_id)
        return image_id

    def next_image(self) -> int | None:
        """Open the next image of the table."""
        return self.step_image(+1)

    def previous_image(self) -> int | None:
        """Open the previous image of the table."""
        return self.step_image(-1)
