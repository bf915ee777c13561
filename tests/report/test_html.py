"""The HTML report: every section, every image embedded and decodable, user text escaped."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from html.parser import HTMLParser

import cv2
import numpy as np
import pytest

from cytoreview.report.html import (
    DISCLAIMER,
    NO_DATA,
    NO_GALLERY,
    NO_MORPHOMETRY,
    TRAIN_CLS_HINT,
    TRAIN_SEG_HINT,
    format_number,
    render_report,
)
from cytoreview.report.model import (
    BinarySection,
    ClassCounts,
    ClassificationSection,
    ClassScores,
    GalleryItem,
    MorphometryTable,
    ReportData,
    RocCurve,
    SegmentationSection,
    TrainingCurve,
)

CLASSES = ("NILM", "ASC-US", "LSIL", "HSIL")
EVIL = "<script>alert('x')</script>"
SECTIONS = [
    "Notes and warnings",
    "Data summary",
    "Segmentation",
    "Classification",
    "Gallery",
    "Morphometry",
]


class Page(HTMLParser):
    """Collects headings, image sources and every tag name of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.images: list[tuple[str, str]] = []
        self.headings: list[str] = []
        self._in_h2 = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in_h2 = tag == "h2"
        if tag == "img":
            a = dict(attrs)
            self.images.append((a["src"] or "", a.get("alt") or ""))

    def handle_data(self, data: str) -> None:
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


def decode_uri(src: str) -> np.ndarray:
    match = re.fullmatch(r"data:image/(png|jpeg);base64,([A-Za-z0-9+/=]+)", src)
    assert match, src[:60]
    image = cv2.imdecode(np.frombuffer(base64.b64decode(match[2]), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.size > 0
    return image


def gallery_item(name: str, true: str, pred: str, size: tuple[int, int], seed: int) -> GalleryItem:
    rng = np.random.default_rng(seed)
    h, w = size
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    mask[h // 2 - 3 : h // 2 + 3, w // 2 - 3 : w // 2 + 3] = 2
    probs = dict(zip(CLASSES, rng.dirichlet(np.ones(4)).tolist(), strict=True))
    return GalleryItem(
        name=name,
        image=image,
        true_class=true,
        pred_class=pred,
        probabilities=probs,
        mask=mask,
        heatmap=rng.random((7, 7)).astype(np.float32),
        mask_provenance="auto",
        flags=["looks at background", EVIL],
        measurements={"N:C ratio": 0.31234, "Nucleus area (µm²)": 1234.567},
    )


@pytest.fixture(scope="module")
def full() -> ReportData:
    ep = [1, 2, 3, 4]
    f = np.linspace(0, 1, 12)
    scores = {"dice": 0.91234, "iou": 0.8, "precision": None, "recall": float("nan")}
    cm = np.array([[8, 1, 0, 0], [1, 3, 1, 0], [0, 1, 5, 1], [0, 0, 1, 6]])
    cls = ClassificationSection(
        class_names=CLASSES,
        accuracy=0.78947,
        macro_f1=0.7,
        per_class={c: ClassScores(0.8, 0.7, 0.75, int(cm[i].sum())) for i, c in enumerate(CLASSES)},
        confusion=cm,
        n_images=int(cm.sum()),
        evaluated_on="validation images",
        roc={c: RocCurve(f, np.sqrt(f), 0.8) for c in CLASSES},
        binary=BinarySection(0.9, 0.88, 0.93, 0.81, 0.95, [[8, 1], [2, 18]], RocCurve(f, f, 0.5)),
        curve=TrainingCurve(
            ep, [1.0, 0.7, 0.5, 0.4], [1.1, 0.8, 0.6, 0.6], {"acc": [0.3, 0.5, 0.6, 0.7]}
        ),
        model_id="cls-0001",
        arch="resnet18",
        inference_s_per_image=0.01234,
    )
    seg = SegmentationSection.from_metrics_dict(
        {
            "n_images": 7,
            "mean": {
                "nucleus": scores,
                "cytoplasm": {"dice": 0.9, "iou": 0.8, "precision": 0.85, "recall": 0.7},
                "overall": {"accuracy": 0.95},
            },
            "pooled": {"nucleus": scores},
        },
        model_id="seg-0002",
        arch="unet/resnet34",
        curve=TrainingCurve(
            ep,
            [1.0, 0.6, 0.4, 0.3],
            [1.0, 0.7, 0.5, 0.45],
            {"IoU nucleus": [0.2, 0.4, 0.6, 0.7]},
            best_epoch=4,
        ),
    )
    gallery = [
        gallery_item(f"{EVIL}.png", "HSIL", "LSIL", (400, 600), 0),
        gallery_item("cell_b.png", "NILM", "NILM", (48, 40), 1),
        gallery_item("cell_c.png", "LSIL", "LSIL", (64, 64), 2),
    ]
    gallery[2] = GalleryItem(name="no_mask.png", image=gallery[2].image, true_class="LSIL")
    rows = [
        {
            "image": f"img{i}",
            "class": CLASSES[i % 4],
            "nucleus_area": 50.0 + 7.5 * i,
            "nc_ratio": 0.1 + 0.05 * (i % 4),
        }
        for i in range(16)
    ] + [{"image": EVIL, "class": "HSIL", "nucleus_area": None, "nc_ratio": float("nan")}]
    return ReportData(
        title=f"Report {EVIL}",
        class_names=CLASSES,
        project_name="Demo & <b>bold</b>",
        created_at=datetime(2025, 1, 2, 3, 4, tzinfo=UTC),
        software_version="0.1.0",
        normal_classes=("NILM",),
        data_summary={"NILM": ClassCounts(10, 2, 5, 2, 9), "LSIL": ClassCounts(3, 1, 0, 1, 4)},
        segmentation=seg,
        classification=cls,
        gallery=gallery,
        morphometry=MorphometryTable(
            ["image", "class", "nucleus_area", "nc_ratio"],
            rows,
            labels={"nc_ratio": "N:C ratio"},
            units={"nucleus_area": "µm²"},
        ),
        notes=["classes with no examples: ASC-US", f"note {EVIL}"],
    )


@pytest.fixture(scope="module")
def rendered(full: ReportData) -> dict[str, bytes]:
    return render_report(full)


def test_full_report_has_every_section(rendered: dict[str, bytes]) -> None:
    text = rendered["report.html"].decode("utf-8")
    page = Page(text)
    assert page.headings == SECTIONS
    assert DISCLAIMER in text and "not for primary diagnosis" in text
    for model in ("seg-0002 (unet/resnet34)", "cls-0001 (resnet18)", "0.1.0"):
        assert model in text
    assert "<h3>Binary call: normal vs needs review</h3>" in text
    for hint in (TRAIN_SEG_HINT, TRAIN_CLS_HINT, NO_DATA, NO_GALLERY, NO_MORPHOMETRY):
        assert hint not in text


def test_every_image_embedded_and_decodes(rendered: dict[str, bytes]) -> None:
    page = Page(rendered["report.html"].decode("utf-8"))
    plots = sorted(k for k in rendered if k.startswith("plots/"))
    assert plots == [
        "plots/class_distribution.png",
        "plots/classification_training.png",
        "plots/confusion_binary.png",
        "plots/confusion_matrix.png",
        "plots/morphometry.png",
        "plots/roc.png",
        "plots/roc_binary.png",
        "plots/segmentation_training.png",
    ]
    # 8 plots + 3 thumbnails for each of two full items + the original of the mask-less item.
    assert len(page.images) == 8 + 3 + 3 + 1
    for src, _ in page.images:
        decode_uri(src)
    srcs = {src for src, _ in page.images}
    for name in plots:  # the separate files are the very bytes that are inlined
        assert f"data:image/png;base64,{base64.b64encode(rendered[name]).decode()}" in srcs
    # No external resource: everything is inline, nothing is fetched when the page opens.
    assert all(src.startswith("data:") for src in srcs)
    assert "script" not in page.tags and "link" not in page.tags


def test_gallery_thumbnails_downscaled_to_256(rendered: dict[str, bytes]) -> None:
    page = Page(rendered["report.html"].decode("utf-8"))
    thumbs = [decode_uri(src) for src, alt in page.images if alt.endswith(("image", "(auto)"))]
    sizes = sorted(t.shape[:2] for t in thumbs)
    # 600x400 -> 256x171; small crops keep their size (never enlarged).
    assert sizes == [(48, 40), (48, 40), (64, 64), (171, 256), (171, 256)]


def test_user_strings_escaped(rendered: dict[str, bytes]) -> None:
    text = rendered["report.html"].decode("utf-8")
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "Demo &amp; &lt;b&gt;bold&lt;/b&gt;" in text
    assert "<b>bold" not in text


def test_numbers_formatted(rendered: dict[str, bytes]) -> None:
    text = rendered["report.html"].decode("utf-8")
    assert "Accuracy <strong>0.789</strong>" in text
    assert "12.3 ms per image" in text
    assert "<td>0.912</td>" in text  # Dice 0.91234
    assert "<td>1,235</td>" in text  # nucleus area 1234.567 in the gallery
    assert "<td>–</td>" in text  # nucleus precision None and recall nan
    # Pooled precision and recall are undefined for every region: no empty columns for them.
    assert "Recall (mean)" in text and "Dice (pooled)" in text and "Recall (pooled)" not in text
    assert "Created: 2025-01-02 03:04 UTC" in text
    assert "Nucleus area (µm²)" in text and "N:C ratio" in text  # units in headers
    assert '<span class="zero">0 (none)</span>' in text  # ASC-US has no image
    assert "<tr class='total'><td class=\"t\">Total</td><td>13</td>" in text
    assert text.count('class="card wrong"') == 1  # HSIL called LSIL


def test_gallery_cap(full: ReportData) -> None:
    text = render_report(full, max_gallery=1, include_plot_files=False)
    assert list(text) == ["report.html"]
    html_text = text["report.html"].decode("utf-8")
    assert "1 of 3 images" in html_text
    assert html_text.count('<div class="card') == 1


def test_minimal_report_says_what_is_missing() -> None:
    files = render_report(ReportData(title="Empty project", class_names=["NILM", "HSIL"]))
    assert list(files) == ["report.html"]
    text = files["report.html"].decode("utf-8")
    page = Page(text)
    assert page.headings == SECTIONS
    assert not page.images
    assert "train a classifier with <code>cytoreview train-cls</code>" in text
    for hint in (TRAIN_SEG_HINT, TRAIN_CLS_HINT, NO_DATA, NO_GALLERY, NO_MORPHOMETRY):
        assert hint in text
    assert DISCLAIMER in text


def test_counts_only_report_plots_distribution() -> None:
    data = ReportData(title="t", class_names=["NILM"], data_summary={"NILM": ClassCounts(4)})
    files = render_report(data)
    assert sorted(files) == ["plots/class_distribution.png", "report.html"]
    assert TRAIN_CLS_HINT in files["report.html"].decode("utf-8")


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (None, None, "–"),
        (float("nan"), 3, "–"),
        (12345, None, "12,345"),
        (np.int64(7), None, "7"),
        (0.123456, None, "0.123"),
        (12.3456, None, "12.35"),
        (123.456, None, "123.5"),
        (12345.6, None, "12,346"),
        (0.00001234, None, "1.2e-05"),
        (0.5, 1, "0.5"),
        ("1e5", None, "1e5"),
        ("<b>", None, "&lt;b&gt;"),
    ],
)
def test_format_number(value: object, digits: int | None, text: str) -> None:
    assert format_number(value, digits) == text


def test_bad_data_rejected_early() -> None:
    image = np.zeros((10, 12, 3), np.uint8)
    with pytest.raises(ValueError, match="mask"):
        GalleryItem(name="a", image=image, mask=np.zeros((12, 10), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        GalleryItem(name="a", image=image.astype(np.float32))
    with pytest.raises(ValueError, match="confusion matrix"):
        ClassificationSection(CLASSES, 0.5, 0.5, {}, np.eye(3))
    with pytest.raises(ValueError, match="class names"):
        ReportData(title="t", class_names=[])
    with pytest.raises(ValueError, match="3 values for 2 epochs"):
        TrainingCurve([1, 2], [1.0, 0.5], [1.0, 0.5, 0.2])
