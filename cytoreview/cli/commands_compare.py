"""``compare-encoders`` (the U-Net's encoders on one recipe and split) and ``compare-methods``.

The workflow (torch) is imported when the command runs, so the parser stays quick.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cytoreview.choices import DEVICES, SEG_ENCODERS
from cytoreview.cli.progress import console, drive, esc
from cytoreview.settings import current_user
from cytoreview.types import CancelToken
from cytoreview.workflows.projects import open_project

EXIT_CANCELLED = 130


def register(sub: Any) -> None:
    """Add ``compare-encoders`` to the ``cytoreview`` parser."""
    p = sub.add_parser(
        "compare-encoders",
        help="train the U-Net with several encoders on one split and tabulate their scores",
        description=_cmd_compare.__doc__,
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument(
        "--encoders",
        nargs="+",
        choices=SEG_ENCODERS,
        metavar="NAME",
        help="encoders to compare (default: Wubineh et al.'s five: vgg19_bn resnet50 "
        f"mobilenet_v2 efficientnet-b2 densenet121); valid: {', '.join(SEG_ENCODERS)}",
    )
    p.add_argument(
        "--preset",
        metavar="NAME",
        help="the shared training recipe (e.g. wubineh2024, the paper's; default: CytoReview's)",
    )
    p.add_argument(
        "--include-generated",
        action="store_true",
        help="also learn from masks a mask generator made (e.g. `generate-masks --generator "
        "otsu`): the paper's setting, with no painting",
    )
    p.add_argument("--epochs", type=int, help="maximum epochs per encoder")
    p.add_argument(
        "--time-budget", type=float, metavar="MIN", help="stop each encoder after MIN minutes"
    )
    p.add_argument("--input-size", type=int, help="model input side, a multiple of 32")
    p.add_argument("--batch-size", type=int, help="images per step")
    p.add_argument("--device", choices=DEVICES, help="auto: a GPU if there is one")
    p.add_argument("--seed", type=int, help="random seed: the same split for every encoder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_compare)


def _base_request(args: argparse.Namespace) -> Any:
    """The shared recipe: defaults, then the preset, then the flags given."""
    from cytoreview.workflows.segmentation import seg_request

    given = {
        "epochs": args.epochs,
        "time_budget_min": args.time_budget,
        "input_size": args.input_size,
        "batch_size": args.batch_size,
        "device": args.device,
        "seed": args.seed,
    }
    explicit = {k: v for k, v in given.items() if v is not None}
    if args.include_generated:
        explicit["include_generated"] = True
    return seg_request(args.preset, **explicit)


def register_methods(sub: Any) -> None:
    """Add ``compare-methods`` to the ``cytoreview`` parser."""
    p = sub.add_parser(
        "compare-methods",
        help="the project's segmentation methods side by side (training and ground truth)",
        description=_cmd_methods.__doc__,
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("--truth", type=Path, help="ground-truth label masks named like the images")
    p.add_argument("--ignore", type=Path, help="masks of pixels to leave out of every score")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_methods)


def _cmd_methods(args: argparse.Namespace) -> int:
    """Every trained segmenter with the Dice and IoU its validation images measured (rows with
    the same split letter were scored on the same images), and, with --truth, every automatic
    method's latest mask of each image (segmenters and mask generators, e.g. masks from
    class labels) scored against the ground truth on the images they all masked."""
    from cytoreview.workflows.method_comparison import compare_mask_methods

    token = CancelToken()
    with open_project(args.project) as project:
        job = compare_mask_methods(project, args.truth, ignore_dir=args.ignore, cancel=token)
        result = drive(job, token, verbose=args.verbose)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return 0
    tags: dict[str, str] = {}
    console.print("trained segmenters (validation images of each run, pooled):")
    for r in result.trained:
        tag = tags.setdefault(r.split_tag, chr(ord("A") + len(tags)))
        scores = "  ".join(
            f"{k.replace('_', ' ')} {v:.3f}" for k, v in r.scores.items() if v is not None
        )
        console.print(f"  {esc(r.model_id)}{' (in use)' if r.current else ''}: {esc(r.method)}; "
                      f"split {tag}; {scores}")  # fmt: skip
    if not result.trained:
        console.print("  none yet")
    if result.scored:
        console.print(
            f"masks against {esc(str(result.truth_dir))} on the {result.shared_images} image(s) "
            "every method masked (mean over images):"
        )
        for m in result.scored:
            scores = "  ".join(
                f"{metric} {region} {m.mean[region][metric]:.3f}"
                for metric in ("dice", "iou") for region in ("cytoplasm", "nucleus")
                if m.mean[region][metric] is not None
            )  # fmt: skip
            console.print(f"  {esc(m.method)} (source {esc(m.source)}): {scores}")
    for line in result.problems:
        console.print(f"[yellow]{esc(line)}[/]")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    """Train the U-Net once per encoder with one recipe on the same stratified split (same
    seed), score each best model on the validation images at native resolution (pixel
    accuracy; Dice, IoU, precision and sensitivity of cytoplasm and nucleus) and write the
    table as CSV and JSON under PROJECT/exports/. Ctrl-C stops the encoder in training and
    keeps the rows done so far. The segmenter the project used before stays in use."""
    from cytoreview.workflows.compare import PAPER_ENCODERS, compare_encoders

    base = _base_request(args)
    token = CancelToken()
    with open_project(args.project) as project:
        job = compare_encoders(
            project,
            tuple(args.encoders) if args.encoders else PAPER_ENCODERS,
            base=base,
            actor=current_user(args.user),
            cancel=token,
        )
        result = drive(job, token, verbose=args.verbose)
    if args.json:
        data = asdict(result)
        data["table_csv"] = str(result.table_csv) if result.table_csv else None
        data["table_json"] = str(result.table_json) if result.table_json else None
        print(json.dumps(data, indent=2, default=str))
    else:
        _print_table(result)
    return EXIT_CANCELLED if result.cancelled else 0


def _print_table(result: Any) -> None:
    from cytoreview.workflows.compare import SCORE_KEYS

    console.print(
        f"{result.n_train} train / {result.n_val} validation images; mean over the validation "
        "images (Dice, IoU, precision, sensitivity per class)"
    )
    head = f"{'encoder':<16}{'status':<10}{'train s':>8}{'acc':>7}"
    for cls in ("cyto", "nuc"):
        head += "".join(f"{f'{m} {cls}':>10}" for m in ("Dice", "IoU", "prec", "sens"))
    console.print(head, markup=False)
    for row in result.rows:
        line = f"{row.encoder:<16}{row.status:<10}{row.seconds:>8.0f}"
        for i, key in enumerate(SCORE_KEYS):
            value = row.scores.get(key)
            width = 7 if i == 0 else 10
            line += f"{value:>{width}.3f}" if value is not None else f"{'-':>{width}}"
        console.print(line, markup=False)
    if result.table_csv is not None:
        console.print(f"table written: {esc(str(result.table_csv))} (and .json)")
    if result.cancelled:
        console.print("[yellow]cancelled: the rows above are the encoders done so far[/]")
