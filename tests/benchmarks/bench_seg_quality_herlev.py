"""Segmentation quality on Herlev, the published protocol, through CytoReview's own workflows.

80 seed images stratified by class are "painted" (their true masks imported as manual), a U-Net
is trained from scratch on the CPU, the other images are auto-segmented and scored against their
true masks (Herlev's undetermined border pixels left out). With ``--ceiling``, every image's mask
is used and the scores are those of the internal 20 % validation split.

    .venv/bin/python tests/benchmarks/bench_seg_quality_herlev.py [--minutes 10] [--ceiling]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cytoreview.data.sampling import Candidate, stratified_pick
from cytoreview.storage.project import Project
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.segmentation import (
    SegTrainRequest,
    evaluate_segmentation,
    segment_project,
    train_segmentation,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "herlev40"


def drain(job, log=None):
    try:
        while True:
            event = next(job)
            if log and event.stage == "epoch":
                print(event.message, file=sys.stderr, flush=True)
    except StopIteration as stop:
        return stop.value


def boundary_sensitivity() -> dict[str, float]:
    """Mean cytoplasm Dice of each true mask against itself with one boundary moved by 1 px.

    What a one-pixel disagreement about where the cell (or the nucleus) ends costs on these
    40 px cells: the scale against which the auto masks' Dice should be read.
    """
    import cv2
    import numpy as np

    kernel = np.ones((3, 3), np.uint8)
    moves = {
        "cell_edge_out": (cv2.dilate, None), "cell_edge_in": (cv2.erode, None),
        "nucleus_edge_out": (None, cv2.dilate), "nucleus_edge_in": (None, cv2.erode),
    }  # fmt: skip
    scores: dict[str, list[float]] = {key: [] for key in moves}
    for path in sorted((DATA / "masks").glob("*.png")):
        mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        cell, nucleus = (mask > 0).astype(np.uint8), (mask == 2).astype(np.uint8)
        truth = mask == 1
        for key, (cell_op, nucleus_op) in moves.items():
            c = cell_op(cell, kernel) if cell_op else cell
            n = nucleus_op(nucleus, kernel) if nucleus_op else nucleus
            moved = (c > 0) & (n == 0)
            total = moved.sum() + truth.sum()
            scores[key].append(1.0 if total == 0 else 2 * (moved & truth).sum() / total)
    return {f"cytoplasm_dice_{key}": round(float(np.mean(v)), 3) for key, v in scores.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget")
    parser.add_argument("--seeds", type=int, default=80, help="painted images (stratified)")
    parser.add_argument("--ceiling", action="store_true", help="train on all masks")
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--patience", type=int, default=20, help="early-stopping patience")
    parser.add_argument("--keep", type=Path, help="keep the project here (to look at the masks)")
    parser.add_argument("--tta", action="store_true", help="auto-segment with the 8-view TTA")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="herlev-bench-"))
    try:
        project = Project.init(work / "proj", actor="bench")
        # Herlev's table: image stem in "id", Bethesda class in "bethesda"; images stay in place.
        herlev = {"path_column": "id", "class_column": "bethesda", "image_dir": DATA / "images"}
        drain(import_images(project, DATA / "labels.csv", actor="bench", copy=False, **herlev))
        images = project.images()
        if args.ceiling:
            painted = {im.name for im in images}
        else:
            per_class = -(-args.seeds // len({im.class_label for im in images}))
            picks = stratified_pick(
                [Candidate(im.id, im.class_label, im.sha256) for im in images], per_class, args.seed
            )
            ids = sorted(i for v in picks.values() for i in v)[: args.seeds]
            painted = {im.name for im in images if im.id in set(ids)}
        masks = work / "painted"
        masks.mkdir()
        for name in painted:
            shutil.copy(DATA / "masks" / f"{name}.png", masks / f"{name}.png")
        # The second pass only adds the painted masks: the images are already there.
        drain(
            import_images(
                project,
                DATA / "labels.csv",
                actor="pathologist",
                masks_dir=masks,
                copy=False,
                **herlev,
            )
        )
        request = SegTrainRequest(
            encoder=args.encoder,
            epochs=10_000,
            time_budget_min=args.minutes,
            lr=args.lr,
            input_size=args.input_size,
            patience=args.patience,
            seed=args.seed,
        )
        start = time.perf_counter()
        report = drain(train_segmentation(project, request, actor="bench"), log=True)
        train_minutes = (time.perf_counter() - start) / 60
        result = {
            "benchmark": "seg_quality_herlev",
            "protocol": "ceiling: all masks, 80/20 split"
            if args.ceiling
            else f"{len(painted)} seeds",
            "painted": len(painted),
            "n_train": report.n_train,
            "n_val": report.n_val,
            "encoder": args.encoder,
            "lr": args.lr,
            "patience": args.patience,
            "input_size": project.catalog.get_meta("unused", None) or None,
            "train_minutes": round(train_minutes, 2),
            "epochs_run": len(report.history),
            "best_epoch": report.best.epoch if report.best else None,
            "stop_reason": report.stop_reason,
            "device": report.device,
            "val_scores_at_input_size": report.best.scores if report.best else None,
        }
        if not args.ceiling:
            seg = drain(segment_project(project, actor="bench", batch_size=32, tta=args.tta))
            evaluation = drain(
                evaluate_segmentation(
                    project, DATA / "masks", ignore_dir=DATA / "ignore", provenance=["auto"]
                )
            )
            result["tta"] = args.tta
            result["auto_segmented"] = len(seg.segmented)
            result["segment_seconds"] = round(seg.seconds, 1)
            result["auto_vs_truth"] = {
                "mean_over_images": {
                    c: {
                        "dice": evaluation.report.mean[c].dice,
                        "iou": evaluation.report.mean[c].iou,
                    }
                    for c in ("cytoplasm", "nucleus", "cell")
                },
                "pooled_pixels": {
                    c: {
                        "dice": evaluation.report.pooled[c].dice,
                        "iou": evaluation.report.pooled[c].iou,
                    }
                    for c in ("cytoplasm", "nucleus", "cell")
                },
            }
        from cytoreview.storage.model_store import ModelStore

        result["input_size"] = ModelStore(project).load(report.model_id)[0]["input_size"]
        result["truth_vs_itself_shifted_1px"] = boundary_sensitivity()
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        project.close()
        print(json.dumps(result, indent=2))
    finally:
        if args.keep:
            shutil.move(str(work), str(args.keep))
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
