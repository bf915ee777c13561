"""Demo commands: synthetic data, and the end-to-end demo.

The demo workflow reaches every model (torch, timm, ONNX Runtime: seconds to import), so it is
imported by each command when it runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cytoreview.cli.progress import command_name, console, drive, esc
from cytoreview.cli.render import print_status
from cytoreview.settings import current_user
from cytoreview.types import CancelToken

EXIT_CANCELLED = 130


def say(*objects: object) -> None:
    """Print a line as written: it names folders and files, which may hold "[...]" (markup)."""
    console.print(*objects, markup=False)


def register(sub: Any) -> None:
    """Add ``demo-data`` and ``demo`` to the ``cytoreview`` parser."""
    p = sub.add_parser(
        "demo-data", help="write synthetic Pap cells with masks", description=_cmd_demo_data.__doc__
    )
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
    p.add_argument(
        "--fields", type=float, default=0.1, help="share of multi-cell fields (default 0.1)"
    )
    p.set_defaults(handler=_cmd_demo_data)

    p = sub.add_parser(
        "demo", help="build a demo project end to end", description=_cmd_demo.__doc__
    )
    p.add_argument(
        "--out", type=Path, default=Path("demo-output"), help="folder (default ./demo-output)"
    )
    p.add_argument("--n", type=int, default=80, help="synthetic images (default 80)")
    p.add_argument("--per-class", type=int, default=5, help="seed images per class (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "--epochs",
        type=int,
        default=30,
        help="U-Net training epochs (default 30; 0 skips training)",
    )
    p.add_argument(
        "--cls-epochs",
        type=int,
        default=15,
        help="classifier training epochs (default 15; 0 skips classification)",
    )
    p.set_defaults(handler=_cmd_demo)


def _cmd_demo_data(args: argparse.Namespace) -> int:
    """Write synthetic Pap-stained cells and fields with exact masks: images/<class>/*.png,
    masks/*.png (0 background, 1 cytoplasm, 2 nucleus) and labels.csv."""
    # torch loads here, when the command runs, not when the parser is built.
    from cytoreview.workflows.demo import write_demo_data

    token = CancelToken()
    report = drive(
        write_demo_data(args.out, args.n, seed=args.seed, field_fraction=args.fields, cancel=token),
        token,
        verbose=args.verbose,
    )
    per_class = ", ".join(f"{k} {v}" for k, v in report.per_class.items())
    say(f"{report.images} image(s) written to {report.out} ({per_class})")
    say(f"import them with: cytoreview import PROJECT {report.out / 'images'} "
        f"--masks {report.out / 'masks'}")  # fmt: skip
    return EXIT_CANCELLED if token.cancelled else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Build a synthetic Pap-smear project end to end and show what exists: data (a fifth held
    out as a test split), import, seed set, a simulated pathologist painting the seeds, a U-Net
    trained on them that auto-masks the rest, a classifier fusing image and mask, predictions
    with Grad-CAM++ heatmaps and cell measurements, CSV and mask exports, an HTML report and an
    overview sheet."""
    # torch loads here, when the command runs, not when the parser is built.
    from cytoreview.workflows.demo import run_demo

    token = CancelToken()
    job = run_demo(
        args.out, actor=current_user(args.user), n=args.n, per_class=args.per_class,
        seed=args.seed, epochs=args.epochs, cls_epochs=args.cls_epochs, cancel=token,
    )  # fmt: skip
    report = drive(job, token, verbose=args.verbose)
    print_status(report.status)
    console.print(f"\n[bold]Demo project:[/] {esc(str(report.project))}")
    say(f"  {report.imported.summary}")
    say(f"  {report.painted} seed image(s) painted by the simulated pathologist")
    if report.training is not None:
        t = report.training
        say(f"  U-Net {t.model_id} trained on {t.n_train} + {t.n_val} painted images "
            f"in {t.seconds / 60:.1f} min on {t.device} ({t.stop_reason})")  # fmt: skip
    if report.segmented is not None:
        say(f"  {len(report.segmented.segmented)} image(s) auto-segmented; "
            f"{len(report.segmented.skipped_human)} painted ones left alone")  # fmt: skip
    if report.auto_scores:
        s = report.auto_scores
        say(
            f"  auto masks vs the synthetic truth: Dice cytoplasm {s['dice_cytoplasm']:.3f}, "
            f"nucleus {s['dice_nucleus']:.3f} (IoU {s['iou_cytoplasm']:.3f} / "
            f"{s['iou_nucleus']:.3f})"
        )
    if report.classifier is not None:
        c = report.classifier
        say(f"  classifier {c.model_id} ({c.class_names and len(c.class_names)} classes)"
            f" trained in {c.seconds / 60:.1f} min ({c.stop_reason})")  # fmt: skip
    if report.classified is not None and report.explained is not None:
        say(f"  {report.classified.classified} image(s) classified, "
            f"{report.explained.explained} Grad-CAM++ heatmap(s)")  # fmt: skip
    t = report.test_scores
    if t is not None and t.multiclass is not None:
        line = (f"  scored on {t.source}: accuracy {t.multiclass.accuracy:.3f}, "
                f"macro F1 {t.multiclass.macro_f1:.3f}")  # fmt: skip
        if t.binary is not None:
            line += f"; needs-review F1 {t.binary.f1:.3f}, macro F1 {t.binary.macro_f1:.3f}"
        say(line)
    if report.predictions_csv is not None:
        say(f"  predictions and measurements: {report.predictions_csv}")
    say(f"  {report.exported.written} mask(s) exported to {report.exported.out}")
    if report.report_html is not None:
        console.print(f"  [bold]report:[/] {esc(str(report.report_html))}")
    say(f"  overview (seeds, then the most uncertain auto masks): {report.overview}")
    say("\nTry next:")
    exe = command_name()
    say(f"  {exe} status {report.project}")
    say(f"  {exe} audit {report.project} --last 10")
    say(f"  {exe} gui {report.project}   # the workbench window")
    if report.training is not None:
        say(
            f"  {exe} train-seg {report.project} --init {report.training.model_id}"
            "   # fine-tune after corrections"
        )
    return EXIT_CANCELLED if report.cancelled else 0
