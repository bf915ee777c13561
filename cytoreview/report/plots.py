"""Report pictures as bytes: matplotlib figures (PNG) and gallery thumbnails (JPEG/PNG).

Each plot builds its own :class:`~matplotlib.figure.Figure` on an Agg canvas: no pyplot, no
global backend switch, so plots can be drawn from worker threads while a GUI runs. Colours come
from the Okabe-Ito palette and the cividis colormap, both readable with colour-vision
deficiencies; lines also differ by style so a grey print still tells them apart. Heatmaps use
inferno (perceptually uniform, bright = high attention). Every ``plot_*`` function returns the
PNG file's bytes.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cytoreview.data.overlays import overlay_mask
from cytoreview.report.model import COUNT_FIELDS, RocCurve, finite_or_none

#: Pixels per inch of every figure: sizes in inches below map to fixed pixel sizes.
DPI = 100
#: Okabe-Ito colours (black left out: it is kept for reference lines).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
LINESTYLES = ("-", "--", "-.", ":")
_CMAP = "cividis"
_HEAT_LUT = (colormaps["inferno"](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)


def _figure(width_in: float, height_in: float) -> Figure:
    fig = Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself to fig: rendering never touches pyplot state
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # No "Software" text chunk: the same data gives the same bytes across matplotlib versions.
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buf.getvalue()


def plot_training_curves(
    epochs: Sequence[int],
    train_loss: Sequence[float],
    val_loss: Sequence[float] = (),
    metrics: Mapping[str, Sequence[float]] | None = None,
    *,
    title: str = "Training",
    best_epoch: int | None = None,
) -> bytes:
    """Loss per epoch (left) and validation scores per epoch (right, when given).

    Raises ValueError if there is no epoch or a series does not have one value per epoch.

    Parameters
    ----------
    epochs
        Epoch numbers.
    train_loss, val_loss
        Losses, one per epoch; ``val_loss`` may be empty.
    metrics
        Score name to values in [0, 1], one per epoch (``"IoU nucleus"``, ``"accuracy"``).
    title
        Figure title.
    best_epoch
        Epoch of the kept weights, marked with a dotted line.
    """
    metrics = {k: v for k, v in (metrics or {}).items() if len(v)}
    n = len(epochs)
    series = {"train loss": train_loss, "validation loss": val_loss, **metrics}
    if n == 0 or any(len(v) not in (0, n) for v in series.values()) or len(train_loss) != n:
        raise ValueError(f"training curves need one value per epoch ({n} epochs)")
    marker = "o" if n <= 30 else None  # a handful of epochs would otherwise be a bare line
    fig = _figure(9.0 if metrics else 5.5, 3.6)
    axes = fig.subplots(1, 2 if metrics else 1, squeeze=False)[0]
    ax = axes[0]
    dots = {"marker": marker, "ms": 3}
    ax.plot(epochs, train_loss, color=PALETTE[0], ls="-", label="train", **dots)
    if len(val_loss):
        ax.plot(epochs, val_loss, color=PALETTE[1], ls="--", label="validation", **dots)
    ax.set(xlabel="Epoch", ylabel="Loss (unitless)", title="Loss")
    if metrics:
        ax2 = axes[1]
        for i, (name, values) in enumerate(metrics.items()):
            style = {"color": PALETTE[i % len(PALETTE)], "ls": LINESTYLES[i % len(LINESTYLES)]}
            ax2.plot(epochs, values, label=name, **style, **dots)
        ax2.set(xlabel="Epoch", ylabel="Score (0–1)", title="Validation scores", ylim=(0, 1.02))
    for a in axes:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # no "epoch 2.5"
        if best_epoch is not None:
            a.axvline(best_epoch, color="black", ls=":", lw=1, label=f"kept (epoch {best_epoch})")
        a.grid(alpha=0.3)
        a.legend(fontsize=8, loc="best")
    fig.suptitle(title, fontsize=12)
    return _png(fig)


def plot_confusion_matrix(
    matrix: Any,
    class_names: Sequence[str],
    title: str = "Confusion matrix",
    normalise: bool = False,
) -> bytes:
    """Confusion matrix with the count and the row percentage in each cell.

    Raises ValueError if the matrix is not K x K.

    Parameters
    ----------
    matrix
        (K, K) counts; rows are the true class, columns the predicted one.
    class_names
        K names, in matrix order.
    title
        Figure title.
    normalise
        Colour cells by the share of their row (true class) instead of the raw count, so rare
        classes are as visible as common ones. Annotations show both in either case.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    k = len(class_names)
    if counts.shape != (k, k) or k == 0:
        raise ValueError(f"matrix shape {counts.shape} does not fit {k} class names")
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape, float), where=totals > 0)
    values = share if normalise else counts
    vmax = 1.0 if normalise else max(1, int(counts.max()))
    side = 4.2 + 0.45 * k
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap=_CMAP, vmin=0, vmax=vmax)
    cbar = fig.colorbar(image, ax=ax, shrink=0.8)
    cbar.set_label("Share of true class" if normalise else "Images (count)")
    font = max(6.0, min(10.0, 44.0 / k))
    cmap = image.get_cmap()
    for t in range(k):
        for p in range(k):
            r, g, b, _ = cmap(values[t, p] / vmax)
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # light text on dark cells
            pct = f"{100 * share[t, p]:.0f}%" if totals[t, 0] else "–"
            style = {"color": "white" if dark else "black", "fontsize": font}
            bold = "bold" if t == p else None  # the diagonal: correct calls
            ax.text(p, t, f"{counts[t, p]}\n{pct}", ha="center", va="center", weight=bold, **style)
    ticks = np.arange(k)
    slant = {"rotation": 30, "ha": "right"} if k > 3 else {}
    # Long names (the binary call's) wrap onto two lines instead of running into each other.
    ax.set_xticks(ticks, [textwrap.fill(str(c), 14) for c in class_names], **slant)
    ax.set_yticks(ticks, [f"{c} (n={int(totals[i, 0])})" for i, c in enumerate(class_names)])
    ax.set(xlabel="Predicted class", ylabel="True class")
    ax.set_title(title, fontsize=12)
    return _png(fig)


def plot_roc_curves(
    curves: Mapping[str, RocCurve | tuple[Sequence[float], Sequence[float], float | None]],
    title: str = "ROC curves",
) -> bytes:
    """ROC curves, one per class (one-vs-rest) or one for a binary call, with the chance line.

    Raises ValueError if ``curves`` is empty or a curve's rates differ in length.

    Parameters
    ----------
    curves
        Name to :class:`RocCurve` or ``(fpr, tpr, auc)``.
    title
        Figure title.
    """
    if not curves:
        raise ValueError("no ROC curve to plot")
    fig = _figure(5.6, 5.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="chance (AUC 0.50)")
    for i, (name, curve) in enumerate(curves.items()):
        roc = curve if isinstance(curve, RocCurve) else RocCurve(*curve)
        auc = finite_or_none(roc.auc)
        label = f"{name} (AUC {auc:.3f})" if auc is not None else f"{name} (AUC n/a)"
        style = {"color": PALETTE[i % len(PALETTE)], "ls": LINESTYLES[i % len(LINESTYLES)]}
        ax.plot(roc.fpr, roc.tpr, lw=1.8, label=label, **style)
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal")
    ax.set_xlabel("False positive rate (1 − specificity)")
    ax.set_ylabel("True positive rate (sensitivity)")
    ax.set_title(title, fontsize=12)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def plot_class_distribution(
    counts: Mapping[str, Mapping[str, int]],
    class_names: Sequence[str] | None = None,
    title: str = "Images per class",
) -> bytes:
    """Grouped bars: images, masks, seeds and predictions per class.

    Raises ValueError if there is no class.

    Parameters
    ----------
    counts
        Class name to series name to count; series names of :data:`COUNT_FIELDS` get their
        display name. Series that are zero for every class are left out (except images).
    class_names
        Class order; classes only in ``counts`` follow. Missing classes count zero.
    title
        Figure title.
    """
    classes = list(class_names or []) + [c for c in counts if c not in (class_names or [])]
    if not classes:
        raise ValueError("no class to plot")
    names = list(dict.fromkeys(["images", *(s for c in counts.values() for s in c)]))
    names = sorted(names, key=lambda s: list(COUNT_FIELDS).index(s) if s in COUNT_FIELDS else 99)
    table = {s: [int(counts.get(c, {}).get(s, 0)) for c in classes] for s in names}
    shown = [s for s in names if s == "images" or any(table[s])]
    fig = _figure(max(5.5, 1.1 * len(classes) + 3.0), 3.8)
    ax = fig.add_subplot()
    x = np.arange(len(classes))
    width = 0.8 / len(shown)
    for i, s in enumerate(shown):
        style = {"color": PALETTE[i % len(PALETTE)], "edgecolor": "black", "linewidth": 0.4}
        offset = (i - (len(shown) - 1) / 2) * width
        bars = ax.bar(x + offset, table[s], width, label=COUNT_FIELDS.get(s, s), **style)
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(x, classes, rotation=30 if len(classes) > 5 else 0)
    ax.set(xlabel="Class", ylabel="Images (count)")
    ax.margins(y=0.12)
    ax.set_title(title, fontsize=12)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=min(len(shown), 5), loc="upper center", bbox_to_anchor=(0.5, -0.2))
    return _png(fig)


def plot_morphometry(
    rows: Sequence[Mapping[str, Any]],
    x: str = "nc_ratio",
    group: str = "class",
    class_order: Sequence[str] | None = None,
    *,
    label: str = "N:C ratio",
    unit: str = "",
    title: str = "",
) -> bytes:
    """Box plot with every value as a point, one box per class (e.g. N:C ratio, NILM → HSIL).

    Raises ValueError if no row has a finite ``x``.

    Parameters
    ----------
    rows
        One mapping per image or cell; rows whose ``x`` is missing or not finite are skipped,
        rows without a class are drawn as "(unlabelled)".
    x
        Key of the plotted value.
    group
        Key of the class.
    class_order
        Box order; classes only found in ``rows`` follow. Classes without a value show ``n=0``.
    label, unit
        Axis label and unit (empty for ratios).
    title
        Figure title (default: ``label`` by class).
    """
    values: dict[str, list[float]] = {str(c): [] for c in class_order or []}
    for row in rows:
        v = finite_or_none(row.get(x))
        if v is not None:
            values.setdefault(str(row.get(group) or "(unlabelled)"), []).append(v)
    if not any(values.values()):
        raise ValueError(f"no finite {x!r} value to plot")
    classes = list(values)
    fig = _figure(max(5.0, 0.9 * len(classes) + 2.5), 4.0)
    ax = fig.add_subplot()
    pos = [i for i, c in enumerate(classes) if values[c]]
    ax.boxplot(
        [values[classes[i]] for i in pos],
        positions=pos,
        widths=0.55,
        showfliers=False,
        patch_artist=True,
        boxprops={"facecolor": "#E8EEF5", "edgecolor": "#333333"},
        medianprops={"color": PALETTE[5], "linewidth": 2},
    )
    rng = np.random.default_rng(0)  # fixed jitter: the same data draws the same picture
    for i in pos:
        ys = values[classes[i]]
        xs = i + rng.uniform(-0.18, 0.18, len(ys))
        colour = PALETTE[i % len(PALETTE)]
        ax.scatter(xs, ys, s=10, alpha=0.6, color=colour, edgecolors="none", zorder=3)
    ax.set_xticks(range(len(classes)), [f"{c}\nn={len(values[c])}" for c in classes])
    ax.set_xlim(-0.6, len(classes) - 0.4)
    ax.set(xlabel="Class", ylabel=f"{label} ({unit})" if unit else label)
    ax.set_title(title or f"{label} by class", fontsize=12)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def encode_image(rgb: np.ndarray, jpeg_quality: int | None = 85) -> tuple[bytes, str]:
    """Encode an (H, W, 3) uint8 RGB image: JPEG (``jpeg_quality``) or, with None, PNG.

    Returns
    -------
    tuple
        The bytes and their image subtype (``"jpeg"`` or ``"png"``), as in a data URI.
    """
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    kind = "png" if jpeg_quality is None else "jpeg"
    params = [] if jpeg_quality is None else [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
    ok, buf = cv2.imencode(f".{kind}", bgr, params)
    if not ok:
        raise ValueError(f"could not encode a {rgb.shape} image as {kind}")
    return buf.tobytes(), kind


def heatmap_overlay(rgb: np.ndarray, heatmap: np.ndarray, strength: float = 0.65) -> np.ndarray:
    """Blend an attention map over an RGB image: the hotter, the more opaque the inferno colour.

    Parameters
    ----------
    rgb
        (H, W, 3) uint8 image.
    heatmap
        2-D map of any size (resized to the image). Values in [0, 1] are kept as they are, so a
        weak map looks weak; other ranges are stretched to [0, 1]. ``nan`` counts as 0.
    strength
        Opacity of the hottest pixels; cold pixels keep the original picture.
    """
    heat = np.nan_to_num(np.asarray(heatmap, np.float32))
    low, high = float(heat.min()), float(heat.max())
    if low < 0 or high > 1:
        heat = (heat - low) / (high - low) if high > low else np.zeros_like(heat)
    heat = cv2.resize(heat, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = heat.clip(0, 1)
    alpha = strength * heat[..., None]
    colour = _HEAT_LUT[np.round(heat * 255).astype(np.uint8)].astype(np.float32)
    return (rgb * (1 - alpha) + colour * alpha).round().astype(np.uint8)


def thumbnails(
    rgb: np.ndarray, mask: np.ndarray | None, heatmap: np.ndarray | None, px: int = 256
) -> dict[str, np.ndarray]:
    """The image, its mask overlay and its heatmap overlay, longer side at most ``px``.

    Returns
    -------
    dict
        ``"original"`` and, when given, ``"mask"`` and ``"heatmap"``: (h, w, 3) uint8 RGB.
        Images are shrunk, never enlarged.
    """
    h, w = rgb.shape[:2]
    scale = min(1.0, px / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    out = {"original": image}
    if mask is not None:
        # Shrink the mask first so outlines are drawn 1 px wide at the thumbnail's own scale.
        small = cv2.resize(np.asarray(mask, np.uint8), size, interpolation=cv2.INTER_NEAREST)
        out["mask"] = overlay_mask(image, small)
    if heatmap is not None:
        out["heatmap"] = heatmap_overlay(image, heatmap)
    return out
