"""Segmentation commands: train-seg, segment, evaluate-seg.

The parser's choices come from the torch-free :mod:`cytoreview.choices`; the segmentation
workflow (torch, segmentation-models-pytorch, ONNX Runtime: seconds to import) is imported by
each command when it runs, so that ``cytoreview --help`` and the project commands start at once.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cytoreview.choices import (
    DEFAULT_PRECISION,
    DEVICES,
    GEOMETRIES,
    LOSSES,
    PRECISIONS,
)
from cytoreview.cli.compute_flags import add_compute_flags, compute_spec
from cytoreview.cli.progress import console, drive, esc, warn
from cytoreview.cli.settings_flags import add_method_flags, chosen_settings
from cytoreview.defaults import RUN, SEG, SEG_MONITORS
from cytoreview.settings import current_user
from cytoreview.types import CancelToken
from cytoreview.workflows.projects import open_project

if TYPE_CHECKING:  # for the annotation only; the module itself loads torch
    from cytoreview.workflows.segmentation import SegTrainRequest

EXIT_CANCELLED = 130


def register(sub: Any) -> None:
    """Add the segmentation commands to the ``cytoreview`` parser."""
    p = sub.add_parser(
        "train-seg",
        help="train a segmenter (the U-Net by default) on the human masks",
        description=_cmd_train.__doc__,
    )
    p.add_argument("project", type=Path, help="the project folder")
    # --arch, --preset and each method's own settings (the U-Net's --encoder...), all from the
    # methods' settings dataclasses: the workbench's form is built from the same definitions.
    add_method_flags(p, "segmenter", default=SEG.arch, presets=True)
    p.add_argument(
        "--include-generated",
        action="store_true",
        help="also learn from masks a mask generator made (`cytoreview generate-masks`): a "
        "project can start with no painting; a model's auto-masks are never learned from",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=SEG.epochs,
        help=f"maximum epochs (default {SEG.epochs}; early stopping ends most runs)",
    )
    p.add_argument("--time-budget", type=float, metavar="MIN", help="stop after MIN minutes")
    p.add_argument("--device", choices=DEVICES, default=RUN.device,
                   help="auto: a GPU if there is one")  # fmt: skip
    p.add_argument(
        "--init",
        metavar="CHECKPOINT",
        help="fine-tune from a model id of this project or a checkpoint/weights file",
    )
    p.add_argument(
        "--input-size", type=int, help="model input side, multiple of 32 (default: from the data)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=SEG.batch_size,
        help=f"images per step (default {SEG.batch_size})",
    )
    p.add_argument(
        "--lr", type=float, default=SEG.lr, help=f"Adam learning rate (default {SEG.lr:g})"
    )
    p.add_argument("--loss", choices=LOSSES, default=SEG.loss, help=f"default {SEG.loss}")
    p.add_argument(
        "--patience",
        type=int,
        default=SEG.patience,
        help=f"early-stopping patience in epochs (default {SEG.patience})",
    )
    p.add_argument(
        "--lr-patience",
        type=int,
        default=SEG.lr_patience,
        help="epochs without improvement before the learning rate is multiplied by "
        f"{SEG.lr_factor:g}; 0 keeps it constant (default {SEG.lr_patience})",
    )
    p.add_argument(
        "--monitor",
        choices=SEG_MONITORS,
        default=SEG.monitor,
        help="what early stopping and the kept model watch on the validation images: image_iou "
        "(IoU of the painted classes, averaged over the images), iou (the same, pooled over "
        f"their pixels) or loss (default {SEG.monitor})",
    )
    p.add_argument(
        "--ema-decay",
        type=float,
        default=SEG.ema_decay,
        help="validate and keep a moving average of the weights with this decay per step; "
        f"0 keeps the weights as trained (default {SEG.ema_decay:g})",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="CPU threads (default: measured while training, fewer on a busy machine)",
    )
    p.add_argument(
        "--no-amp",
        dest="amp",
        action="store_false",
        help="train in fp32 on a GPU too (default: mixed precision on GPUs)",
    )
    p.add_argument(
        "--semi",
        action=argparse.BooleanOptionalAction,
        default=SEG.semi,
        help="also learn from the unpainted images (teacher pseudo-labels, never stored as "
        f"masks; default {'on' if SEG.semi else 'off'})",
    )
    p.add_argument(
        "--calibrate",
        action=argparse.BooleanOptionalAction,
        default=SEG.calibrate,
        help="after training, choose a decision offset for the cells' outline on the "
        "validation images (a shift of the arg-max that raises their Dice; the auto masks use "
        f"it) (default {'on' if SEG.calibrate else 'off'})",
    )
    p.add_argument(
        "--cpu-bf16",
        action="store_true",
        default=SEG.cpu_bf16,
        help="bf16 on CPUs that compute it natively (AVX-512 BF16 / AMX): faster at 256 px, "
        "no faster and slightly worse on 40 px cells (default off)",
    )
    p.add_argument("--seed", type=int, default=RUN.seed, help="random seed (same seed, same run)")
    p.add_argument(
        "--geometry",
        choices=GEOMETRIES,
        default=SEG.geometry,
        help="auto: single-cell crops are resized to the model's input, multi-cell fields are "
        "tiled at native resolution (decided from the painted masks); or force one",
    )
    p.add_argument(
        "--tile-above",
        type=int,
        default=SEG.tile_threshold,
        metavar="PX",
        help="in a project of single-cell crops, images with a side above PX are tiled, not "
        f"resized (default {SEG.tile_threshold}); a project of painted fields tiles every image",
    )
    p.set_defaults(handler=_cmd_train, parser_defaults=_defaults_of(p))

    p = sub.add_parser(
        "segment", help="auto-mask images without a human mask", description=_cmd_segment.__doc__
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("--model", help="model id (default: the project's current segmenter)")
    p.add_argument("--engine", choices=["onnx", "torch"], default="onnx", help="default onnx")
    p.add_argument("--device", choices=DEVICES, default=RUN.device,
                   help="auto: a GPU if there is one")  # fmt: skip
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULT_PRECISION,
        help="ONNX on the CPU: auto (int8 if it passed the quality gate, else fp32), fp32, int8",
    )
    p.add_argument("--batch-size", type=int, default=8, help="images per model call (default 8)")
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average over the 8 rotations and mirror images (8x the model calls; default: "
        f"{'on' if SEG.tta_crops else 'off'} for a model trained on cell crops, "
        f"{'on' if SEG.tta_fields else 'off'} for one trained on fields)",
    )
    p.add_argument("--images", nargs="+", metavar="NAME", help="only these images")
    add_compute_flags(p)
    p.set_defaults(handler=_cmd_segment)

    p = sub.add_parser(
        "evaluate-seg", help="score masks against ground truth", description=_cmd_evaluate.__doc__
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("--truth", type=Path, required=True, help="folder of true label masks (0/1/2)")
    p.add_argument("--ignore", type=Path, help="folder of ignore masks (non-zero = not scored)")
    p.add_argument("--provenance", nargs="+", choices=["manual", "auto", "corrected", "approved"],
                   help="score only masks of these kinds (e.g. auto)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_evaluate)


def _cmd_train(args: argparse.Namespace) -> int:
    """Train a segmenter (the U-Net unless --arch or --preset names another) on every manual,
    corrected or approved mask (and generated ones with --include-generated), with a
    stratified 80/20 validation split and early stopping. With --init, fine-tune an existing
    model: the result is a new model version and the old one is kept."""
    # torch loads here, when the command runs, not when the parser is built.
    from cytoreview.workflows.segmentation import train_segmentation

    request = train_request(args)
    token = CancelToken()
    with open_project(args.project) as project:
        report = drive(
            train_segmentation(project, request, actor=current_user(args.user), cancel=token),
            token,
            verbose=True,
        )
    console.print(
        f"model {esc(report.model_id)}: {report.status} ({esc(report.stop_reason)}) after "
        f"{len(report.history)} epoch(s), {report.seconds / 60:.1f} min on {esc(report.device)}"
    )
    if report.best is not None:
        s = report.best.scores
        console.print(
            f"best epoch {report.best.epoch}: val loss {report.best.val_loss:.4f}; Dice cytoplasm "
            f"{s['dice_cytoplasm']:.3f}, nucleus {s['dice_nucleus']:.3f}; IoU cytoplasm "
            f"{s['iou_cytoplasm']:.3f}, nucleus {s['iou_nucleus']:.3f} ({report.n_val} val images)"
        )
    else:
        console.print("[yellow]no epoch finished: no model was saved[/]")
    return EXIT_CANCELLED if report.status == "cancelled" else 0


def train_request(args: argparse.Namespace) -> SegTrainRequest:
    """The training request that ``train-seg``'s arguments describe.

    The workbench's train form, left as it opens, asks for the same request as these flags
    left out (both read :data:`cytoreview.defaults.SEG`; a test compares them).
    """
    from cytoreview.workflows.segmentation import find_preset, seg_request

    fields = dict(
        arch=args.arch, epochs=args.epochs, time_budget_min=args.time_budget,
        device=args.device, init=args.init, input_size=args.input_size,
        batch_size=args.batch_size, lr=args.lr, loss=args.loss, patience=args.patience,
        lr_patience=args.lr_patience, ema_decay=args.ema_decay, monitor=args.monitor,
        seed=args.seed, tile_threshold=args.tile_above, threads=args.threads, amp=args.amp,
        cpu_bf16=args.cpu_bf16, geometry=args.geometry, semi=args.semi,
        calibrate=args.calibrate,
        include_generated=args.include_generated,
    )  # fmt: skip
    dests = {"tile_threshold": "tile_above"}
    if args.preset:  # a preset's recipe, then only the flags the user really gave
        defaults = getattr(args, "parser_defaults", {})
        fields = {k: v for k, v in fields.items() if v != defaults.get(dests.get(k, k), v)}
    arch = fields.get("arch") or (
        find_preset("segmenter", args.preset)[0].name if args.preset else args.arch
    )
    settings = chosen_settings(args, "segmenter", arch)
    return seg_request(args.preset, **fields, settings=settings)


def _defaults_of(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Every flag's default, so a preset is overridden only by the flags a user gave."""
    return {action.dest: action.default for action in parser._actions}


def _cmd_segment(args: argparse.Namespace) -> int:
    """Generate 'auto' masks with the current segmenter for every image that has no manual,
    corrected or approved mask (those are never touched). Each auto mask records the model and
    an uncertainty score that the review queue sorts by."""
    # torch loads here, when the command runs, not when the parser is built.
    from cytoreview.workflows.segmentation import segment_project

    token = CancelToken()
    with open_project(args.project) as project:
        job = segment_project(
            project, actor=current_user(args.user), model_id=args.model, engine=args.engine,
            device=args.device, precision=args.precision, batch_size=args.batch_size, tta=args.tta,
            names=args.images, cancel=token, compute=compute_spec(args),
        )  # fmt: skip
        report = drive(job, token, verbose=args.verbose)
    n = len(report.segmented)
    rate = n / report.seconds if report.seconds else 0.0
    if report.cancelled:  # say so first: the line below counts only what was saved
        console.print("stopped before the end: the images not reached keep the mask they had")
    console.print(f"{n} image(s) auto-segmented with {esc(report.model_id)} ({report.engine}, "
                  f"{esc(report.device)}{', 8 views averaged' if report.tta else ''}) "
                  f"in {report.seconds:.1f} s ({rate:.1f} images/s); "
                  f"{len(report.skipped_human)} with a human mask left alone; "
                  f"ran on {esc(report.driver)}")  # fmt: skip
    if report.uncertainties:
        worst = sorted(report.uncertainties.items(), key=lambda kv: -kv[1])[:5]
        console.print(
            "most uncertain: " + ", ".join(f"{k} ({v:.3f})" for k, v in worst), markup=False
        )
    for problem in report.problems:
        warn(problem)
    return EXIT_CANCELLED if report.cancelled else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    """Score the current masks against a folder of ground-truth label images named like the
    images: IoU, Dice, precision, recall, specificity and pixel accuracy for cytoplasm, nucleus
    and the whole cell, averaged over images and pooled over pixels."""
    # torch loads here, when the command runs, not when the parser is built.
    from cytoreview.workflows.segmentation import evaluate_segmentation

    token = CancelToken()
    with open_project(args.project) as project:
        job = evaluate_segmentation(
            project, args.truth, ignore_dir=args.ignore, provenance=args.provenance, cancel=token
        )
        result = drive(job, token, verbose=args.verbose)
    if args.json:
        print(json.dumps({
            "all": result.report.to_dict(),
            "by_provenance": {k: v.to_dict() for k, v in result.by_provenance.items()},
            "missing_truth": result.missing_truth, "problems": result.problems,
        }, indent=2))  # fmt: skip
        return 0
    for name, report in [("all", result.report), *result.by_provenance.items()]:
        console.print(f"[bold]{esc(name)}[/] ({len(report.per_image)} images), mean over images:")
        for cls in ("cytoplasm", "nucleus", "cell"):
            s = report.mean[cls]
            console.print(
                f"  {cls:<9} Dice {s.dice:.3f}  IoU {s.iou:.3f}  precision {s.precision:.3f}"
                f"  recall {s.recall:.3f}  specificity {s.specificity:.3f}"
            )
    if result.missing_truth:
        console.print(
            f"{len(result.missing_truth)} image(s) have no ground truth and were not scored"
        )
    for problem in result.problems:
        warn(problem)
    return 0
