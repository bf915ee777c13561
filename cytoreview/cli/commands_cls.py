"""Classification commands: train-cls, classify, explain, evaluate-cls, report.

The parser's choices come from the torch-free :mod:`cytoreview.choices`; the workflows (torch,
timm, ONNX Runtime: seconds to import) are imported by each command when it runs, so that
``cytoreview --help`` and the project commands start at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytoreview.choices import (
    BALANCE_MODES,
    CAM_METHODS,
    CLS_BACKBONES,
    DEVICES,
    EXPLAIN_FLIPPING_STEPS,
    TASKS,
    TINY_BACKBONES,
)
from cytoreview.cli.compute_flags import add_compute_flags, compute_spec
from cytoreview.cli.progress import console, drive, esc, warn
from cytoreview.cli.settings_flags import add_method_flags, chosen_settings
from cytoreview.defaults import CLS, RUN
from cytoreview.settings import current_user
from cytoreview.types import CancelToken
from cytoreview.workflows.projects import open_project

if TYPE_CHECKING:  # for the annotations only; the modules themselves load torch
    from cytoreview.workflows.classification import ClsTrainRequest
    from cytoreview.workflows.evaluate_cls import ClsEvaluation

EXIT_CANCELLED = 130
#: Inference engines of classify / explain (cytoreview.workflows.cls_runtime.ENGINES; listed
#: here so that building the parser imports no torch).
ENGINES = ("onnx", "torch")
ENGINE_HELP = "onnx: ONNX Runtime (default); torch: torch eager, the reference"
TTA_HELP = (
    "average each cell's class probabilities over its 8 rotations and mirror images (8x the "
    f"model calls; default {'on' if CLS.tta else 'off'})"
)


def register(sub: Any) -> None:
    """Add the classification commands to the ``cytoreview`` parser."""
    p = sub.add_parser(
        "train-cls", help="train the cell classifier", description=_cmd_train.__doc__
    )
    p.add_argument("project", type=Path, help="the project folder")
    # --arch and each architecture's own settings, from the methods' settings dataclasses.
    add_method_flags(p, "classifier", default=CLS.arch)
    p.add_argument("--task", choices=TASKS, default=CLS.task,
                   help="bethesda: the project's classes; binary: needs review or not "
                        f"(default {CLS.task})")  # fmt: skip
    p.add_argument("--backbone", default=CLS.backbone, metavar="NAME",
                   help=f"timm CNN of the image branch (default {CLS.backbone}; e.g. "
                        f"{', '.join(CLS_BACKBONES[:6])}; tiny for tests: "
                        f"{', '.join(TINY_BACKBONES)})")  # fmt: skip
    p.add_argument("--mask-backbone", default=CLS.mask_backbone, metavar="NAME",
                   help="CNN of the mask branch (default: the image branch's, or the parent's "
                        "with --init)")  # fmt: skip
    p.add_argument(
        "--input-size",
        type=int,
        help=f"model input side (default: the median image side rounded up to 32, "
        f"{CLS.input_min}-{CLS.input_max}; a fine-tuned model keeps its parent's)",
    )
    p.add_argument(
        "--epochs", type=int, default=CLS.epochs, help=f"maximum epochs (default {CLS.epochs})"
    )
    p.add_argument("--time-budget", type=float, metavar="MIN", help="stop after MIN minutes")
    p.add_argument(
        "--batch-size",
        type=int,
        default=CLS.batch_size,
        help=f"images per step (default {CLS.batch_size})",
    )
    p.add_argument(
        "--lr", type=float, default=CLS.lr, help=f"Adam learning rate (default {CLS.lr:g})"
    )
    p.add_argument(
        "--patience",
        type=int,
        default=CLS.patience,
        help=f"early-stopping patience in epochs (default {CLS.patience})",
    )
    p.add_argument(
        "--lr-patience",
        type=int,
        default=CLS.lr_patience,
        help="epochs without improvement before the learning rate is multiplied by "
        f"{CLS.lr_factor:g}; 0 keeps it constant (default {CLS.lr_patience})",
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        default=CLS.ema_decay,
        help="validate and keep a moving average of the weights with this decay per step; "
        f"0 keeps the weights as trained (default {CLS.ema_decay:g})",
    )
    p.add_argument(
        "--balance",
        choices=BALANCE_MODES,
        default=CLS.balance,
        help="balanced: epochs as long as the training set, each class an equal share; "
        "oversample: minority classes repeated up to the largest class (longer epochs); "
        f"none (default {CLS.balance})",
    )
    p.add_argument(
        "--measurements",
        action=argparse.BooleanOptionalAction,
        default=CLS.measurements,
        help="join a measurement model (sizes, N:C, colours, nucleus shape and position and "
        "texture of each cell, read from its mask) to a network that sees masks; the call "
        f"is both models' geometric mean (default {'on' if CLS.measurements else 'off'})",
    )
    p.add_argument("--device", choices=DEVICES, default=RUN.device,
                   help="auto: a GPU if there is one")  # fmt: skip
    p.add_argument(
        "--human-masks-only",
        action="store_true",
        help="use only manual/corrected/approved masks (default: auto masks too)",
    )
    p.add_argument("--weights", metavar="FILE",
                   help="initial weights of the image backbone (e.g. ImageNet .pth)")  # fmt: skip
    p.add_argument("--init", metavar="MODEL", help="fine-tune a classifier of this project")
    p.add_argument("--seed", type=int, default=RUN.seed, help="random seed (same seed, same run)")
    p.set_defaults(handler=_cmd_train)

    p = sub.add_parser(
        "classify", help="predict every image's class", description=_cmd_classify.__doc__
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("--model", help="model id (default: the current Bethesda classifier)")
    p.add_argument("--device", choices=DEVICES, default=RUN.device,
                   help="auto: a GPU if there is one")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=16, help="images per model call")
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0], help=ENGINE_HELP)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=CLS.tta, help=TTA_HELP)
    add_compute_flags(p)
    p.set_defaults(handler=_cmd_classify)

    p = sub.add_parser(
        "explain", help="heatmaps of the classifier's calls", description=_cmd_explain.__doc__
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("--method", choices=CAM_METHODS, default="gradcam++", help="default gradcam++")
    p.add_argument("--model", help="model id (default: the current Bethesda classifier)")
    p.add_argument("--images", nargs="+", metavar="NAME", help="only these images")
    p.add_argument("--flipping-steps", type=int, default=EXPLAIN_FLIPPING_STEPS,
                   help="steps of the pixel-flipping check (0 skips it; default "
                        f"{EXPLAIN_FLIPPING_STEPS})")  # fmt: skip
    p.add_argument("--device", choices=DEVICES, default=RUN.device,
                   help="auto: a GPU if there is one")  # fmt: skip
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0], help=ENGINE_HELP)
    p.add_argument("--tta", action=argparse.BooleanOptionalAction, default=CLS.tta,
                   help="the class explained is the one the 8-view mean predicts, as classify's "
                        "(the map is of the image as it is; default: as classify)")  # fmt: skip
    p.set_defaults(handler=_cmd_explain)

    p = sub.add_parser("evaluate-cls", help="score predictions against true classes",
                       description=_cmd_evaluate.__doc__)  # fmt: skip
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument(
        "--truth",
        type=Path,
        help="CSV with image and class columns (default: the project's own labels)",
    )
    p.add_argument("--model", help="score this model's predictions only")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_evaluate)

    p = sub.add_parser(
        "report", help="write the HTML review report", description=_cmd_report.__doc__
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--truth",
        type=Path,
        help="CSV of held-out true classes to score against (default: the project's labels)",
    )
    p.add_argument(
        "--seg-truth",
        type=Path,
        metavar="FOLDER",
        help="true label masks (0/1/2) named like the images: the report scores the current "
        "masks against them at native resolution, as evaluate-seg does",
    )
    p.add_argument("--seg-ignore", type=Path, metavar="FOLDER", help="ignore masks for --seg-truth")
    p.add_argument("--gallery", type=int, default=24, help="images in the gallery (default 24)")
    p.set_defaults(handler=_cmd_report)


def _cmd_train(args: argparse.Namespace) -> int:
    """Train a classifier on the labelled images and their current masks: image-only, or
    image + mask fused by flattening or by global average pooling (default). Every class gets
    an equal share of each epoch (with augmentation); 80/20 stratified validation; the learning
    rate is lowered on plateaus and a moving average of the weights is kept; early stopping. Classes
    without examples are reported and left out."""
    # torch loads here, when the command runs, not when the parser is built.
    from cytoreview.workflows.classification import train_classification

    request = train_request(args)
    token = CancelToken()
    with open_project(args.project) as project:
        job = train_classification(project, request, actor=current_user(args.user), cancel=token)
        report = drive(job, token, verbose=True)
    console.print(
        f"model {esc(report.model_id)} ({report.task}: {esc(', '.join(report.class_names))}): "
        f"{report.status} ({esc(report.stop_reason)}) after {len(report.history)} epoch(s), "
        f"{report.seconds / 60:.1f} min on {esc(report.device)}"
    )
    if report.best is None:
        console.print("[yellow]no epoch finished: no model was saved[/]")
    elif report.validation:
        v = report.validation
        console.print(
            f"best epoch {report.best.epoch}: validation ({report.n_val} images) accuracy "
            f"{v['accuracy']:.3f}, macro F1 {v['macro']['f1']:.3f}"
            + (f", macro AUC {v['macro']['auc']:.3f}" if v["macro"]["auc"] is not None else "")
        )
    return EXIT_CANCELLED if report.status == "cancelled" else 0


def train_request(args: argparse.Namespace) -> ClsTrainRequest:
    """The training request that ``train-cls``'s arguments describe.

    The workbench's classifier form, left as it opens, asks for the same request as these
    flags left out (both read :data:`cytoreview.defaults.CLS`; a test compares them).
    """
    from cytoreview.workflows.classification import ClsTrainRequest

    return ClsTrainRequest(
        task=args.task, arch=args.arch, backbone=args.backbone, mask_backbone=args.mask_backbone,
        input_size=args.input_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        patience=args.patience, balance=args.balance, time_budget_min=args.time_budget,
        lr_patience=args.lr_patience, ema_decay=args.ema_decay, measurements=args.measurements,
        device=args.device, seed=args.seed, human_masks_only=args.human_masks_only,
        weights=args.weights, init=args.init,
        settings=chosen_settings(args, "classifier", args.arch),
    )  # fmt: skip


def _cmd_classify(args: argparse.Namespace) -> int:
    """Predict the class of every image with the current classifier and store the
    probabilities, an uncertainty score (normalised entropy: the review queue sorts by it) and
    the binary needs-review call (from a dedicated binary model if one is trained, else derived
    from the class probabilities)."""
    # torch loads here, when the command runs, not when the parser is built.
    from cytoreview.workflows.review_data import classify_project

    token = CancelToken()
    with open_project(args.project) as project:
        job = classify_project(
            project, actor=current_user(args.user), model_id=args.model, device=args.device,
            batch_size=args.batch_size, engine=args.engine, cancel=token,
            compute=compute_spec(args), tta=args.tta,
        )  # fmt: skip
        report = drive(job, token, verbose=args.verbose)
    models = esc(", ".join(
        f"{task}: {mid}" + (" and its measurement model" if task in report.joined else "")
        for task, mid in report.models.items()
    ))  # fmt: skip
    console.print(
        f"{report.classified} image(s) classified ({models}; {report.engine} on "
        f"{esc(report.device)}{', 8 views averaged' if report.tta else ''}); "
        f"{report.seconds_per_image * 1000:.0f} ms per image; "
        f"ran on {esc(report.driver)}"
    )
    if report.counts:
        console.print(
            "predicted: " + ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())),
            markup=False,
        )
    for line in report.skipped[:10]:
        warn(line)
    if len(report.skipped) > 10:
        warn(f"... {len(report.skipped) - 10} more skipped")
    return EXIT_CANCELLED if report.cancelled else 0


def _cmd_explain(args: argparse.Namespace) -> int:
    """Compute a heatmap (Grad-CAM++ by default) of the predicted class for every image, at the
    image's own size, with quality figures: entropy, a pixel-flipping check and the share of
    the heatmap on nucleus / cytoplasm / background. Images where the model mostly looked at
    the background are flagged for review."""
    # torch loads here, when the command runs, not when the parser is built.
    from cytoreview.workflows.review_data import explain_project

    token = CancelToken()
    with open_project(args.project) as project:
        ids = None
        if args.images:
            ids = [project.image(name).id for name in args.images]
        job = explain_project(
            project, method=args.method, model_id=args.model, image_ids=ids,
            flipping_steps=args.flipping_steps, device=args.device, engine=args.engine,
            cancel=token, tta=args.tta,
        )  # fmt: skip
        report = drive(job, token, verbose=args.verbose)
    how = "closed form" if report.closed_form else "autograd"
    console.print(
        f"{report.explained} heatmap(s) with {report.method} from {esc(report.model_id)} "
        f"({report.engine} on {esc(report.device)}, {how}); "
        f"{report.seconds_per_image * 1000:.0f} ms per image"
    )
    if report.flagged:
        shown = ", ".join(report.flagged[:10]) + (" ..." if len(report.flagged) > 10 else "")
        console.print(
            f"[yellow]{len(report.flagged)} image(s) where the model looked mostly at the "
            f"background (review them):[/] {esc(shown)}",
            soft_wrap=True,
        )
    for line in report.skipped[:10]:
        warn(line)
    return EXIT_CANCELLED if report.cancelled else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """Score the stored predictions against true classes: accuracy, per-class and macro
    precision / recall / F1, one-vs-rest ROC AUC, confusion matrices, and the binary
    needs-review call (F1, sensitivity, specificity, AUC)."""
    # torch loads here, when the command runs, not when the parser is built.
    from cytoreview.workflows.evaluate_cls import evaluate_classification

    with open_project(args.project) as project:
        result = evaluate_classification(project, args.truth, model_id=args.model)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    _print_evaluation(result)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    """Write a self-contained HTML report (report.html, every image embedded, plus the plots
    as PNG files): data per class, segmentation and classification metrics, training curves,
    confusion matrices, ROC curves, a gallery with mask and heatmap overlays, and the cell
    measurements. It shows what is stored; run train-seg / segment / train-cls / classify /
    explain first for the full picture. With --seg-truth the current masks are scored against
    true masks at their own size; without it the segmentation section shows only the training
    run's validation scores (pooled, at the model's input size)."""
    # torch loads here, when the command runs, not when the parser is built.
    from cytoreview.workflows.report import write_report

    token = CancelToken()
    with open_project(args.project) as project:
        job = write_report(
            project, args.out, truth_csv=args.truth, seg_truth_dir=args.seg_truth,
            seg_ignore_dir=args.seg_ignore, max_gallery=args.gallery, cancel=token,
        )  # fmt: skip
        result = drive(job, token, verbose=args.verbose)
    page = result.out / "report.html"
    console.print(
        f"report written: {esc(str(page))} ({', '.join(result.sections)}; {result.gallery} "
        "gallery images)"
    )
    for note in result.notes:
        warn(note, "note")
    return 0


def _print_evaluation(result: ClsEvaluation) -> None:
    from cytoreview.workflows.evaluate_cls import training_images_note

    console.print(f"[bold]{result.n_matched} image(s)[/] scored against {esc(result.source)} "
                  f"(models: {esc(', '.join(result.model_ids))})")  # fmt: skip
    if result.on_training_images:
        warn(training_images_note(result))
    m = result.multiclass
    if m is not None:
        auc = f", macro AUC {m.macro_auc:.3f}" if m.macro_auc is not None else ""
        console.print(f"accuracy {m.accuracy:.3f}, macro F1 {m.macro_f1:.3f}{auc}")
        width = max(len(c) for c in m.class_names)
        console.print(f"  {'class':<{width}}  precision  recall     F1  support    AUC")
        for i, name in enumerate(m.class_names):
            a = m.auc[i]
            console.print(
                f"  {name:<{width}}  {m.precision[i]:9.3f}  {m.recall[i]:6.3f}  {m.f1[i]:5.3f}"
                f"  {m.support[i]:7d}  {'   -' if a is None else f'{a:.3f}'}",
                markup=False,
            )
        console.print("confusion (rows: truth, columns: prediction)")
        console.print("  " + " ".join(f"{c[:7]:>7}" for c in ["", *m.class_names]), markup=False)
        for name, row in zip(m.class_names, m.confusion.tolist(), strict=True):
            console.print("  " + f"{name[:7]:>7} " + " ".join(f"{v:7d}" for v in row), markup=False)
    b = result.binary
    if b is not None:
        auc = f", AUC {b.auc:.3f}" if b.auc is not None else ""
        console.print(
            f"needs review: F1 {b.f1:.3f}, macro F1 {b.macro_f1:.3f}, sensitivity "
            f"{b.sensitivity:.3f}, specificity {b.specificity:.3f}{auc} ({b.n} images)"
        )
    if result.unmatched:
        console.print(
            f"{len(result.unmatched)} truth row(s) not scored, e.g. {result.unmatched[0]}",
            markup=False,
        )
    for problem in result.problems[:10]:
        warn(problem)
