"""A live training plot whose per-epoch update costs a few milliseconds of the GUI thread.

A full matplotlib redraw of a two-panel figure (ticks, labels, legends) takes 50-150 ms on a
busy 2-core CPU, and training on a small data set ends several epochs a second: drawing each
one fully stalled the window (the worst 1 % of 10 ms timer ticks waited 60-140 ms). So the
static part of the figure (axes, ticks, titles) is drawn once and kept as a bitmap, and an
update only paints the curves on top of it (matplotlib "blitting"). The axes'
limits grow in round steps (10, 20, 50 epochs ...), so a full redraw is needed only a handful
of times per run.
"""

from __future__ import annotations

import math
from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

#: Curves of the loss axes: (metric key, label).
LOSS_CURVES = (("train_loss", "train"), ("val_loss", "validation"))
#: Curves of the segmentation score axes.
IOU_CURVES = (("iou_cytoplasm", "cytoplasm"), ("iou_nucleus", "nucleus"))


def nice_ceiling(value: float, minimum: float = 0.0) -> float:
    """The smallest number of the 1-2-5 series (…, 0.5, 1, 2, 5, 10, 20, …) >= ``value``.

    Axis limits move in these steps, so they change rarely while a curve grows.
    """
    if not math.isfinite(value) or value <= minimum:
        return max(minimum, 1.0) if minimum <= 0 else minimum
    exponent = math.floor(math.log10(value))
    for mantissa in (1.0, 2.0, 5.0, 10.0):
        candidate = mantissa * 10.0**exponent
        if candidate >= value * (1 - 1e-9):
            return max(candidate, minimum)
    return max(10.0 ** (exponent + 1), minimum)  # pragma: no cover - the loop always returns


def _theme_colours() -> tuple[str, str]:
    """Background and ink colours of napari's current theme (plots match the docks)."""
    try:
        from napari.settings import get_settings
        from napari.utils.theme import get_theme

        name = get_settings().appearance.theme
        theme = get_theme("dark" if name == "system" else name)
        return theme.foreground.as_hex(), theme.text.as_hex()
    except Exception:  # noqa: BLE001 - a missing or odd theme: fall back to napari's dark
        return "#2e333e", "#f0f1f2"


class TrainingPlot(FigureCanvasQTAgg):
    """Loss and validation scores (per-class IoU by default) per epoch, updated after each one.

    Attributes
    ----------
    full_draws : int
        How many times the whole figure was rendered (a benchmark and test hook: updates
        within the current limits must not add to it).
    """

    def __init__(
        self,
        score_curves: tuple[tuple[str, str], ...] = IOU_CURVES,
        score_title: str = "IoU",
    ) -> None:
        self.background, self.ink = _theme_colours()
        self.figure = Figure(figsize=(4.2, 2.2), facecolor=self.background)
        super().__init__(self.figure)
        self.loss_axes = self.figure.add_subplot(1, 2, 1)
        self.score_axes = self.figure.add_subplot(1, 2, 2)
        self.figure.subplots_adjust(left=0.12, right=0.98, bottom=0.2, top=0.88, wspace=0.3)
        self.setMinimumHeight(170)
        self.full_draws = 0
        self._lines: dict[str, Any] = {}
        self._bitmap: Any = None  # the figure without its curves, from the last full draw
        for axes, curves, title in (
            (self.loss_axes, LOSS_CURVES, "loss"),
            (self.score_axes, score_curves, score_title),
        ):
            axes.set_facecolor(self.background)
            for key, label in curves:
                (line,) = axes.plot([], [], marker="o", markersize=3, label=label, animated=True)
                self._lines[key] = line
            axes.set_title(title, fontsize=9, color=self.ink, loc="left")
            axes.set_xlabel("epoch", fontsize=8, color=self.ink)
            axes.tick_params(labelsize=7, colors=self.ink)
            axes.xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))  # whole epochs
            for spine in axes.spines.values():
                spine.set_color(self.ink)
            # Above the axes, beside the title: the curves never cross it, so it stays in the
            # kept bitmap instead of being re-rendered (text is the slow part) at each update.
            axes.legend(
                fontsize=7, labelcolor=self.ink, frameon=False, ncol=2, loc="lower right",
                bbox_to_anchor=(1.02, 0.98), handlelength=1.2, columnspacing=0.8,
                borderaxespad=0.0,
            )  # fmt: skip
        self.score_axes.set_ylim(0, 1)
        self._hint = self.loss_axes.text(
            0.5, 0.5, "curves appear\nafter each epoch", ha="center", va="center", fontsize=8,
            color=self.ink, transform=self.loss_axes.transAxes,
        )  # fmt: skip
        self._limits: tuple[float, float] = (0.0, 0.0)
        self.mpl_connect("draw_event", self._on_full_draw)
        self.show_history([])

    # -- updates -------------------------------------------------------------------------------
    def show_history(self, history: list[dict[str, float]]) -> None:
        """Show the epochs' metrics (each with an ``epoch`` key)."""
        epochs = [h["epoch"] for h in history]
        for key, line in self._lines.items():
            line.set_data(epochs, [h.get(key, float("nan")) for h in history])
        losses = [
            v
            for h in history
            for key, _ in LOSS_CURVES
            if isinstance(v := h.get(key), int | float) and math.isfinite(v)
        ]
        limits = (
            nice_ceiling(max(epochs, default=0.0), minimum=5.0),
            nice_ceiling(max(losses, default=1.0) * 1.05),
        )
        hint_changed = self._hint.get_visible() != (not history)
        self._hint.set_visible(not history)
        if limits != self._limits or hint_changed or self._bitmap is None:
            self._limits = limits
            for axes in (self.loss_axes, self.score_axes):
                axes.set_xlim(0.5, limits[0] + 0.5)
            self.loss_axes.set_ylim(0, limits[1])
            self.score_axes.set_ylim(0, 1)
            self.draw_idle()  # the full draw paints the curves too (see _on_full_draw)
        else:
            self._paint_dynamic()

    # -- drawing -------------------------------------------------------------------------------
    def _on_full_draw(self, _event: object) -> None:
        """After every full render (limits, resizes, theme): keep the bitmap, add the curves."""
        self.full_draws += 1
        self._bitmap = self.copy_from_bbox(self.figure.bbox)
        self._draw_animated()

    def _draw_animated(self) -> None:
        for line in self._lines.values():
            line.axes.draw_artist(line)

    def _paint_dynamic(self) -> None:
        """The curves over the kept bitmap; Qt paints the result with its next frame."""
        self.restore_region(self._bitmap)
        self._draw_animated()
        self.blit(self.figure.bbox)

    def blit(self, bbox: Any = None) -> None:
        """Schedule a paint of the canvas instead of matplotlib's synchronous ``repaint``.

        ``repaint`` paints at once and waits for the window's buffer swap (a frame, ~16 ms,
        measured); ``update`` lets Qt paint it with the next frame, coalesced with the rest.
        """
        self.update()
