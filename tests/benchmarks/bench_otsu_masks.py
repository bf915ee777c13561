"""Masks with no painting: the Otsu generator (plugin cytoreview-otsu) against the true masks.

Every image of Herlev (``../shared/data/herlev40``, 610 single cells, 40 x 40 px) and, with
``--isbi``, of ISBI 2014 (45 multi-cell fields, 512 x 512) is masked by each method of the
generator and scored against its true mask (Herlev's undetermined borders left out): Dice, IoU,
precision and sensitivity per class, mean over images and pooled over pixels, and pixel
accuracy. Prints JSON. Nothing is trained, so this is the quality of what ``generate-masks``
stores and what ``train-seg --include-generated`` learns from.

    .venv/bin/python tests/benchmarks/bench_otsu_masks.py [--isbi] [--method multi-otsu ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cytoreview_otsu.masks import otsu_mask
from cytoreview_otsu.settings import METHODS, OtsuSettings

from cytoreview.metrics.segmentation import OVERALL, evaluate_masks

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _read(folder: Path, name: str, flags: int) -> np.ndarray | None:
    path = folder / f"{name}.png"
    return cv2.imread(str(path), flags) if path.is_file() else None


def _load(dataset: Path) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
    items = []
    for path in sorted((dataset / "images").glob("*.png")):
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        truth = _read(dataset / "masks", path.stem, cv2.IMREAD_GRAYSCALE)
        ignore = _read(dataset / "ignore", path.stem, cv2.IMREAD_GRAYSCALE)
        items.append((path.stem, rgb, truth, None if ignore is None else ignore > 0))
    return items


def _summary(report: object) -> dict[str, object]:
    out: dict[str, object] = {"n_images": len(report.per_image)}
    for average in ("mean", "pooled"):
        scores = getattr(report, average)
        out[average] = {
            "accuracy": round(scores[OVERALL].accuracy, 4),
            **{
                cls: {
                    metric: round(getattr(scores[cls], field), 4)
                    for metric, field in (
                        ("dice", "dice"),
                        ("iou", "iou"),
                        ("precision", "precision"),
                        ("sensitivity", "recall"),
                    )
                }
                for cls in ("cytoplasm", "nucleus", "cell")
            },
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--isbi", action="store_true", help="also score the ISBI 2014 fields")
    parser.add_argument("--method", nargs="+", choices=METHODS, default=list(METHODS))
    args = parser.parse_args()
    sets = ["herlev40"] + (["isbi2014"] if args.isbi else [])
    results: dict[str, object] = {
        "published": {
            "source": "Wubineh et al., Tables 1-2 (U-Nets trained on Otsu masks, their 419 images)",
            "dice_cytoplasm": [0.7852, 0.8893],
            "dice_nucleus": [0.8425, 0.9034],
        }
    }
    for name in sets:
        items = _load(DATA / name)
        for method in args.method:
            settings = OtsuSettings(method=method)
            start = time.perf_counter()
            masks = [otsu_mask(rgb, settings) for _, rgb, _, _ in items]
            seconds = time.perf_counter() - start
            report = evaluate_masks(
                (n, mask, truth, ignore)
                for (n, _, truth, ignore), mask in zip(items, masks, strict=True)
            )
            results[f"{name}/{method}"] = {
                **_summary(report),
                "seconds": round(seconds, 2),
                "ms_per_image": round(1000 * seconds / max(len(items), 1), 2),
            }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
