"""The project panel: open or create a project, import images, browse them, track the seed quota.

The table and the cockpit live in :mod:`cytoreview.gui.image_table`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import QModelIndex, Qt, QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from cytoreview.errors import CytoReviewError
from cytoreview.gui.help_texts import INTRO_STYLE, PANEL_HELP, TOOLTIPS
from cytoreview.gui.image_table import (
    CLASS_COLUMN,
    COLUMNS,
    NO_CLASS,
    ClassDelegate,
    ImageFilterProxy,
    ImageTableModel,
    SeedCockpit,
)
from cytoreview.gui.import_dialog import ImportChoice, ImportDialog
from cytoreview.gui.progress_widgets import SmoothProgressBar
from cytoreview.gui.state import WorkbenchState
from cytoreview.gui.workers import JobRunner
from cytoreview.settings import DEFAULT_SEEDS_PER_CLASS
from cytoreview.storage.project import Project
from cytoreview.types import CLASS_SCHEMES, DEFAULT_SCHEME, Progress
from cytoreview.workflows.class_labels import set_image_class
from cytoreview.workflows.importing import ImportReport, import_images
from cytoreview.workflows.projects import build_scheme
from cytoreview.workflows.seeds import pick_seeds
from cytoreview.workflows.status import MASK_STATES, image_rows, mask_states, project_status


class ProjectPanel(QWidget):
    """Open / create / import, the image table with filters, navigation and the seed cockpit."""

    def __init__(self, state: WorkbenchState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.model = ImageTableModel(self)
        self.proxy = ImageFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.model.class_setter = self.set_image_class
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
        state.classes_changed.connect(self._on_classes_changed)
        self._on_project_changed(state.project)

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(4)
        intro = QLabel(PANEL_HELP["project"])
        intro.setWordWrap(True)
        intro.setStyleSheet(INTRO_STYLE)
        layout.addWidget(intro)
        self.path_label = QLabel("No project open")
        self.path_label.setStyleSheet("font-weight: bold")
        layout.addWidget(self.path_label)
        row = QHBoxLayout()
        for attr, text, slot in (
            ("open_button", "Open…", self._ask_open),
            ("new_button", "New…", self._ask_create),
            ("import_button", "Import…", self._ask_import),
        ):
            button = QPushButton(text)
            button.clicked.connect(slot)
            setattr(self, attr, button)
            row.addWidget(button)
        self.open_button.setToolTip(TOOLTIPS["open_project"])
        self.new_button.setToolTip(TOOLTIPS["new_project"])
        self.import_button.setToolTip(TOOLTIPS["import_folder"])
        layout.addLayout(row)
        row = QHBoxLayout()
        self.import_bar = SmoothProgressBar()
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
        self.import_log.setVisible(False)  # shown with the first import report
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
        # Ctrl/Shift-click selects several images (e.g. to auto-segment only those).
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        # The class cell edits with a click on a selected row or F2; a double click still
        # opens the image (Qt waits out the double-click time before it starts an edit).
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.SelectedClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.class_delegate = ClassDelegate(self._scheme_classes, self.table)
        self.table.setItemDelegateForColumn(CLASS_COLUMN, self.class_delegate)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.verticalHeader().setDefaultSectionSize(22)
        header = self.table.horizontalHeader()
        # The name keeps a readable width; the other columns fit their contents and the
        # table scrolls sideways in a narrow dock (a stretched name column shrank to "s...").
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(0, 140)
        header.setStretchLastSection(True)
        for col in range(1, len(COLUMNS)):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        # A double click sends both signals in Qt 6 (activated on the release); Enter only
        # activated. Opening the image already open does nothing.
        self.table.doubleClicked.connect(self._on_activated)
        self.table.activated.connect(self._on_activated)
        self.table.setMinimumHeight(120)
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
        row = self.cockpit.actions
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
        dialog = ImportDialog(self)
        if dialog.exec() and (choice := dialog.choice()) is not None:
            self.import_source(choice)

    def import_folder(self, folder: str | Path) -> bool:
        """Import ``folder`` (sub-folders = classes) in the background, copying the images."""
        return self.import_source(ImportChoice(Path(folder)))

    def import_source(self, choice: ImportChoice) -> bool:
        """Run the import ``choice`` describes in the background.

        Returns False if no project is open or an import is already running.
        """
        project = self.state.project
        if project is None or self.importer.is_running:
            return False
        actor = self.state.actor
        self.import_log.clear()
        self.import_log.setVisible(True)
        self.import_bar.setRange(0, 0)
        self._set_importing(True)
        self.importer.start(
            lambda token: import_images(
                project,
                choice.source,
                actor=actor,
                masks_dir=choice.masks_dir,
                path_column=choice.path_column,
                class_column=choice.class_column,
                image_dir=choice.image_dir,
                copy=choice.copy,
                cancel=token,
            )
        )
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
        # The folder's name in bold, the full path on hover: one line, however deep it lies.
        self.path_label.setText(f"Project: {project.root.name}" if opened else "No project open")
        self.path_label.setToolTip(str(project.root) if opened else "")
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
        self.model.set_rows(image_rows(project) if project is not None else [])
        self.refresh_cockpit()

    def refresh_rows(self) -> None:
        """Re-read the rows (e.g. after new predictions), keeping the open image selected."""
        self.reload()
        if self.state.current_image_id is not None:
            self._select_image(self.state.current_image_id)

    def refresh_cockpit(self) -> None:
        """Recount the seed quota."""
        if self.state.project is not None:
            self.cockpit.show_status(project_status(self.state.project))

    def _scheme_classes(self) -> list[str]:
        project = self.state.project
        return list(project.scheme.classes) if project is not None else []

    def set_image_class(self, image_id: int, class_name: str) -> str | None:
        """Correct an image's class (the class cell's edit); returns the class it has now.

        The workflow checks the class and audits the change; a refusal is shown, not raised.
        """
        project = self.state.project
        if project is None:
            return None
        try:
            change = set_image_class(
                project, image_id, class_name, actor=self.state.actor, source="project table"
            )
        except CytoReviewError as exc:
            self.state.message.emit("error", f"class not changed: {exc}")
            return None
        if change.changed:
            self.state.message.emit("info", f"class of {change.line()}")
            self.state.notify_classes_changed([image_id])
        return change.new

    def _on_classes_changed(self, image_ids: object) -> None:
        project = self.state.project
        if project is None:
            return
        for image_id in image_ids:  # type: ignore[attr-defined]
            self.model.set_class_label(image_id, project.image(image_id).class_label)
        self._status_timer.start()

    def _on_masks_changed(self, image_ids: object) -> None:
        project = self.state.project
        if project is None:
            return
        states = mask_states(project, image_ids)  # type: ignore[arg-type]
        self.model.set_status(
            {i: state.status for i, state in states.items()},
            {i: state.uncertainty for i, state in states.items()},
        )
        self._status_timer.start()

    def _update_count(self, *_: Any) -> None:
        self.count_label.setText(f"{self.proxy.rowCount()} of {self.model.rowCount()} images")

    # -- navigation ----------------------------------------------------------------------------
    def _on_activated(self, index: QModelIndex) -> None:
        image_id = self.proxy.image_id(index.row())
        if image_id != self.state.current_image_id:
            self.state.open_image(image_id)

    def selected_image_ids(self) -> list[int]:
        """The ids of the images whose rows are selected in the table, in table order."""
        rows = sorted({index.row() for index in self.table.selectionModel().selectedRows()})
        return [self.proxy.image_id(row) for row in rows]

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
