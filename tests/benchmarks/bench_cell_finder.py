"""The cell finder's compute, model-free (Otsu) path: recall, precision and speed.

On a synthetic slide (:class:`cytoreview.data.synthetic_slide.SyntheticSlide`, known masks):
the tissue mask on a 16x thumbnail, the tiles over it, :func:`find_cells_in_tile` on each
tile's window and :func:`merge_duplicates`; a true nucleus counts as found when a candidate's
centroid lies inside it, a candidate as a true hit when it lies in a true nucleus (the
generator's leucocytes and debris are unlabelled, so they count as false hits). Also the
recall and precision for other lower bounds of the nucleus area, and where the false hits lie
(on a true cell's cytoplasm, or off the cells). Then the same on the ISBI 2014 fields in
``../shared/data/isbi2014`` (512 px, grey, nucleus masks; pixel size unknown). Prints JSON.

    .venv/bin/python tests/benchmarks/bench_cell_finder.py [--side 4096] [--seed 0] [--tile 1024]

Measured (defaults, 4096 x 4096, seed 0, 2 shared vCPUs): 135 true nuclei; recall 0.978 at
precision 0.51 (308 candidates; 115 false hits off the cells, i.e. leucocytes and debris, 35 on
a cell's cytoplasm), after the 10 µm merge 0.970 / 0.50 (282); 64 µm crops merged at IoU 0.5:
229 crops touching every true nucleus. A lower bound of 10 / 15 / 25 / 30 µm² gives recall
1.00 / 0.99 / 0.97 / 0.95 at precision 0.30 / 0.39 / 0.66 / 0.75. 0.4-0.5 s per megapixel of
slide (16 of 16 tiles read: 1024 px tiles over 512 px fields, 30 % glass). ISBI 2014 (45
fields, 272 nuclei, sizes in px): recall 0.956, precision 0.34, 0.29 s per megapixel.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cytoreview.data.synthetic_slide import SyntheticSlide
from cytoreview.data.tissue import Box, glass_white, tiles_over_mask, tissue_mask
from cytoreview.defaults import CELL_FINDER
from cytoreview.inference.cell_crops import crop_box, merge_duplicates
from cytoreview.inference.cell_finder import CellCandidate, find_cells_in_tile

ISBI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "isbi2014"
#: A synthetic 512 px field paints cells at about 3 px per µm.
PIXEL_SIZE_UM = 1 / 3
DOWNSAMPLE = 16
#: Lower bounds of the nucleus area (µm²) reported besides the default.
SWEEP_UM2 = (10.0, 15.0, 20.0, 25.0, 30.0)


def score(candidates: list[CellCandidate], truth: np.ndarray, n_true: int) -> dict[str, float]:
    under = np.array([truth[round(c.y), round(c.x)] for c in candidates], np.int64)
    found = len(set(under.tolist()) - {0})
    return {
        "recall": round(found / max(n_true, 1), 4),
        "precision": round(float((under > 0).mean()) if under.size else 0.0, 4),
        "candidates": len(candidates),
        "found_twice": int(under[under > 0].size - found),
    }


def synthetic(side: int, seed: int, tile: int, halo: int) -> dict:
    slide = SyntheticSlide(side, side, seed=seed)
    rgb, labels = slide.region(0, 0, side, side)
    truth, n_true = ndi.label(labels == 2)
    thumb = cv2.resize(rgb, (side // DOWNSAMPLE, side // DOWNSAMPLE), interpolation=cv2.INTER_AREA)
    start = time.perf_counter()
    mask = tissue_mask(thumb, pixel_size_um=PIXEL_SIZE_UM * DOWNSAMPLE)
    tiles = tiles_over_mask((side, side), mask, DOWNSAMPLE, tile=tile, halo=halo)
    white = glass_white(thumb)
    t_mask = time.perf_counter() - start
    found: list[CellCandidate] = []
    start = time.perf_counter()
    read_px = 0
    for t in tiles:
        y, x, h, w = t.window
        read_px += h * w
        found += find_cells_in_tile(
            rgb[y : y + h, x : x + w], t.core, halo, pixel_size_um=PIXEL_SIZE_UM, white=white,
            area_um2=(min(SWEEP_UM2), CELL_FINDER.nucleus_um2[1]),
        )  # fmt: skip
    t_find = time.perf_counter() - start
    low = CELL_FINDER.nucleus_um2[0]
    default = [c for c in found if c.area_px * PIXEL_SIZE_UM**2 >= low]
    start = time.perf_counter()
    merged = merge_duplicates(default, CELL_FINDER.merge_distance_um / PIXEL_SIZE_UM)
    t_merge = time.perf_counter() - start
    crop = round(CELL_FINDER.crop_um / PIXEL_SIZE_UM)
    crops = merge_duplicates(
        default, CELL_FINDER.merge_distance_um / PIXEL_SIZE_UM, crop_size_px=crop
    )
    boxes = [crop_box(c, crop, (side, side)) for c in crops]
    in_crop = set()
    for b in boxes:
        in_crop |= set(np.unique(truth[b.y : b.y + b.h, b.x : b.x + b.w]).tolist())
    false = [c for c in default if truth[round(c.y), round(c.x)] == 0]
    on_cells = sum(labels[round(c.y), round(c.x)] > 0 for c in false)
    sizes = np.bincount(truth.ravel())[1:] * PIXEL_SIZE_UM**2
    return {
        "side": side,
        "seed": seed,
        "true_nuclei": n_true,
        "true_nucleus_um2_p5_p50_p95": np.percentile(sizes, [5, 50, 95]).round(1).tolist(),
        "tile": tile,
        "halo": halo,
        "tiles_read": len(tiles),
        "tiles_total": (-(-side // tile)) ** 2,
        "tissue_fraction_of_thumbnail": round(float(mask.mean()), 3),
        "nucleus_um2": list(CELL_FINDER.nucleus_um2),
        "default": score(default, truth, n_true),
        "after_merge": score(merged, truth, n_true),
        "crops_merged_by_overlap": {
            "crop_px": crop,
            "crops": len(crops),
            "true_nuclei_touching_a_crop": round(len(in_crop - {0}) / n_true, 4),
        },
        "false_hits_on_true_cells": int(on_cells),
        "false_hits_off_cells": len(false) - int(on_cells),
        "min_area_sweep": {
            str(a): score([c for c in found if c.area_px * PIXEL_SIZE_UM**2 >= a], truth, n_true)
            for a in SWEEP_UM2
        },
        "seconds": {
            "tissue_mask_and_tiles": round(t_mask, 3),
            "find": round(t_find, 2),
            "merge": round(t_merge, 4),
        },
        "find_s_per_megapixel_of_slide": round(t_find / (side * side / 1e6), 4),
        "find_s_per_megapixel_read": round(t_find / (read_px / 1e6), 4),
    }


def isbi() -> dict | None:
    images = sorted((ISBI / "images").glob("*.png"))
    if not images:
        return None
    totals = {"true": 0, "found": 0, "hits": 0, "candidates": 0}
    start = time.perf_counter()
    for path in images:
        rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        labels = cv2.imread(str(ISBI / "masks" / path.name), cv2.IMREAD_GRAYSCALE)
        truth, n_true = ndi.label(labels == 2)
        h, w = labels.shape
        found = find_cells_in_tile(rgb, Box(0, 0, h, w), 0)
        under = [truth[round(c.y), round(c.x)] for c in found]
        totals["true"] += n_true
        totals["found"] += len(set(under) - {0})
        totals["hits"] += sum(u > 0 for u in under)
        totals["candidates"] += len(found)
    seconds = time.perf_counter() - start
    return {
        "fields": len(images),
        "true_nuclei": totals["true"],
        "pixel_size_um": "unknown (nominal 0.25; sizes in px)",
        "nucleus_px": list(CELL_FINDER.nucleus_px),
        "recall": round(totals["found"] / totals["true"], 4),
        "precision": round(totals["hits"] / max(totals["candidates"], 1), 4),
        "candidates": totals["candidates"],
        "s_per_megapixel": round(seconds / (len(images) * 512 * 512 / 1e6), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4096, help="synthetic slide side (px)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile", type=int, default=CELL_FINDER.tile)
    parser.add_argument("--halo", type=int, default=CELL_FINDER.halo)
    args = parser.parse_args()
    result = {
        "benchmark": "cell_finder",
        "path": "otsu (no model)",
        "synthetic": synthetic(args.side, args.seed, args.tile, args.halo),
        "isbi2014": isbi(),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
