"""Segmentation of whole multi-cell fields (ISBI 2014), with the product's defaults.

15 of the 45 fields (512 x 512, 2-10 overlapping cells, nuclei ~19 px) are "painted" (their true
masks imported as manual, with cytoplasm or, with ``--nucleus-only``, nuclei alone, as many labs
and public sets mark them); the U-Net is trained with the defaults; the other 30 fields are
auto-masked and scored against their full true masks. ``--geometry crops`` repeats the run the
way the tool worked before fields were recognised (every image up to 1024 px resized to the
model's input), for the before/after comparison.

    .venv/bin/python tests/benchmarks/bench_seg_fields_isbi.py [--nucleus-only]
        [--geometry auto|crops|fields] [--painted 15] [--minutes M]
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _drive import dice_table, drain, without_offsets

from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.segmentation import (
    SegTrainRequest,
    evaluate_segmentation,
    segment_project,
    train_segmentation,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "isbi2014"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--painted", type=int, default=15, help="fields painted")
    parser.add_argument("--nucleus-only", action="store_true", help="paint nuclei only")
    parser.add_argument("--geometry", default="auto", choices=["auto", "crops", "fields"])
    parser.add_argument("--minutes", type=float, default=None, help="training budget")
    parser.add_argument("--split", type=int, default=0, help="which fields are painted")
    parser.add_argument("--keep", type=Path, help="keep the project here")
    parser.add_argument(
        "--compare-tta", action="store_true", help="also auto-mask with TTA and score that"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="isbi-bench-"))
    try:
        ids = sorted(p.stem for p in (DATA / "images").glob("*.png"))
        painted = sorted(np.random.default_rng(args.split).permutation(ids)[: args.painted])
        manifest = work / "fields.csv"
        with manifest.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(["path", "class"])
            writer.writerows([[f"{i}.png", "NILM"] for i in ids])  # no classes in this set
        masks = work / "painted"
        masks.mkdir()
        for name in painted:
            mask = cv2.imread(str(DATA / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE)
            if args.nucleus_only:
                mask = np.where(mask == 2, 2, 0).astype(np.uint8)
            cv2.imwrite(str(masks / f"{name}.png"), mask)
        project = Project.init(work / "proj", actor="bench")
        drain(import_images(project, manifest, actor="pathologist", masks_dir=masks,
                            image_dir=DATA / "images", copy=False))  # fmt: skip
        request = SegTrainRequest(time_budget_min=args.minutes, geometry=args.geometry)
        start = time.perf_counter()
        report = drain(
            train_segmentation(project, request, actor="bench"),
            log=True,
            stages=("epoch", "prepare"),
        )
        train_minutes = (time.perf_counter() - start) / 60
        config = ModelStore(project).load(report.model_id)[0]
        scored = ("nucleus",) if args.nucleus_only else ("cytoplasm", "nucleus", "cell")
        other_tta = None
        if args.compare_tta:  # first, so that the masks left in the project are the default's
            plain = drain(segment_project(project, actor="bench", tta=True))
            plain_eval = drain(evaluate_segmentation(project, DATA / "masks", provenance=["auto"]))
            other_tta = {
                "tta": True,
                "segment_seconds": round(plain.seconds, 1),
                "mean_dice": {c: round(plain_eval.report.mean[c].dice, 4) for c in scored},
            }
        seg = drain(segment_project(project, actor="bench"))
        evaluation = drain(evaluate_segmentation(project, DATA / "masks", provenance=["auto"]))
        auto = np.stack([m for _, m in (project.current_mask(project.image(n).id)
                                         for n in seg.segmented)])  # fmt: skip
        result = {
            "benchmark": "seg_fields_isbi",
            "painted": len(painted),
            "nucleus_only": args.nucleus_only,
            "geometry_asked": args.geometry,
            "geometry": config.get("geometry_reason"),
            "input_size": config["input_size"],
            "classes_present": config.get("classes_present"),
            "train_minutes": round(train_minutes, 2),
            "epochs_run": len(report.history),
            "best_epoch": report.best.epoch if report.best else None,
            "stop_reason": report.stop_reason,
            "device": report.device,
            "auto_segmented": len(seg.segmented),
            "segment_seconds": round(seg.seconds, 1),
            "segment_device": seg.device,
            "auto_cytoplasm_pixel_share": round(float((auto == 1).mean()), 4),
            "auto_vs_truth": {
                kind: {
                    c: {
                        "dice": round(getattr(evaluation.report, kind)[c].dice, 4),
                        "iou": round(getattr(evaluation.report, kind)[c].iou, 4),
                    }
                    for c in scored
                }
                for kind in ("mean", "pooled")
            },
            "tta": seg.tta,
            "with_tta": other_tta,
            "decision": ModelStore(project).runs("segmentation")[-1].metrics.get("decision"),
            "without_offsets": None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
        if without_offsets(project, report.model_id):  # the same model, the plain arg-max
            drain(segment_project(project, actor="bench"))
            plain = drain(evaluate_segmentation(project, DATA / "masks", provenance=["auto"]))
            result["without_offsets"] = dice_table(plain.report, scored)
        project.close()
        print(json.dumps(result, indent=2))
    finally:
        if args.keep:
            shutil.move(str(work), str(args.keep))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
