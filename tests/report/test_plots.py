"""Report figures and gallery thumbnails: valid, non-blank PNGs of known size and colours."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from cytoreview.data.overlays import LABEL_COLOURS
from cytoreview.report import plots
from cytoreview.report.model import RocCurve
from cytoreview.types import NUCLEUS

CLASSES = ["NILM", "ASC-US", "LSIL", "HSIL"]


def decode(png: bytes) -> np.ndarray:
    """Decode PNG bytes to RGB and check the picture is a real, non-blank figure."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None
    h, w = bgr.shape[:2]
    assert h > 200 and w > 200
    colours = np.unique(bgr.reshape(-1, 3), axis=0)
    assert len(colours) > 20  # text, lines and fills, not a blank canvas
    assert (bgr == 255).all(axis=2).mean() < 0.97  # not almost all white
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def near(rgb: np.ndarray, colour: tuple[int, int, int], tol: int = 6) -> int:
    """Number of pixels within ``tol`` of ``colour`` on every channel."""
    return int((np.abs(rgb.astype(int) - colour) <= tol).all(axis=2).sum())


def test_training_curves_one_or_two_panels() -> None:
    epochs = list(range(1, 11))
    loss = np.linspace(1.0, 0.2, 10)
    both = decode(
        plots.plot_training_curves(
            epochs, loss, loss + 0.1, {"IoU nucleus": np.linspace(0.1, 0.8, 10)}, best_epoch=8
        )
    )
    loss_only = decode(plots.plot_training_curves(epochs, loss))
    assert both.shape == (360, 900, 3)  # 9 x 3.6 in at the fixed 100 dpi
    assert loss_only.shape == (360, 550, 3)
    # Okabe-Ito blue (train) and orange (validation) lines are drawn.
    assert near(both, (0, 114, 178)) > 100 and near(both, (230, 159, 0)) > 100


def test_training_curves_reject_mismatched_series() -> None:
    with pytest.raises(ValueError, match="one value per epoch"):
        plots.plot_training_curves([1, 2, 3], [1.0, 0.5])
    with pytest.raises(ValueError, match="one value per epoch"):
        plots.plot_training_curves([], [])


def test_confusion_matrix_size_and_colours() -> None:
    matrix = np.diag([10, 5, 3, 0])  # HSIL has no true image: its row stays empty
    rgb = decode(plots.plot_confusion_matrix(matrix, CLASSES, "test", normalise=True))
    assert rgb.shape == (600, 700, 3)  # side 4.2 + 0.45 * 4 in, plus 1 in for the colour bar
    top, bottom = (254, 232, 56), (0, 34, 78)  # cividis at 1.0 and 0.0
    # Three full rows -> three yellow diagonal cells; the other 13 cells are dark blue.
    assert near(rgb, top, 3) > 3 * 8000
    assert near(rgb, bottom, 3) > 13 * 8000
    counts = decode(plots.plot_confusion_matrix(matrix, CLASSES, "test", normalise=False))
    # Coloured by count, only the largest count (10) reaches the top colour: fewer yellow pixels.
    assert near(counts, top, 3) < near(rgb, top, 3) / 2


def test_confusion_matrix_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        plots.plot_confusion_matrix(np.ones((3, 3)), CLASSES, "x")


def test_roc_curves_accept_tuples_and_dataclasses() -> None:
    f = np.linspace(0, 1, 30)
    rgb = decode(
        plots.plot_roc_curves(
            {"NILM": (f, np.sqrt(f), 0.9), "HSIL": RocCurve(f, f**0.3, None)}, "ROC"
        )
    )
    assert rgb.shape == (500, 560, 3)
    assert near(rgb, (0, 114, 178)) > 100 and near(rgb, (230, 159, 0)) > 50
    with pytest.raises(ValueError, match="no ROC"):
        plots.plot_roc_curves({}, "ROC")
    with pytest.raises(ValueError, match="ROC needs"):
        plots.plot_roc_curves({"x": ([0, 1], [0, 0.5, 1], 0.5)}, "ROC")


def test_class_distribution_leaves_out_empty_series() -> None:
    counts = {"NILM": {"images": 12, "seeds": 3, "predicted": 0}, "HSIL": {"images": 4}}
    rgb = decode(plots.plot_class_distribution(counts, CLASSES))
    assert near(rgb, (0, 114, 178), 2) > 500  # images bars (first colour)
    assert near(rgb, (230, 159, 0), 2) > 50  # seeds bar (second shown series)
    # "predicted" is zero everywhere: no third-series (green) bar nor legend patch.
    assert near(rgb, (0, 158, 115), 2) == 0
    with pytest.raises(ValueError, match="no class"):
        plots.plot_class_distribution({}, [])


def test_morphometry_boxes_by_class_deterministic() -> None:
    rng = np.random.default_rng(1)
    rows = [
        {"class": c, "nc_ratio": float(rng.normal(m, 0.03))}
        for c, m in (("NILM", 0.1), ("HSIL", 0.6))
        for _ in range(20)
    ]
    rows += [{"class": "LSIL", "nc_ratio": None}, {"class": "LSIL", "nc_ratio": "n/a"}]
    png = plots.plot_morphometry(rows, class_order=CLASSES)
    rgb = decode(png)
    assert rgb.shape == (400, 610, 3)  # 0.9 * 4 classes + 2.5 in wide
    assert near(rgb, (213, 94, 0), 2) > 40  # vermilion medians
    assert plots.plot_morphometry(rows, class_order=CLASSES) == png  # fixed jitter, no timestamp
    with pytest.raises(ValueError, match="no finite"):
        plots.plot_morphometry([{"class": "NILM", "nc_ratio": float("nan")}])


def test_plots_from_threads() -> None:
    """No pyplot state: figures drawn in parallel threads come out identical."""
    matrix = np.array([[5, 1], [2, 7]])
    results: list[bytes] = []

    def draw() -> None:
        results.append(plots.plot_confusion_matrix(matrix, ["normal", "abnormal"], "t"))

    threads = [threading.Thread(target=draw) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 3 and len(set(results)) == 1


def test_heatmap_overlay_blends_by_heat() -> None:
    rgb = np.full((20, 30, 3), 100, np.uint8)
    cold = plots.heatmap_overlay(rgb, np.zeros((5, 5)))
    assert np.array_equal(cold, rgb)  # zero attention leaves the picture untouched
    hot = plots.heatmap_overlay(rgb, np.ones((5, 5)))
    inferno_top = np.array([252, 255, 164])
    expected = np.round(100 * 0.35 + inferno_top * 0.65)
    assert np.abs(hot[0, 0].astype(int) - expected).max() <= 1
    # A map outside [0, 1] is stretched: 0..10 draws like 0..1.
    ramp = np.tile(np.linspace(0, 1, 30, dtype=np.float32), (20, 1))
    assert np.array_equal(plots.heatmap_overlay(rgb, ramp * 10), plots.heatmap_overlay(rgb, ramp))


def test_thumbnails_shrink_never_enlarge() -> None:
    rgb = np.full((400, 600, 3), 230, np.uint8)
    mask = np.zeros((400, 600), np.uint8)
    mask[100:300, 150:450] = 1
    mask[170:230, 270:330] = NUCLEUS
    thumbs = plots.thumbnails(rgb, mask, np.ones((7, 7), np.float32), px=256)
    assert set(thumbs) == {"original", "mask", "heatmap"}
    assert all(t.shape == (171, 256, 3) for t in thumbs.values())
    assert near(thumbs["mask"], LABEL_COLOURS[NUCLEUS], 0) > 0  # nucleus outline drawn
    small = plots.thumbnails(rgb[:40, :50], None, None, px=256)
    assert list(small) == ["original"] and small["original"].shape == (40, 50, 3)


def test_encode_image_jpeg_and_png() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    png, kind = plots.encode_image(rgb, None)
    assert kind == "png"
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), 4)
    assert np.array_equal(back, rgb)  # lossless, channels in RGB order
    jpg, kind = plots.encode_image(rgb, 85)
    assert kind == "jpeg" and jpg[:2] == b"\xff\xd8"
