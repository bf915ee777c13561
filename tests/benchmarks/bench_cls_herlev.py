"""Classifier comparison on Herlev: image-only vs fusion-flatten vs fusion-gap, 5-fold CV.

The masks the fusion models see come from CytoReview's own segmentation engine, as in the
published protocol: 80 stratified seed cells keep their true masks ("painted"), a U-Net trained
on them auto-segments the other 530. Each fold trains every architecture on the Bethesda task
(NILM / LSIL / HSIL; Herlev has no ASC-US) with the product's training code (oversampling,
Adam, early stopping on an inner 80/20 split), then scores the held-out fold:

* Bethesda accuracy and macro F1;
* binary normal / abnormal (P(abnormal) = P(LSIL) + P(HSIL)): F1 of the abnormal class, macro
  F1 and accuracy (calling everything abnormal scores F1 0.85 and macro F1 0.42 here);
* Wilcoxon signed-rank test of fusion-gap against image-only over the folds;
* inference time per image on the CPU: classification alone and with Grad-CAM++.

    .venv/bin/python tests/benchmarks/bench_cls_herlev.py [--minutes-per-run 3] [--folds 5]
        [--archs image-only fusion-flatten fusion-gap] [--seg-minutes 6] [--true-masks]
        [--settings KEY=VALUE ...]   (the settings of a plugin's classifier, e.g. width=0.25)

A method with its own trainer (a plugin's, e.g. feature-fusion-mlp) is trained by it.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch
from _drive import drain
from _herlev import DATA, import_herlev, paint, seed_names

from cytoreview.data.cls_dataset import make_inputs
from cytoreview.data.datasets import choose_input_size
from cytoreview.defaults import CLS
from cytoreview.explain.cam import class_activation_maps
from cytoreview.inference.classify import ClassifierSpec, predict_class_probs
from cytoreview.metrics.classification import (
    binary_report,
    classification_report,
    wilcoxon_compare,
)
from cytoreview.models.classifiers import build_classifier
from cytoreview.morphometry.features import feature_matrix
from cytoreview.plugin_api import describe_settings, find
from cytoreview.storage.images import read_image, read_label_mask
from cytoreview.storage.project import Project
from cytoreview.training.classification import ClsTrainConfig, train_classifier
from cytoreview.workflows.segmentation import SegTrainRequest, segment_project, train_segmentation

CLASSES = ["NILM", "LSIL", "HSIL"]


def engine_masks(work: Path, seg_minutes: float, seeds: int) -> tuple[dict[str, np.ndarray], dict]:
    """True masks for the 80 painted seeds, U-Net auto masks for the rest (the product path)."""
    project = Project.init(work / "proj", actor="bench")
    import_herlev(project)
    painted = seed_names(project, seeds, 0)
    paint(project, work, painted)
    request = SegTrainRequest(epochs=10_000, time_budget_min=seg_minutes, lr=1e-3, patience=60)
    start = time.perf_counter()
    report = drain(train_segmentation(project, request, actor="bench"), log=True)
    minutes = round((time.perf_counter() - start) / 60, 2)
    seg_info = {"seeds": len(painted), "train_minutes": minutes,
                "val_scores": report.best.scores if report.best else None}  # fmt: skip
    drain(segment_project(project, actor="bench", batch_size=32))
    masks = {}
    for im in project.images():
        found = project.current_mask(im.id)
        masks[im.name] = found[1]
    project.close()
    return masks, seg_info


def folds_of(labels: list[str], k: int, seed: int = 0) -> list[np.ndarray]:
    """Stratified k folds of indices (each class dealt round-robin after a seeded shuffle)."""
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(labels), int)
    for cls in sorted(set(labels)):
        idx = np.array([i for i, c in enumerate(labels) if c == cls])
        rng.shuffle(idx)
        assignment[idx] = np.arange(len(idx)) % k
    return [np.flatnonzero(assignment == f) for f in range(k)]


def scores(task: str, y: list[int], probs: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Bethesda accuracy and macro F1 (Bethesda task), and the binary call's scores."""
    entry: dict[str, float] = {}
    if task == "bethesda":
        multi = classification_report(y, probs, CLASSES)
        entry.update(bethesda_accuracy=multi.accuracy, bethesda_macro_f1=multi.macro_f1)
        abnormal = probs[:, 1] + probs[:, 2]  # derived: P(LSIL) + P(HSIL)
    else:
        abnormal = probs[:, 1]  # the dedicated head
    binary = binary_report([t > 0 for t in y], abnormal)
    entry.update(
        binary_f1_abnormal=binary.f1, binary_macro_f1=binary.macro_f1,
        binary_accuracy=binary.accuracy, binary_auc=binary.auc,
    )  # fmt: skip
    return {f"{prefix}{k}": v for k, v in entry.items()}


def timing(model: torch.nn.Module, images, masks, spec: ClassifierSpec, tta: bool) -> dict:
    """Seconds per image on CPU, batch 1: classification (torch eager, ``tta``: 8 views in one
    batch; with the measurement model's features and call when the spec has one), and
    classification + Grad-CAM++ (one view)."""
    size = spec.input_size
    x = make_inputs(images, masks, size)
    predict_class_probs(model, images[:2], masks[:2], spec, device="cpu")  # warm-up
    start = time.perf_counter()
    for i in range(len(images)):
        predict_class_probs(model, images[i : i + 1], masks[i : i + 1], spec, device="cpu", tta=tta)
    classify = (time.perf_counter() - start) / len(images)
    start = time.perf_counter()
    for i in range(len(images)):
        class_activation_maps(model, model.cam_layer, x[i : i + 1], method="gradcam++")
    cam = (time.perf_counter() - start) / len(images)
    return {"classify_s": round(classify, 4), "gradcampp_s": round(cam, 4),
            "classify_plus_gradcampp_s": round(classify + cam, 4)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--only-folds", type=int, nargs="+", help="run a subset of the folds")
    parser.add_argument(
        "--archs", nargs="+", default=["image-only", "fusion-flatten", "fusion-gap"]
    )
    parser.add_argument("--backbone", default="resnet18")
    # No flags: the product's defaults (cytoreview.defaults.CLS; the input side by its rule).
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--minutes-per-run", type=float, default=5.0, help="a guard, per fold")
    parser.add_argument("--epochs", type=int, default=CLS.epochs)
    parser.add_argument("--patience", type=int, default=CLS.patience)
    parser.add_argument("--lr", type=float, default=CLS.lr)
    parser.add_argument("--batch-size", type=int, default=CLS.batch_size)
    parser.add_argument("--lr-patience", type=int, default=CLS.lr_patience)
    parser.add_argument("--ema-decay", type=float, default=CLS.ema_decay)
    parser.add_argument("--balance", default=CLS.balance)
    parser.add_argument("--seg-minutes", type=float, default=6.0)
    parser.add_argument("--seeds", type=int, default=80)
    parser.add_argument("--true-masks", action="store_true", help="fuse the true masks instead")
    parser.add_argument(
        "--tta", action=argparse.BooleanOptionalAction, default=CLS.tta,
        help="score on the mean of the 8 rotations and mirror images (default: as `classify`, "
        f"{'on' if CLS.tta else 'off'})",
    )  # fmt: skip
    parser.add_argument(
        "--compare-tta", action="store_true",
        help="also score the same models the other way (keys one_view_* with --tta, else "
        "eight_views_*)",
    )  # fmt: skip
    parser.add_argument(
        "--measurements", action=argparse.BooleanOptionalAction, default=CLS.measurements,
        help="join the measurement model to the network (default: as `train-cls`, "
        f"{'on' if CLS.measurements else 'off'})",
    )  # fmt: skip
    parser.add_argument(
        "--compare-measurements", action="store_true",
        help="with --measurements, also score the network alone (keys network_only_*) and "
        "the measurement model alone (keys measurements_only_*)",
    )  # fmt: skip
    parser.add_argument(
        "--masks-cache",
        type=Path,
        help="folder to keep the engine's masks in (reused when it exists: saves the U-Net run)",
    )
    parser.add_argument(
        "--probs-out", type=Path,
        help="write each fold's held-out indices and class probabilities here (.npz), to "
        "compare or combine models on the same cells afterwards",
    )  # fmt: skip
    parser.add_argument(
        "--task",
        choices=["bethesda", "binary"],
        default="bethesda",
        help="binary: train a dedicated normal/abnormal head instead of deriving the call",
    )
    parser.add_argument(
        "--settings", nargs="+", default=[], metavar="KEY=VALUE",
        help="the architectures' own settings (each arch takes those it has)",
    )  # fmt: skip
    args = parser.parse_args()
    other = "one_view_" if args.tta else "eight_views_"  # keys of the --compare-tta scores
    given = dict(item.split("=", 1) for item in args.settings)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    work = Path(tempfile.mkdtemp(prefix="herlev-cls-"))
    try:
        import csv

        rows = list(csv.DictReader((DATA / "labels.csv").open()))
        names = [r["id"] for r in rows]
        labels = [r["bethesda"] for r in rows]
        binary_labels = ["normal" if c == "NILM" else "abnormal" for c in labels]
        images = [read_image(DATA / "images" / f"{n}.png").rgb for n in names]
        seg_info: dict = {"masks": "true"}
        if args.true_masks:
            masks = [read_label_mask(DATA / "masks" / f"{n}.png") for n in names]
        elif args.masks_cache is not None and (args.masks_cache / "seg_info.json").is_file():
            masks = [read_label_mask(args.masks_cache / f"{n}.png") for n in names]
            seg_info = json.loads((args.masks_cache / "seg_info.json").read_text())
        else:
            by_name, seg_info = engine_masks(work, args.seg_minutes, args.seeds)
            masks = [by_name[n] for n in names]
            seg_info["masks"] = "engine (true for seeds, auto for the rest)"
            if args.masks_cache is not None:
                args.masks_cache.mkdir(parents=True, exist_ok=True)
                for n, m in zip(names, masks, strict=True):
                    cv2.imwrite(str(args.masks_cache / f"{n}.png"), m)
                (args.masks_cache / "seg_info.json").write_text(json.dumps(seg_info))
        if args.input_size is None:
            args.input_size = choose_input_size(
                [im.shape for im in images], minimum=CLS.input_min, maximum=CLS.input_max
            )
        folds = folds_of(labels, args.folds)
        per_arch: dict[str, list[dict]] = {a: [] for a in args.archs}
        held_out: dict[str, np.ndarray] = {}
        timings: dict[str, dict] = {}
        for f, test_idx in enumerate(folds):
            if args.only_folds and f not in args.only_folds:
                continue
            train_idx = np.setdiff1d(np.arange(len(names)), test_idx)
            for arch in args.archs:
                method = find("classifier", arch)
                own = {s.name for s in describe_settings(method.settings)}
                config = ClsTrainConfig(
                    settings=method.settings_record({k: v for k, v in given.items() if k in own}),
                    plugin=method.provenance(),
                    arch=arch, backbone=args.backbone, mask_backbone=args.backbone,
                    input_size=args.input_size, epochs=args.epochs, batch_size=args.batch_size,
                    lr=args.lr, patience=args.patience, time_budget_s=args.minutes_per_run * 60,
                    lr_patience=args.lr_patience, ema_decay=args.ema_decay, balance=args.balance,
                    measurements=args.measurements, seed=f,
                )  # fmt: skip
                start = time.perf_counter()
                classes = CLASSES if args.task == "bethesda" else ["normal", "abnormal"]
                targets = labels if args.task == "bethesda" else binary_labels
                trainer = getattr(method.load(), "trainer", None) or train_classifier
                result = drain(trainer(
                    [images[i] for i in train_idx], [masks[i] for i in train_idx],
                    [targets[i] for i in train_idx], classes, config,
                ))  # fmt: skip
                minutes = (time.perf_counter() - start) / 60
                model = build_classifier(result.model_config)
                model.load_state_dict(result.state_dict)
                model.eval()
                spec = ClassifierSpec.from_config(result.model_config)
                test_images = [images[i] for i in test_idx]
                test_masks = [masks[i] for i in test_idx]
                probs = predict_class_probs(model, test_images, test_masks, spec, tta=args.tta)
                y = [CLASSES.index(labels[i]) for i in test_idx]
                held_out[f"{arch}/fold{f}/index"] = np.asarray(test_idx)
                held_out[f"{arch}/fold{f}/probs"] = np.asarray(probs, np.float32)
                if args.probs_out is not None:  # after every fold: a stopped run keeps its folds
                    np.savez(args.probs_out, **held_out)
                entry = {
                    "fold": f, "train_minutes": round(minutes, 2),
                    "epochs_run": len(result.history), "stop_reason": result.stop_reason,
                    "best_epoch": result.best.epoch if result.best else None,
                    "seconds_per_epoch": round(float(np.median(
                        [h.seconds for h in result.history])), 2) if result.history else None,
                    "threads_chosen": [d[0] for d in result.thread_decisions],
                }  # fmt: skip
                entry.update(scores(args.task, y, probs))
                if args.compare_measurements and spec.measurements is not None:
                    alone = replace(spec, measurements=None)
                    entry.update(scores(args.task, y, predict_class_probs(
                        model, test_images, test_masks, alone, tta=args.tta,
                    ), prefix="network_only_"))  # fmt: skip
                    measured = spec.measurements.probs(feature_matrix(test_images, test_masks))
                    entry.update(scores(args.task, y, measured, prefix="measurements_only_"))
                if args.compare_tta:
                    other_probs = predict_class_probs(
                        model, [images[i] for i in test_idx], [masks[i] for i in test_idx], spec,
                        tta=not args.tta,
                    )  # fmt: skip
                    entry.update(scores(args.task, y, other_probs, prefix=other))
                per_arch[arch].append(entry)
                print(json.dumps({"arch": arch, **entry}), file=sys.stderr, flush=True)
                if arch not in timings:
                    sample = list(test_idx[:50])
                    timings[arch] = timing(model, [images[i] for i in sample],
                                           [masks[i] for i in sample], spec,
                                           args.tta)  # fmt: skip
        keys = ("bethesda_accuracy", "bethesda_macro_f1", "binary_f1_abnormal",
                "binary_macro_f1", "binary_accuracy", "binary_auc")  # fmt: skip
        if args.task == "binary":
            keys = keys[2:]
        if args.compare_tta:
            keys = keys + tuple(f"{other}{k}" for k in keys)
        if args.compare_measurements and args.measurements:
            base = keys
            for prefix in ("network_only_", "measurements_only_"):
                keys = keys + tuple(f"{prefix}{k}" for k in base)
        summary = {
            arch: {k: {"mean": round(float(np.mean([e[k] for e in runs])), 4),
                       "std": round(float(np.std([e[k] for e in runs])), 4)} for k in keys}
            for arch, runs in per_arch.items() if runs
        }  # fmt: skip
        comparisons = {}
        gap, image_only = per_arch.get("fusion-gap", []), per_arch.get("image-only", [])
        if len(gap) == len(image_only) > 1:
            for k in keys:
                comparisons[k] = wilcoxon_compare([e[k] for e in gap], [e[k] for e in image_only])
        out = {
            "benchmark": "cls_herlev_cv", "task": args.task, "folds": args.folds,
            "n_images": len(names),
            "class_counts": {c: labels.count(c) for c in CLASSES}, "backbone": args.backbone,
            "input_size": args.input_size, "minutes_per_run": args.minutes_per_run,
            "settings": given,
            "recipe": {"epochs": args.epochs, "patience": args.patience, "lr": args.lr,
                       "lr_patience": args.lr_patience, "ema_decay": args.ema_decay,
                       "balance": args.balance, "batch_size": args.batch_size, "tta": args.tta,
                       "measurements": args.measurements},
            "segmentation": seg_info, "summary": summary,
            "wilcoxon_fusion_gap_vs_image_only": comparisons, "cpu_timing_per_image": timings,
            "per_fold": per_arch, "threads": torch.get_num_threads(),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }  # fmt: skip
        print(json.dumps(out, indent=2, default=float))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
