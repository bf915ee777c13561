"""Widgets that change while a job runs must not stall the window.

The live plot renders the whole figure only when its limits change, the progress bar paints
with the next frame instead of synchronously, and a status label's new text never resizes its
dock (each of these stalled the event loop during training; see the GUI benchmark).
"""

from __future__ import annotations

import gc

import pytest
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from cytoreview.gui.app import freeze_startup_heap
from cytoreview.gui.live_plot import TrainingPlot, nice_ceiling
from cytoreview.gui.progress_widgets import SmoothProgressBar, StatusLabel
from tests.conftest import PATIENCE_MS

pytestmark = pytest.mark.gui


@pytest.mark.parametrize(
    ("value", "minimum", "expected"),
    [(0.0, 5.0, 5.0), (3, 5.0, 5.0), (5, 5.0, 5.0), (6, 5.0, 10.0), (11, 5.0, 20.0),
     (21, 5.0, 50.0), (51, 5.0, 100.0), (0.7, 0.0, 1.0), (1.05, 0.0, 2.0), (0.031, 0.0, 0.05),
     (float("nan"), 0.0, 1.0)],
)  # fmt: skip
def test_nice_ceiling_steps_through_1_2_5(value: float, minimum: float, expected: float) -> None:
    assert nice_ceiling(value, minimum) == pytest.approx(expected)


def _epochs(n: int, loss: float = 0.8) -> list[dict[str, float]]:
    return [
        {"epoch": float(e), "train_loss": loss, "val_loss": loss, "iou_cytoplasm": 0.5,
         "iou_nucleus": 0.6}
        for e in range(1, n + 1)
    ]  # fmt: skip


def test_plot_renders_fully_only_when_its_limits_change(qtbot) -> None:
    plot = TrainingPlot()
    qtbot.addWidget(plot)
    plot.resize(420, 220)
    plot.show()
    qtbot.waitExposed(plot)
    plot.show_history(_epochs(1))
    qtbot.waitUntil(lambda: plot.full_draws >= 1, timeout=PATIENCE_MS)
    qtbot.wait(50)
    base = plot.full_draws
    for n in (2, 3, 4, 5):  # inside the first x range (5 epochs) and the loss range (1.0)
        plot.show_history(_epochs(n))
        qtbot.wait(10)
    assert plot.full_draws == base
    line = plot.loss_axes.lines[0]
    assert list(line.get_xdata()) == [1.0, 2.0, 3.0, 4.0, 5.0]  # the curve itself is current
    plot.show_history(_epochs(6))  # epoch 6: the x axis grows to 10
    qtbot.waitUntil(lambda: plot.full_draws == base + 1, timeout=PATIENCE_MS)
    assert plot.loss_axes.get_xlim()[1] == pytest.approx(10.5)
    plot.show_history(_epochs(6, loss=1.7))  # a higher loss: the y axis grows to 2
    qtbot.waitUntil(lambda: plot.full_draws == base + 2, timeout=PATIENCE_MS)
    assert plot.loss_axes.get_ylim()[1] == pytest.approx(2.0)


def _counting_bar(base: type[QProgressBar]) -> QProgressBar:
    """A bar of class ``base`` that counts its paint events (in ``type(bar).paints``)."""

    class Counted(base):  # type: ignore[valid-type, misc]
        paints = 0

        def paintEvent(self, event: object) -> None:
            type(self).paints += 1
            super().paintEvent(event)

    return Counted()


@pytest.mark.parametrize(
    ("base", "synchronous"), [(QProgressBar, True), (SmoothProgressBar, False)]
)
def test_progress_bar_paints_with_the_next_frame(qtbot, base: type, synchronous: bool) -> None:
    bar = _counting_bar(base)
    qtbot.addWidget(bar)
    bar.setRange(0, 10)
    bar.show()
    qtbot.waitExposed(bar)
    qtbot.wait(50)
    before = type(bar).paints
    bar.setValue(5)  # a visible change: Qt's own bar repaints inside this call
    assert bar.value() == 5
    assert (type(bar).paints > before) is synchronous
    qtbot.waitUntil(lambda: type(bar).paints > before, timeout=PATIENCE_MS)  # painted all the same
    bar.setRange(0, 20)
    assert (bar.minimum(), bar.maximum(), bar.value()) == (0, 20, 5)


@pytest.mark.parametrize(("label_class", "grows"), [(QLabel, True), (StatusLabel, False)])
def test_status_text_does_not_widen_its_panel(qtbot, label_class: type, grows: bool) -> None:
    panel = QWidget()
    qtbot.addWidget(panel)
    layout = QVBoxLayout(panel)
    row = QHBoxLayout()
    label = label_class("")
    row.addWidget(QLabel("Device: cpu"), 1)
    row.addWidget(label, 1)
    layout.addLayout(row)
    width = panel.minimumSizeHint().width()
    label.setText("train 180/200, loss 0.5231, ETA 1 h 12 min 30 s " * 3)
    layout.activate()
    assert (panel.minimumSizeHint().width() > width) is grows
    if not grows:
        assert "ETA" in label.toolTip()  # the whole text is one hover away


def test_freeze_startup_heap_moves_objects_out_of_the_collectors_way() -> None:
    try:
        frozen = freeze_startup_heap()
        assert frozen > 1000
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
