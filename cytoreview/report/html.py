"""The review report as one self-contained HTML page (images inlined, no script, no network).

:func:`render_report` turns a :class:`~cytoreview.report.model.ReportData` into bytes: the page
and, for reuse in slides or papers, each plot as its own PNG. Every string that may come from a
user (image names, class names, notes, flags, model ids) goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from cytoreview.report import plots
from cytoreview.report.model import (
    COUNT_FIELDS,
    ClassCounts,
    ClassificationSection,
    GalleryItem,
    MethodsSection,
    MorphometryTable,
    ReportData,
    SegmentationSection,
    TrainingCurve,
    finite_or_none,
)

DISCLAIMER = (
    "Research tool, not for primary diagnosis. Every result in this report comes from software "
    "under evaluation and must be confirmed by a qualified cytopathologist."
)
TRAIN_SEG_HINT = (
    "Not available yet: train a segmenter with <code>cytoreview train-seg</code> and score it "
    "with <code>cytoreview evaluate-seg</code>."
)
TRAIN_CLS_HINT = "Not available yet: train a classifier with <code>cytoreview train-cls</code>."
NO_MASK_QUALITY = (
    "Not measured: no ground truth was given. Score the masks with <code>cytoreview report "
    "--seg-truth FOLDER</code> (or <code>cytoreview evaluate-seg</code>)."
)
VALIDATION_IS_NOT_QUALITY = (
    " The validation scores below describe the model on its resized validation images, not "
    "the masks at their own size."
)
NO_DATA = "No image counted yet: import images with <code>cytoreview import</code>."
NO_GALLERY = "No image to show yet: the gallery fills once images are segmented or classified."
NO_MORPHOMETRY = "Not available yet: measurements need nucleus and cytoplasm masks."
_SEG_METRICS = {"dice": "Dice", "iou": "IoU", "precision": "Precision", "recall": "Recall"}
_SEG_KINDS = {
    "mean": "mean: average of the per-image scores",
    "pooled": "pooled: from the pixel counts of all images together",
}
_CSS = """
@page { size: A4; margin: 14mm 12mm; } * { print-color-adjust: exact; }
body { font: 10.5pt/1.45 "Segoe UI", "Helvetica Neue", Arial, sans-serif; color: #1a1a1a;
  max-width: 1000px; margin: 0 auto; padding: 16px; -webkit-print-color-adjust: exact; }
h1 { font-size: 20pt; margin: 0 0 4px; } h2 { font-size: 14pt; border-bottom: 2px solid #0072B2;
  padding-bottom: 2px; margin-top: 28px; break-after: avoid; } h3 { font-size: 11.5pt; }
.meta { color: #444; } .disclaimer { border: 2px solid #D55E00; background: #fff4ec;
  padding: 8px 12px; font-weight: 600; margin: 10px 0; }
.notes { border-left: 4px solid #E69F00; background: #fffaf0; padding: 6px 12px 6px 28px; }
.na { color: #555; font-style: italic; background: #f4f4f4; padding: 8px 12px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 9.5pt; max-width: 100%; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; } th { background: #eef2f6; }
td.t, th.t { text-align: left; overflow-wrap: break-word; } thead { display: table-header-group; }
tr, img, .card, figure { break-inside: avoid; } tr.total td { font-weight: 600; background: #eee }
.zero { color: #D55E00; font-weight: 600; } figure { margin: 8px 0; }
figure img { max-width: 100%; height: auto; } figcaption { font-size: 9pt; color: #444; }
.row figure { display: inline-block; width: 48%; vertical-align: top; margin-right: 1%; }
.card { border: 1px solid #ccc; border-radius: 4px; padding: 6px 8px; margin: 10px 0; }
.card.wrong { border: 2px solid #D55E00; } .card h3 { margin: 0 0 4px; overflow-wrap: anywhere; }
.cardt { width: 100%; table-layout: fixed; margin: 0; } .cardt > tbody > tr > td { border: none;
  vertical-align: top; padding: 2px 4px; text-align: left; } .cardt td.pic { width: 20%; }
.card figure { margin: 0; } .card figure img { width: 100%; border: 1px solid #ddd; }
.card figcaption { text-align: center; } .probs, .meas { width: 100%; } .cardt p { margin: 0; }
.missing { border: 1px dashed #bbb; color: #777; font-size: 9pt; text-align: center; padding: 30% 0}
.bar { background: #e6e6e6; height: 9px; width: 100% } .bar div { background: #0072B2; height: 9px }
.bar.pred div { background: #D55E00; } .probs td, .probs th, .meas td, .meas th { border: none;
  padding: 1px 4px; font-size: 9pt; } .probs th, .meas th { background: none; }
.flag { display: inline-block; background: #fdecc8; border: 1px solid #E69F00; border-radius: 3px;
  padding: 0 5px; margin: 2px 2px 0 0; font-size: 8.5pt; }
.legend { height: 8px; background: linear-gradient(to right, #000004, #420a68, #932667, #dd513a,
  #fca50a, #fcffa4); }
@media print { body { max-width: none; padding: 0; font-size: 9.5pt; } table { font-size: 8.5pt; } }
"""


def _e(value: Any) -> str:
    """Escape any value for HTML text or attributes."""
    return html.escape(str(value), quote=True)


def format_number(value: Any, digits: int | None = None) -> str:
    """Text of a number with sensible precision ("–" for missing or nan).

    ``value`` may be a number, ``None``/``nan`` (shown as "–") or text (escaped, never parsed).
    With ``digits`` None, integers print whole and floats get 3 decimals below 1, 2 below 100,
    1 below 1000, none above (thousands separated), and tiny non-zero values print as 1.2e-05.
    """
    if isinstance(value, (str, bool)):  # text stays text, even "1e5" (an image name)
        return _e(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    v = finite_or_none(value)
    if v is None:
        return "–"
    if digits is None:
        a = abs(v)
        if 0 < a < 0.001:
            return f"{v:.1e}"
        digits = 3 if a < 1 else 2 if a < 100 else 1 if a < 1000 else 0
    return f"{v:,.{digits}f}"


def _table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    text_cols: Iterable[int] = (0,),
    cls: str = "",
    foot: Sequence[str] | None = None,
) -> str:
    """A table from already-escaped cell texts; ``text_cols`` align left, numbers right."""
    left = set(text_cols)

    def row(cells: Sequence[str], tag: str) -> str:
        return "".join(
            f'<{tag} class="t">{c}</{tag}>' if i in left else f"<{tag}>{c}</{tag}>"
            for i, c in enumerate(cells)
        )

    body = "".join(f"<tr>{row(r, 'td')}</tr>" for r in rows)
    end = f"<tr class='total'>{row(foot, 'td')}</tr>" if foot else ""
    return (
        f'<table class="{cls}"><thead><tr>{row(head, "th")}</tr></thead>'
        f"<tbody>{body}{end}</tbody></table>"
    )


class _Page:
    """Collects plots (inlined in the page and kept as separate files)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def figure(self, name: str, png: bytes, caption: str) -> str:
        self.files[f"plots/{name}.png"] = png
        return f"<figure>{_img(png, 'png', caption)}<figcaption>{_e(caption)}</figcaption></figure>"

    def curve(self, name: str, curve: TrainingCurve | None, title: str) -> str:
        if curve is None or not len(curve.epochs):
            return ""
        c = curve
        png = plots.plot_training_curves(
            c.epochs, c.train_loss, c.val_loss, c.metrics, title=title, best_epoch=c.best_epoch
        )
        return self.figure(name, png, title)


def _img(data: bytes, kind: str, alt: str) -> str:
    uri = f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"
    return f'<img src="{uri}" alt="{_e(alt)}">'


def _gallery_card(item: GalleryItem, data: ReportData, px: int, quality: int) -> str:
    thumbs = plots.thumbnails(item.image, item.mask, item.heatmap, px)
    panels = []
    for key, caption in (
        ("original", "image"),
        ("mask", f"mask ({item.mask_provenance})" if item.mask_provenance else "mask"),
        ("heatmap", "Grad-CAM++ heatmap"),
    ):
        if key in thumbs:
            img = _img(*plots.encode_image(thumbs[key], quality), alt=f"{item.name} {caption}")
            legend = '<div class="legend"></div>low → high' if key == "heatmap" else ""
            panels.append(f"<figure>{img}<figcaption>{_e(caption)} {legend}</figcaption></figure>")
        else:
            panels.append(f'<div class="missing">no {key}</div>')
    wrong = item.true_class is not None and item.pred_class is not None
    wrong = wrong and item.true_class != item.pred_class
    verdict = " — <strong>disagrees</strong>" if wrong else ""
    call = f"True: <strong>{_e(item.true_class or 'unknown')}</strong> · Predicted: <strong>"
    call += f"{_e(item.pred_class or 'not classified')}</strong>{verdict}"
    if item.needs_review is not None:
        # The call the classification run stored (summed abnormal probability, or the binary
        # model's), not one re-derived here from the top class: the two can disagree.
        p = finite_or_none(item.p_review)
        odds = f" (P(needs review) {format_number(p, 2)})" if p is not None else ""
        verdict_text = "needs review" if item.needs_review else "normal"
        call += f"<br>Binary call: <strong>{verdict_text}</strong>{odds}"
    order = [c for c in data.class_names if c in item.probabilities]
    order += [c for c in item.probabilities if c not in order]
    probs = []
    for c in order:
        p = finite_or_none(item.probabilities[c])
        width = 0.0 if p is None else min(100.0, max(0.0, 100 * p))
        cls = "bar pred" if c == item.pred_class else "bar"  # the predicted class stands out
        bar = f'<div class="{cls}"><div style="width:{width:.1f}%"></div></div>'
        probs.append((_e(c), bar, format_number(p, 3)))
    info = [f"<p>{call}</p>"]
    if probs:
        info.append(_table(["Class", "Probability", ""], probs, (0, 1), cls="probs"))
    info.append("".join(f'<span class="flag">⚠ {_e(f)}</span>' for f in item.flags))
    if item.measurements:
        rows = [(_e(k), format_number(v)) for k, v in item.measurements.items()]
        info.append(_table(["Measurement", "Value"], rows, cls="meas"))
    # A table, not a CSS grid: it lays out the same in every browser, mail client and printer.
    cells = "".join(f'<td class="pic">{p}</td>' for p in panels)
    return (
        f'<div class="card{" wrong" if wrong else ""}"><h3>{_e(item.name)}</h3><table '
        f'class="cardt"><tr>{cells}<td class="t">{"".join(info)}</td></tr></table></div>'
    )


def _header(data: ReportData) -> str:
    meta = []
    if data.project_name:
        meta.append(f"Project: <strong>{_e(data.project_name)}</strong>")
    if data.created_at is not None:
        meta.append(f"Created: {_e(data.created_at.strftime('%Y-%m-%d %H:%M %Z').strip())}")
    if data.software_version:
        meta.append(f"CytoReview {_e(data.software_version)}")
    for what, section in (("Segmenter", data.segmentation), ("Classifier", data.classification)):
        if section is not None and (section.model_id or section.arch):
            model = " ".join(filter(None, (section.model_id, section.arch and f"({section.arch})")))
            meta.append(f"{what}: <code>{_e(model)}</code>")
    classes = ", ".join(_e(c) for c in data.class_names)
    return (
        f"<header><h1>{_e(data.title)}</h1><p class='meta'>{' · '.join(meta)}</p>"
        f"<p class='meta'>Classes: {classes}</p><div class='disclaimer'>{DISCLAIMER}</div>"
        "</header>"
    )


def _notes(data: ReportData) -> str:
    if not data.notes:
        return "<h2>Notes and warnings</h2><p>No warning.</p>"
    items = "".join(f"<li>{_e(n)}</li>" for n in data.notes)
    return f"<h2>Notes and warnings</h2><ul class='notes'>{items}</ul>"


def _summary(data: ReportData, page: _Page) -> str:
    out = ["<h2>Data summary</h2>"]
    if not data.data_summary:
        return out[0] + f"<p class='na'>{NO_DATA}</p>"
    classes = list(data.class_names) + [c for c in data.data_summary if c not in data.class_names]
    counts = {c: data.data_summary.get(c, ClassCounts()).as_dict() for c in classes}
    rows = []
    for c in classes:
        cells = [format_number(v) for v in counts[c].values()]
        if not counts[c]["images"]:  # an empty class is a gap in the data: say it in words
            cells[0] = '<span class="zero">0 (none)</span>'
        rows.append([_e(c), *cells])
    totals = [format_number(sum(counts[c][k] for c in classes)) for k in COUNT_FIELDS]
    out.append(_table(["Class", *COUNT_FIELDS.values()], rows, foot=["Total", *totals]))
    png = plots.plot_class_distribution(counts, list(data.class_names))
    out.append(page.figure("class_distribution", png, "Images, masks and predictions per class"))
    return "".join(out)


def _seg_scores(sec: SegmentationSection) -> str:
    """One set of segmentation scores: what they are, in words, then the table."""
    where = f" ({_e(sec.evaluated_on)})" if sec.evaluated_on else ""
    regions = [r for r in dict.fromkeys([*sec.mean, *sec.pooled]) if r != "overall"]
    kinds = {"mean": sec.mean, "pooled": sec.pooled}
    # Only scores that were recorded: a training run stores Dice and IoU, not the others.
    cols = [(k, m) for k, v in kinds.items() for m in _SEG_METRICS
            if any(finite_or_none(v.get(r, {}).get(m)) is not None for r in regions)]  # fmt: skip
    # Say only what the columns hold: "mean" for a pooled score was how this report misled.
    said = "; ".join(_SEG_KINDS[k] for k in dict.fromkeys(k for k, _ in cols))
    said = f" {said[0].upper()}{said[1:]}." if said else ""
    out = [f"<p>Scores on {format_number(sec.n_images)} images{where}.{said}</p>"]
    head = ["Region"] + [f"{_SEG_METRICS[m]} ({k})" for k, m in cols]
    rows = [[_e(r)] + [format_number(kinds[k].get(r, {}).get(m), 3) for k, m in cols]
            for r in regions]  # fmt: skip
    out.append(_table(head, rows) if cols else "<p class='na'>No score recorded.</p>")
    acc = sec.mean.get("overall", {}).get("accuracy")
    if acc is not None:
        out.append(f"<p>Mean 3-class pixel accuracy: {format_number(acc, 3)}</p>")
    return "".join(out)


def _segmentation(data: ReportData, page: _Page) -> str:
    out = ["<h2>Segmentation</h2>"]
    sec = data.segmentation
    if sec is None and not data.mask_quality:
        return out[0] + f"<p class='na'>{TRAIN_SEG_HINT}</p>"
    out.append("<h3>Mask quality against ground truth (native resolution)</h3>")
    if data.mask_quality:
        for quality in data.mask_quality:
            if quality.title:
                out.append(f"<p><strong>{_e(quality.title)}</strong></p>")
            out.append(_seg_scores(quality))
    else:
        extra = VALIDATION_IS_NOT_QUALITY if sec is not None else ""
        out.append(f"<p class='na'>{NO_MASK_QUALITY}{extra}</p>")
    if sec is not None:
        out.append(f"<h3>{_e(sec.title or 'Validation during training')}</h3>")
        out.append(_seg_scores(sec))
        out.append(page.curve("segmentation_training", sec.curve, "Segmenter training"))
    return "".join(out)


def _methods(sec: MethodsSection | None) -> str:
    """Segmentation methods side by side: training validation, then masks against the truth."""
    if sec is None or (len(sec.trained) < 2 and not sec.scored):
        return ""
    out = ["<h2>Segmentation methods compared</h2>"]
    if sec.trained:
        tags = {t: chr(ord("A") + i) for i, t in enumerate(dict.fromkeys(
            r["split_tag"] for r in sec.trained))}  # fmt: skip
        out.append(
            "<p>Every trained segmenter, scored by its own training run on its validation "
            "images at its input size (pooled over pixels). Only rows with the same validation "
            "split letter were scored on the same images.</p>"
        )
        head = ["Model", "Method", "Recipe", "Train / val", "Input px", "Time",
                "Dice cyto", "Dice nuc", "IoU cyto", "IoU nuc", "Split"]  # fmt: skip
        rows = []
        for r in sec.trained:
            score = r.get("scores", {})
            seconds = r.get("seconds")
            rows.append([
                _e(r["model_id"]) + (" (in use)" if r.get("current") else ""), _e(r["method"]),
                _e(r.get("preset") or "defaults"), f"{r['n_train']} / {r['n_val']}",
                format_number(r.get("input_size")),
                "—" if seconds is None else f"{format_number(seconds / 60, 1)} min",
                *(format_number(score.get(k), 3) for k in
                  ("dice_cytoplasm", "dice_nucleus", "iou_cytoplasm", "iou_nucleus")),
                tags[r["split_tag"]],
            ])  # fmt: skip
        out.append(_table(head, rows, text_cols=(0, 1, 2)))
    if sec.scored:
        out.append(
            f"<p>Each method's latest mask of each image against the ground truth in "
            f"{_e(sec.truth_dir)}, on the {format_number(sec.shared_images)} image(s) every "
            "method masked, at each image's own size (mean over images).</p>"
        )
        head = ["Method", "Source", "Images", "Dice cyto", "Dice nuc", "IoU cyto", "IoU nuc"]
        rows = [
            [_e(r["method"]), _e(r["source"]), format_number(r["n_images"]),
             *(format_number(r["mean"].get(region, {}).get(metric), 3)
               for metric in ("dice", "iou") for region in ("cytoplasm", "nucleus"))]
            for r in sec.scored
        ]  # fmt: skip
        out.append(_table(head, rows, text_cols=(0, 1)))
    return "".join(out)


def _classification(sec: ClassificationSection | None, page: _Page) -> str:
    out = ["<h2>Classification</h2>"]
    if sec is None:
        return out[0] + f"<p class='na'>{TRAIN_CLS_HINT}</p>"
    where = f" ({_e(sec.evaluated_on)})" if sec.evaluated_on else ""
    s = sec.inference_s_per_image
    speed = f", {format_number(1000 * s, 1)} ms per image" if s is not None else ""
    out.append(
        f"<p>Scores on {format_number(sec.n_images)} images{where}. Accuracy <strong>"
        f"{format_number(sec.accuracy, 3)}</strong>, macro F1 <strong>"
        f"{format_number(sec.macro_f1, 3)}</strong>{speed}.</p>"
    )
    keys = ("precision", "recall", "f1")
    rows = [
        [_e(c), *(format_number(getattr(v, k), 3) for k in keys), format_number(v.support)]
        for c, v in sec.per_class.items()
    ]
    out.append(_table(["Class", "Precision", "Recall", "F1", "Support (images)"], rows))
    title = "Confusion matrix (colour: share of true class)"
    png = plots.plot_confusion_matrix(sec.confusion, sec.class_names, title, normalise=True)
    figs = [page.figure("confusion_matrix", png, "Rows: true class; columns: predicted class.")]
    if sec.roc:
        png = plots.plot_roc_curves(sec.roc, "ROC, one class vs rest")
        figs.append(page.figure("roc", png, "One-vs-rest ROC curves per class."))
    out.append(f"<div class='row'>{''.join(figs)}</div>")
    b = sec.binary
    if b is not None:
        out.append("<h3>Binary call: normal vs needs review</h3>")
        names = ["F1 (needs review)", "Macro F1", "Sensitivity", "Specificity", "AUC"]
        vals = [b.f1_abnormal, b.macro_f1, b.sensitivity, b.specificity, b.auc]
        rows = [[n, format_number(v, 3)] for n, v in zip(names, vals, strict=True)]
        out.append(_table(["Score", "Value"], rows))
        png = plots.plot_confusion_matrix(b.confusion, list(b.labels), "Binary confusion matrix")
        figs = [page.figure("confusion_binary", png, "Rows: true call; columns: predicted.")]
        if b.roc is not None:
            png = plots.plot_roc_curves({b.labels[1]: b.roc}, "ROC, binary call")
            figs.append(page.figure("roc_binary", png, f"Positive class: {b.labels[1]}."))
        out.append(f"<div class='row'>{''.join(figs)}</div>")
    out.append(page.curve("classification_training", sec.curve, "Classifier training"))
    return "".join(out)


def _gallery(data: ReportData, max_items: int, px: int, quality: int) -> str:
    out = ["<h2>Gallery</h2>"]
    if not data.gallery:
        return out[0] + f"<p class='na'>{NO_GALLERY}</p>"
    shown = list(data.gallery)[: max(0, max_items)]
    out.append(
        f"<p>{len(shown)} of {len(data.gallery)} images. Each row: the image, its mask "
        "(green cytoplasm, magenta nucleus), where the classifier looked, and its call."
        " A red border marks a call that disagrees with the label.</p>"
    )
    out.extend(_gallery_card(item, data, px, quality) for item in shown)
    return "".join(out)


def _morphometry(
    table: MorphometryTable | None, data: ReportData, page: _Page, max_rows: int
) -> str:
    out = ["<h2>Morphometry</h2>"]
    if table is None or not table.rows:
        return out[0] + f"<p class='na'>{NO_MORPHOMETRY}</p>"
    ratio = [r for r in table.rows if finite_or_none(r.get(table.ratio_column)) is not None]
    if ratio:
        label = table.labels.get(table.ratio_column, "N:C ratio")
        unit = table.units.get(table.ratio_column, "")
        args = (ratio, table.ratio_column, table.class_column, list(data.class_names))
        png = plots.plot_morphometry(*args, label=label, unit=unit)
        out.append(page.figure("morphometry", png, f"{label} per class; each dot is one row."))
    rows = list(table.rows)[: max(0, max_rows)]
    if len(rows) < len(table.rows):
        out.append(f"<p>First {len(rows)} of {len(table.rows)} rows.</p>")
    cells = [[format_number(r.get(k)) for k in table.columns] for r in rows]
    texts = [i for i, k in enumerate(table.columns) if any(isinstance(r.get(k), str) for r in rows)]
    out.append(_table([_e(table.header(k)) for k in table.columns], cells, texts))
    return "".join(out)


def render_report(
    data: ReportData,
    *,
    max_gallery: int = 200,
    thumb_px: int = 256,
    jpeg_quality: int = 85,
    max_table_rows: int = 2000,
    include_plot_files: bool = True,
) -> dict[str, bytes]:
    """Render the report page and its plots.

    Parameters
    ----------
    data
        What to show.
    max_gallery
        Gallery items shown at most (the first ones, in the caller's order).
    thumb_px
        Longer side of gallery thumbnails; larger images are downscaled, never upscaled.
    jpeg_quality
        JPEG quality of thumbnails (about 15-25 kB each at 256 px).
    max_table_rows
        Morphometry rows shown at most (the plot uses every row).
    include_plot_files
        Also return each plot as ``plots/<name>.png``.

    Returns
    -------
    dict
        ``"report.html"`` (UTF-8, self-contained) and, optionally, ``"plots/*.png"``.
    """
    page = _Page()
    body = [
        _header(data),
        _notes(data),
        _summary(data, page),
        _segmentation(data, page),
        _methods(data.methods),
        _classification(data.classification, page),
        _gallery(data, max_gallery, thumb_px, jpeg_quality),
        _morphometry(data.morphometry, data, page, max_table_rows),
    ]
    doc = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(data.title)}'
        f"</title><style>{_CSS}</style></head><body>{''.join(body)}<footer class='meta'>"
        f"<p>{DISCLAIMER}</p></footer></body></html>"
    )
    files = {"report.html": doc.encode("utf-8")}
    if include_plot_files:
        files.update(page.files)
    return files
