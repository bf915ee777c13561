"""Segmentation quality on Herlev, the published protocol, through CytoReview's own workflows.

80 seed images stratified by class are "painted" (their true masks imported as manual), a U-Net
is trained from scratch on the CPU, the other images are auto-segmented and scored against their
true masks (Herlev's undetermined border pixels left out). With ``--ceiling``, every image's mask
is used and the scores are those of the internal 20 % validation split.

With no flags the run uses the product's defaults (``cytoreview.defaults.SEG``): what a user
who changes nothing gets. ``--recipe previous`` is the recipe before them (lr 1e-4, patience 20,
100 epochs, no TTA, fp32, torch's own thread count, shifts of 20 %, the U-Net's usual decoder
width); ``--splits 0 1 2`` repeats with other seed picks; ``--hog N`` runs N spinning processes
beside the training (a busy workstation); ``--augment shift=0.2`` changes the augmentation.

    .venv/bin/python tests/benchmarks/bench_seg_quality_herlev.py [--recipe previous]
        [--splits 0 1 2] [--hog 2] [--minutes 10] [--ceiling]
        [--arch rse-unet --setting base_channels=16]

``--arch`` trains another segmenter contribution (a plugin's) with the same recipe, seeds and
scoring; ``--setting NAME=VALUE`` sets its own settings (checked by the contribution).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _drive import dice_table, drain, without_offsets
from _herlev import DATA, import_herlev, paint, seed_names

from cytoreview.defaults import SEG, SEG_MONITORS
from cytoreview.plugin_api import find
from cytoreview.storage.project import Project
from cytoreview.workflows.segmentation import (
    SegTrainRequest,
    evaluate_segmentation,
    segment_project,
    train_segmentation,
)


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


#: The recipe before the benchmarked defaults (what `train-seg` did until 2026-12).
PREVIOUS = {"lr": 1e-4, "patience": 20, "epochs": 100, "tta": False, "amp": False, "threads": 0,
            "lr_patience": 0, "ema_decay": 0.0, "batch_size": 8, "loss": "dice_focal",
            "monitor": "loss", "augment": {"shift": 0.2}, "calibrate": False}  # fmt: skip


def method_settings(args: argparse.Namespace) -> dict[str, str]:
    """The settings of ``--arch``: the U-Net's ``--encoder``, another's ``--setting`` pairs.

    ``--recipe previous`` also had the U-Net's usual decoder width (256, not today's 128).
    """
    given = dict(pair.split("=", 1) for pair in args.setting)
    if args.arch != "unet":
        return given
    before = {"decoder_width": "256"} if args.recipe == "previous" else {}
    return {"encoder": args.encoder, **before, **given}


def spin(n: int) -> list[subprocess.Popen]:
    """``n`` processes that keep a core busy each (another program on the workstation)."""
    code = "while True: pass"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(n)]


def augment_changes(args: argparse.Namespace) -> dict:
    """The ``--augment KEY=VALUE`` changes, values read as JSON (``shift=0.2``, ``vflip=false``)."""
    return {key: json.loads(value) for key, value in (a.split("=", 1) for a in args.augment)}


def run_split(args: argparse.Namespace, recipe: dict, split: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="herlev-bench-"))
    try:
        return _run(args, recipe, split, work)
    finally:
        if args.keep:
            shutil.move(str(work), str(args.keep / f"split{split}"))
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, recipe: dict, split: int, work: Path) -> dict:
    project = Project.init(work / "proj", actor="bench")
    import_herlev(project)
    if args.ceiling:
        painted = {im.name for im in project.images()}
    else:
        painted = seed_names(project, args.seeds, split)
    paint(project, work, painted)
    threads = recipe["threads"]
    request = SegTrainRequest(
        arch=args.arch, settings=method_settings(args), epochs=recipe["epochs"],
        time_budget_min=args.minutes,
        lr=recipe["lr"], input_size=args.input_size, patience=recipe["patience"], seed=0,
        lr_patience=recipe["lr_patience"], ema_decay=recipe["ema_decay"],
        monitor=recipe["monitor"],
        batch_size=recipe["batch_size"], loss=recipe["loss"],
        amp=recipe["amp"], threads=(os.cpu_count() or 1) if threads == 0 else threads,
        loader_workers=args.workers, semi=args.semi, cpu_bf16=args.cpu_bf16,
        calibrate=recipe["calibrate"],
        augment={**recipe.get("augment", {}), **augment_changes(args)},
    )  # fmt: skip
    start = time.perf_counter()
    report = drain(train_segmentation(project, request, actor="bench"), log=True)
    train_minutes = (time.perf_counter() - start) / 60
    epochs = max(len(report.history), 1)
    result = {
        "split": split,
        "painted": len(painted),
        "n_train": report.n_train,
        "n_val": report.n_val,
        "train_minutes": round(train_minutes, 2),
        "seconds_per_epoch": round(train_minutes * 60 / epochs, 2),
        "epochs_run": len(report.history),
        "best_epoch": report.best.epoch if report.best else None,
        "stop_reason": report.stop_reason,
        "device": report.device,
        "val_scores_at_input_size": report.best.scores if report.best else None,
    }
    from cytoreview.storage.model_store import ModelStore

    store = ModelStore(project)
    run_metrics = store.runs("segmentation")[-1].metrics
    result["thread_decisions"] = run_metrics.get("thread_decisions")
    result["decision"] = run_metrics.get("decision")
    result["input_size"] = store.load(report.model_id)[0]["input_size"]
    if not args.ceiling:
        seg = drain(segment_project(project, actor="bench", batch_size=32, tta=recipe["tta"]))
        evaluation = drain(
            evaluate_segmentation(
                project, DATA / "masks", ignore_dir=DATA / "ignore", provenance=["auto"]
            )
        )
        result["auto_vs_truth_without_offsets"] = None
        if without_offsets(project, report.model_id):  # the same model, the plain arg-max
            drain(segment_project(project, actor="bench", batch_size=32, tta=recipe["tta"]))
            plain = drain(
                evaluate_segmentation(
                    project, DATA / "masks", ignore_dir=DATA / "ignore", provenance=["auto"]
                )
            ).report
            result["auto_vs_truth_without_offsets"] = dice_table(plain, ("cytoplasm", "nucleus"))
        result["auto_segmented"] = len(seg.segmented)
        result["segment_seconds"] = round(seg.seconds, 1)
        result["segment_device"] = seg.device
        result["auto_vs_truth"] = {
            kind: {
                c: {"dice": round(getattr(evaluation.report, kind)[c].dice, 4),
                    "iou": round(getattr(evaluation.report, kind)[c].iou, 4)}
                for c in ("cytoplasm", "nucleus", "cell")
            }
            for kind in ("mean", "pooled")
        }  # fmt: skip
    project.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", choices=["defaults", "previous"], default="defaults")
    parser.add_argument("--minutes", type=float, default=None, help="training budget")
    parser.add_argument("--seeds", type=int, default=80, help="painted images (stratified)")
    parser.add_argument("--splits", type=int, nargs="+", default=[0], help="seed-pick seeds")
    parser.add_argument("--hog", type=int, default=0, help="busy processes beside the run")
    parser.add_argument("--workers", type=int, default=None, help="augmentation workers")
    parser.add_argument("--ceiling", action="store_true", help="train on all masks")
    parser.add_argument("--arch", default="unet", help="segmenter (`cytoreview plugins`)")
    parser.add_argument("--encoder", default="resnet18", help="the U-Net's encoder")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of --arch (repeatable), e.g. base_channels=16",
    )
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument(
        "--augment", nargs="+", default=[], metavar="KEY=VALUE",
        help="changes to the training augmentation (JSON values), e.g. shift=0.2",
    )  # fmt: skip
    parser.add_argument("--lr", type=float, help="overrides the recipe")
    parser.add_argument("--patience", type=int, help="overrides the recipe")
    parser.add_argument("--lr-patience", type=int, help="overrides the recipe (0: constant lr)")
    parser.add_argument("--ema-decay", type=float, help="overrides the recipe (0: no averaging)")
    parser.add_argument("--monitor", choices=SEG_MONITORS, help="overrides the recipe")
    parser.add_argument("--batch-size", type=int, help="overrides the recipe")
    parser.add_argument("--loss", help="overrides the recipe")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, help="overrides")
    parser.add_argument(
        "--calibrate", action=argparse.BooleanOptionalAction,
        help="overrides (decision offsets chosen on the validation seeds)",
    )  # fmt: skip
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, help="overrides")
    parser.add_argument("--threads", type=int, help="overrides (0: all cores, fixed)")
    parser.add_argument("--semi", action="store_true", help="also learn from unpainted cells")
    parser.add_argument("--cpu-bf16", action="store_true", help="bf16 autocast on the CPU")
    parser.add_argument("--sensitivity", action="store_true",
                        help="also score each true mask against itself moved by 1 px")  # fmt: skip
    parser.add_argument("--keep", type=Path, help="keep the projects here (to look at the masks)")
    args = parser.parse_args()
    if args.recipe == "previous":
        recipe = dict(PREVIOUS)
    else:
        recipe = {"lr": SEG.lr, "patience": SEG.patience, "epochs": SEG.epochs,
                  "tta": None, "amp": SEG.amp, "threads": None,
                  "lr_patience": SEG.lr_patience, "ema_decay": SEG.ema_decay,
                  "monitor": SEG.monitor, "batch_size": SEG.batch_size,
                  "loss": SEG.loss, "calibrate": SEG.calibrate}  # fmt: skip
    for key in (
        "lr",
        "patience",
        "lr_patience",
        "ema_decay",
        "monitor",
        "batch_size",
        "loss",
        "tta",
        "calibrate",
        "amp",
        "threads",
    ):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    hogs = spin(args.hog)
    try:
        runs = [run_split(args, recipe, split) for split in args.splits]
    finally:
        for hog in hogs:
            hog.kill()
    result: dict = {
        "benchmark": "seg_quality_herlev",
        "protocol": "ceiling: all masks, 80/20 split" if args.ceiling else f"{args.seeds} seeds",
        "recipe": args.recipe,
        "arch": args.arch,
        # Every setting of the network, the defaults included (e.g. the U-Net's decoder_width).
        "method_settings": find("segmenter", args.arch).settings_record(method_settings(args)),
        "settings": {
            **recipe,
            "semi": args.semi,
            "cpu_bf16": args.cpu_bf16,
            "augment": {**recipe.get("augment", {}), **augment_changes(args)},
        },
        "hog_processes": args.hog,
        "cpu_cores": os.cpu_count(),
        "runs": runs,
    }
    if not args.ceiling:
        import numpy as np

        for kind in ("mean", "pooled"):
            result[f"{kind}_over_splits"] = {
                c: {"dice": round(float(np.mean([r["auto_vs_truth"][kind][c]["dice"]
                                                 for r in runs])), 4),
                    "dice_std": round(float(np.std([r["auto_vs_truth"][kind][c]["dice"]
                                                    for r in runs])), 4)}
                for c in ("cytoplasm", "nucleus", "cell")
            }  # fmt: skip
    result["train_minutes_max"] = max(r["train_minutes"] for r in runs)
    if args.sensitivity:
        result["truth_vs_itself_shifted_1px"] = boundary_sensitivity()
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
