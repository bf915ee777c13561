"""The teaching panel: call the class of a blinded image, then see the truth and the model.

While a case is blind nothing in the window may give the answer away: the other docks (the
project table's class column and file names, the annotate title, the review panel) are hidden
for the whole session, the mask layer is hidden and the heatmap suppressed. The reveal shows
the expert label, the model's call and probabilities, the mask, the heatmap and the score.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QAbstractItemView,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QVBoxLayout,
    QWidget,
)

from cytoreview.errors import CytoReviewError
from cytoreview.gui.heatmap_layer import HeatmapOverlay
from cytoreview.gui.help_texts import INTRO_STYLE, PANEL_HELP, TOOLTIPS
from cytoreview.gui.review_widgets import ProbabilityBars, confusion_table
from cytoreview.gui.shortcuts import TEACH_ANSWER_KEYS
from cytoreview.gui.state import WorkbenchState
from cytoreview.workflows.teach import TeachFeedback, next_case, submit_answer, trainee_score

log = logging.getLogger(__name__)

RIGHT_STYLE = "font-weight: bold; font-size: 15px; color: #50c878"
WRONG_STYLE = "font-weight: bold; font-size: 15px; color: #ff6b6b"


class TeachPanel(QWidget):
    """A blind quiz on the project's labelled images, with a per-trainee score."""

    def __init__(
        self,
        viewer: Any,
        state: WorkbenchState,
        heatmap: HeatmapOverlay,
        hide_others: Callable[[bool], None] | None = None,
        seed: int | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.state = state
        self.heatmap = heatmap
        self.hide_others = hide_others or (lambda _hidden: None)
        self.rng = np.random.default_rng(seed)
        self.trainee: str | None = None
        self.image_id: int | None = None
        self.blind = False
        self.last_feedback: TeachFeedback | None = None
        self.answer_shortcuts: list[Any] = []  # QShortcuts of keys 1-9, on while blind
        self._shown_at = 0.0
        self._build()
        state.project_changed.connect(lambda _: self.stop())
        self._update()

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(4)
        intro = QLabel(PANEL_HELP["teach"])
        intro.setWordWrap(True)
        intro.setStyleSheet(INTRO_STYLE)
        layout.addWidget(intro)
        row = QHBoxLayout()
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("trainee name")
        self.name_edit.setToolTip(TOOLTIPS["trainee"])
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip(TOOLTIPS["teach_start"])
        self.start_button.clicked.connect(lambda: self.start())
        self.stop_button = QPushButton("End session")
        self.stop_button.clicked.connect(self.stop)
        row.addWidget(self.name_edit, 1)
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        layout.addLayout(row)
        self.case_label = QLabel("Enter your name and press Start")
        self.case_label.setStyleSheet("font-weight: bold")
        layout.addWidget(self.case_label)
        self.answers_box = QGroupBox("Your call")
        self.answers_grid = QGridLayout(self.answers_box)
        self.answer_buttons: dict[str, QPushButton] = {}
        layout.addWidget(self.answers_box)

        self.reveal_box = QGroupBox("Answer")
        reveal = QVBoxLayout(self.reveal_box)
        self.result_label = QLabel("")
        self.truth_label = QLabel("")
        self.model_label = QLabel("")
        for label in (self.result_label, self.truth_label, self.model_label):
            label.setWordWrap(True)
            reveal.addWidget(label)
        self.bars = ProbabilityBars()
        reveal.addWidget(self.bars)
        layout.addWidget(self.reveal_box)
        self.next_button = QPushButton("Next case (Alt+N)")
        self.next_button.setToolTip(TOOLTIPS["teach_next"])
        self.next_button.clicked.connect(lambda: self.next())
        layout.addWidget(self.next_button)

        score_box = QGroupBox("Score")
        score = QVBoxLayout(score_box)
        self.score_label = QLabel("—")
        self.score_label.setWordWrap(True)
        score.addWidget(self.score_label)
        self.confusion = QTableWidget(0, 0)
        self.confusion.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.confusion.setToolTip("rows: the expert's class; columns: your answer")
        self.confusion.setMaximumHeight(150)
        score.addWidget(self.confusion)
        layout.addWidget(score_box)
        layout.addStretch(1)

    def _rebuild_answers(self, classes: list[str]) -> None:
        if list(self.answer_buttons) == classes:
            return
        for button in self.answer_buttons.values():
            button.deleteLater()
        self.answer_buttons = {}
        for i, name in enumerate(classes):
            key = f"{i + 1} " if i < TEACH_ANSWER_KEYS else ""
            button = QPushButton(f"{key}{name}")
            button.setMinimumHeight(30)
            button.clicked.connect(lambda _=False, n=name: self.answer(n))
            self.answers_grid.addWidget(button, i // 2, i % 2)
            self.answer_buttons[name] = button

    def _update(self) -> None:
        active = self.trainee is not None
        self.start_button.setEnabled(self.state.project is not None and not active)
        self.name_edit.setEnabled(not active)
        self.stop_button.setEnabled(active)
        self.answers_box.setVisible(active)
        for button in self.answer_buttons.values():
            button.setEnabled(self.blind)
        for shortcut in self.answer_shortcuts:
            shortcut.setEnabled(self.blind)
        self.reveal_box.setVisible(active and not self.blind and self.last_feedback is not None)
        self.next_button.setEnabled(active and not self.blind)

    # -- session -------------------------------------------------------------------------------
    def start(self, trainee: str | None = None) -> bool:
        """Start a session for ``trainee`` (the name field unless given) with a blind case."""
        project = self.state.project
        name = (trainee or self.name_edit.text()).strip()
        if project is None or not name:
            self.state.message.emit("warning", "teaching: enter your name first")
            return False
        self.name_edit.setText(name)
        self.trainee = name
        self._rebuild_answers(list(project.scheme.classes))
        self.hide_others(True)
        self._show_score()
        if self.next() is None:
            self.stop()
            return False
        return True

    def stop(self) -> None:
        """End the session: the other docks, the mask and the heatmap come back."""
        was_active = self.trainee is not None
        self.trainee = None
        self.blind = False
        self.image_id = None
        self.last_feedback = None
        if was_active:
            self.heatmap.reveal(None)
            self._set_mask_visible(True)
            self.hide_others(False)
            self.case_label.setText("Session ended. Enter a name and press Start")
        self._update()

    def next(self) -> int | None:
        """Draw the next case (classes the trainee misses come back more often), blind."""
        project = self.state.project
        if project is None or self.trainee is None:
            return None
        try:
            image_id = next_case(project, self.trainee, self.rng, exclude=self.image_id)
        except CytoReviewError as exc:
            self.state.message.emit("error", f"teaching: {exc}")
            return None
        self.blind = True
        self.last_feedback = None
        self.heatmap.forced = False
        self.heatmap.suppress(True)  # before the image opens: no old map may flash
        self.image_id = image_id
        self.state.open_image(image_id)
        self._set_mask_visible(False)
        if "image" in self.viewer.layers:  # no painting on a quiz image
            self.viewer.layers.selection.active = self.viewer.layers["image"]
        n = trainee_score(project, self.trainee).n + 1
        keys = min(len(self.answer_buttons), TEACH_ANSWER_KEYS)
        self.case_label.setText(f"Case {n}: which class is it? (keys 1-{keys})")
        for label in (self.result_label, self.truth_label, self.model_label):
            label.setText("")
        self.bars.show_probabilities({}, None)
        self._shown_at = time.monotonic()
        self._update()
        return image_id

    def answer_index(self, index: int) -> TeachFeedback | None:
        """Answer with the ``index``-th class of the scheme (the keys 1-9)."""
        names = list(self.answer_buttons)
        return self.answer(names[index]) if 0 <= index < len(names) else None

    def answer(self, class_name: str) -> TeachFeedback | None:
        """Store the trainee's call for the blind case and reveal the truth."""
        project = self.state.project
        if project is None or self.trainee is None or not self.blind or self.image_id is None:
            return None
        seconds = time.monotonic() - self._shown_at
        try:
            feedback = submit_answer(
                project, self.trainee, self.image_id, class_name, seconds=seconds
            )
        except CytoReviewError as exc:
            self.state.message.emit("error", f"teaching: {exc}")
            return None
        self.blind = False
        self.last_feedback = feedback
        self._reveal(feedback)
        return feedback

    # -- reveal --------------------------------------------------------------------------------
    def _reveal(self, feedback: TeachFeedback) -> None:
        self.result_label.setText(
            "Right!" if feedback.correct else f"Not quite: you said {feedback.answer.answer}"
        )
        self.result_label.setStyleSheet(RIGHT_STYLE if feedback.correct else WRONG_STYLE)
        self.truth_label.setText(f"Expert label: {feedback.truth}")
        if feedback.model_pred is None:
            self.model_label.setText("Model: no prediction for this image yet")
        else:
            p = feedback.model_probabilities.get(feedback.model_pred, 0.0)
            self.model_label.setText(f"Model: {feedback.model_pred} ({100 * p:.0f}%)")
        self.bars.set_classes(list(self.answer_buttons))
        self.bars.show_probabilities(feedback.model_probabilities, feedback.model_pred)
        self.case_label.setText(f"Case {feedback.score.n}: revealed")
        self._set_mask_visible(True)
        if self.image_id is not None:
            self.heatmap.reveal(self.image_id)
        self._show_score()
        self._update()

    def _show_score(self) -> None:
        project = self.state.project
        if project is None or self.trainee is None:
            return
        score = (
            self.last_feedback.score
            if self.last_feedback is not None
            else trainee_score(project, self.trainee)
        )
        recall = ", ".join(
            f"{c} {'—' if r is None else f'{100 * r:.0f}%'}" for c, r in score.recall.items()
        )
        self.score_label.setText(
            f"{self.trainee}: {score.correct} / {score.n} right ({100 * score.accuracy:.0f}%)"
            f"\nper class: {recall}"
        )
        confusion_table(self.confusion, score.class_names, score.confusion)

    def _set_mask_visible(self, visible: bool) -> None:
        if "mask" in self.viewer.layers:
            self.viewer.layers["mask"].visible = visible
