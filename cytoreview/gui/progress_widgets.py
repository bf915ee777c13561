"""Progress, status and form widgets that update without stalling or widening the window.

``QProgressBar.setValue`` calls ``repaint()`` whenever the change is visible: the bar paints at
once and the window waits for its buffer swap, about a frame (16 ms measured under Xvfb, two
of them when the range changes too), on every training step. With updates disabled that
``repaint()`` does nothing, and re-enabling them schedules an ordinary ``update()`` that Qt
paints with the next frame.
"""

from __future__ import annotations

from typing import TypeVar

from qtpy.QtWidgets import QLabel, QProgressBar, QSizePolicy, QWidget

W = TypeVar("W", bound=QWidget)


class SmoothProgressBar(QProgressBar):
    """A :class:`QProgressBar` whose value and range changes are painted with the next frame."""

    def setValue(self, value: int) -> None:  # noqa: N802 - Qt's name
        """Set the value; the bar is repainted asynchronously."""
        self.setUpdatesEnabled(False)
        try:
            super().setValue(value)
        finally:
            self.setUpdatesEnabled(True)  # implies update()

    def setRange(self, minimum: int, maximum: int) -> None:  # noqa: N802 - Qt's name
        """Set the range; the bar is repainted asynchronously."""
        self.setUpdatesEnabled(False)
        try:
            super().setRange(minimum, maximum)
        finally:
            self.setUpdatesEnabled(True)


class StatusLabel(QLabel):
    """A one-line label whose changing text never resizes the dock it sits in.

    A plain :class:`QLabel` asks for the width of its text: each new ETA or loss value changed
    the dock's minimum width, napari re-laid out the window and re-rendered its canvas and the
    live plot (60-130 ms of the GUI thread per change, measured while a training ran). This one
    takes the width the layout gives it and clips; the full text is in its tooltip.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(0)
        self.setToolTip(text)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt's name
        """Show ``text`` (clipped to the label's width; whole in the tooltip)."""
        super().setText(text)
        self.setToolTip(text)


def compact(widget: W, min_width: int = 70) -> W:
    """Let a form field shrink to ``min_width`` px in a narrow dock (it still asks for more).

    Combo boxes are as wide as their longest item ("efficientnet_b2", "fusion-flatten") and
    spin boxes as their largest value: side by side they made the classifier form wider than
    its dock at 1600 px, with a sideways scroll bar. An explicit minimum width replaces those
    minimum hints in Qt's layouts.
    """
    widget.setMinimumWidth(min_width)
    return widget
