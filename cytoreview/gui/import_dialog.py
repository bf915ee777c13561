"""The import dialog: a folder or a CSV manifest, optional painted masks, copy or link.

Everything ``cytoreview import`` takes on the command line, in one small form; the import itself
runs in the project panel's background worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qtpy.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from cytoreview.gui.help_texts import TOOLTIPS


@dataclass(frozen=True)
class ImportChoice:
    """What to import, as :func:`cytoreview.workflows.importing.import_images` takes it."""

    source: Path  # a folder (sub-folders = classes) or a CSV manifest
    masks_dir: Path | None = None  # label masks named like the images -> "manual" versions
    path_column: str = "path"  # manifest columns (CSV only)
    class_column: str = "class"
    image_dir: Path | None = None  # where relative manifest paths start (default: its folder)
    copy: bool = True  # copy the images into the project, or reference them where they are

    @property
    def is_manifest(self) -> bool:
        """True for a CSV manifest, False for a folder."""
        return self.source.suffix.lower() == ".csv"


def _path_row(edit: QLineEdit, *buttons: QPushButton) -> QWidget:
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(edit, 1)
    for button in buttons:
        layout.addWidget(button)
    return row


class ImportDialog(QDialog):
    """Ask where to import from; :meth:`choice` is the answer once accepted."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import images")
        layout = QVBoxLayout(self)
        intro = QLabel(
            "A folder whose sub-folders are the classes (NILM/, HSIL/ …), or a CSV table with a "
            "path column and optional class and split columns. Masks you already painted "
            "elsewhere (0 background, 1 cytoplasm, 2 nucleus; same file name) come in as manual."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.source_edit = QLineEdit()
        self.source_edit.setPlaceholderText("folder or .csv file")
        folder_button = QPushButton("Folder…")
        folder_button.clicked.connect(self._browse_folder)
        csv_button = QPushButton("CSV…")
        csv_button.clicked.connect(self._browse_csv)
        form.addRow("Source", _path_row(self.source_edit, folder_button, csv_button))
        self.masks_edit = QLineEdit()
        self.masks_edit.setPlaceholderText("optional: folder of label masks")
        masks_button = QPushButton("Browse…")
        masks_button.clicked.connect(lambda: self._browse_into(self.masks_edit, "Masks folder"))
        form.addRow("Masks", _path_row(self.masks_edit, masks_button))
        layout.addLayout(form)

        self.manifest_box = QGroupBox("CSV columns")
        csv_form = QFormLayout(self.manifest_box)
        self.path_column = QLineEdit("path")
        self.class_column = QLineEdit("class")
        self.image_dir_edit = QLineEdit()
        self.image_dir_edit.setPlaceholderText("default: the CSV's folder")
        image_dir_button = QPushButton("Browse…")
        image_dir_button.clicked.connect(
            lambda: self._browse_into(self.image_dir_edit, "Folder the paths start from")
        )
        csv_form.addRow("Image path column", self.path_column)
        csv_form.addRow("Class column", self.class_column)
        csv_form.addRow("Images in", _path_row(self.image_dir_edit, image_dir_button))
        layout.addWidget(self.manifest_box)

        self.link_check = QCheckBox("Reference the images where they are (do not copy them)")
        layout.addWidget(self.link_check)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Import")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        for widget, tip in (
            (self.source_edit, "import_source"),
            (self.masks_edit, "import_masks"),
            (self.path_column, "import_path_column"),
            (self.class_column, "import_class_column"),
            (self.image_dir_edit, "import_image_dir"),
            (self.link_check, "import_link"),
        ):
            widget.setToolTip(TOOLTIPS[tip])
        for edit in (self.source_edit, self.masks_edit, self.image_dir_edit):
            edit.textChanged.connect(self._update)
        self._update()

    # -- answers -------------------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why the form cannot be imported as it is (shown in the Import button's tooltip)."""
        text = self.source_edit.text().strip()
        if not text:
            return "choose a folder or a CSV file"
        source = Path(text).expanduser()
        if not (source.is_dir() or (source.is_file() and source.suffix.lower() == ".csv")):
            return f"{source}: not a folder or a .csv file"
        for edit, what in ((self.masks_edit, "masks"), (self.image_dir_edit, "images")):
            folder = edit.text().strip()
            if folder and not Path(folder).expanduser().is_dir():
                return f"{folder}: the {what} folder does not exist"
        return None

    def choice(self) -> ImportChoice | None:
        """The import the form describes, or None while it is incomplete."""
        if self.problem() is not None:
            return None

        def folder(edit: QLineEdit) -> Path | None:
            text = edit.text().strip()
            return Path(text).expanduser() if text else None

        return ImportChoice(
            source=Path(self.source_edit.text().strip()).expanduser(),
            masks_dir=folder(self.masks_edit),
            path_column=self.path_column.text().strip() or "path",
            class_column=self.class_column.text().strip() or "class",
            image_dir=folder(self.image_dir_edit),
            copy=not self.link_check.isChecked(),
        )

    def _update(self) -> None:
        problem = self.problem()
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(problem is None)
        ok.setToolTip(problem or "")
        self.manifest_box.setEnabled(self.source_edit.text().strip().lower().endswith(".csv"))

    # -- file pickers --------------------------------------------------------------------------
    def _browse_folder(self) -> None:
        self._browse_into(self.source_edit, "Folder of images (sub-folders = classes)")

    def _browse_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "CSV manifest", "", "CSV tables (*.csv)")
        if path:
            self.source_edit.setText(path)

    def _browse_into(self, edit: QLineEdit, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title)
        if folder:
            edit.setText(folder)
