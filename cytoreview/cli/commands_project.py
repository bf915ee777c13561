"""Project commands: init, import, seeds, status, export, audit, check.

Everything imported at the top is light (no torch, no scipy): building the parser and running
``init``, ``status``, ``seeds`` or ``audit`` must answer at once. Heavier workflows are imported
by the command that runs them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cytoreview.cli.progress import console, drive, esc, warn
from cytoreview.cli.render import print_status
from cytoreview.errors import ProjectError
from cytoreview.settings import DEFAULT_SEEDS_PER_CLASS, current_user
from cytoreview.storage.atomic import STALE_TEMP_AGE_S
from cytoreview.storage.images import DEFAULT_MAX_PIXELS
from cytoreview.types import CLASS_SCHEMES, CancelToken
from cytoreview.workflows.check import check_project
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.projects import build_scheme, create_project, open_project
from cytoreview.workflows.seeds import pick_seeds
from cytoreview.workflows.slides import set_slide_pixel_size, slide_summaries
from cytoreview.workflows.status import project_status

EXIT_CANCELLED = 130


def register(sub: Any) -> None:
    """Add the project commands to the ``cytoreview`` parser."""
    p = sub.add_parser("init", help="create a project folder", description=_cmd_init.__doc__)
    p.add_argument("project", type=Path, help="new (or empty) folder for the project")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--scheme",
        choices=sorted(CLASS_SCHEMES),
        help="a preset class scheme (default: bethesda = NILM, ASC-US, LSIL, HSIL)",
    )
    group.add_argument("--classes", nargs="+", metavar="CLASS", help="your own class names")
    p.add_argument(
        "--not-revisable",
        nargs="+",
        metavar="CLASS",
        help="classes whose binary call is 'not revisable' (default: NILM / the first class)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"refuse images larger than this (default {DEFAULT_MAX_PIXELS:,})",
    )
    p.set_defaults(handler=_cmd_init)

    p = sub.add_parser("import", help="import images (and masks)", description=_cmd_import.__doc__)
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("source", type=Path, help="a folder (sub-folders = classes) or a CSV manifest")
    p.add_argument("--masks", type=Path, help="folder of label masks (0/1/2) named like the images")
    p.add_argument("--path-column", default="path", help="manifest column with the image path")
    p.add_argument("--class-column", default="class", help="manifest column with the class")
    p.add_argument("--image-dir", type=Path, help="folder relative manifest paths start from")
    p.add_argument(
        "--link", action="store_true", help="reference images where they are instead of copying"
    )
    p.add_argument(
        "--copy-slides",
        action="store_true",
        help="copy whole-slide images into the project (by default they are linked where they are)",
    )
    p.add_argument(
        "--slide-pixel-size",
        type=float,
        metavar="UM",
        help="micrometres per level-0 pixel of the slides, when their metadata lacks or is wrong",
    )
    p.set_defaults(handler=_cmd_import)

    p = sub.add_parser("seeds", help="pick the images to paint", description=_cmd_seeds.__doc__)
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("--per-class", type=int, default=DEFAULT_SEEDS_PER_CLASS, help="images/class")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same pick)")
    p.set_defaults(handler=_cmd_seeds)

    p = sub.add_parser(
        "status", help="counts per class and mask state", description=_cmd_status.__doc__
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_status)

    p = sub.add_parser(
        "export", help="export masks or predictions", description=_cmd_export.__doc__
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("what", choices=["masks", "predictions"], help="what to export")
    p.add_argument(
        "--out", type=Path, required=True, help="output folder (masks) or CSV file (predictions)"
    )
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser(
        "pixel-size",
        help="set micrometres per pixel (for measurements)",
        description=_cmd_pixel_size.__doc__,
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("um", type=float, nargs="?", help="micrometres per pixel, e.g. 0.25")
    p.add_argument("--images", nargs="+", metavar="NAME", help="only these images")
    p.add_argument(
        "--slide", metavar="NAME", help="set a slide's level-0 size (and its crops' sizes)"
    )
    p.add_argument("--clear", action="store_true", help="forget the pixel size")
    p.set_defaults(handler=_cmd_pixel_size)

    p = sub.add_parser("slides", help="list the registered slides", description=_cmd_slides.__doc__)
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=_cmd_slides)

    p = sub.add_parser("audit", help="show the audit log", description=_cmd_audit.__doc__)
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("--last", type=int, help="only the last N entries")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=_cmd_audit)

    p = sub.add_parser(
        "check", help="check the project's integrity (and repair)", description=_cmd_check.__doc__
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument(
        "--repair",
        action="store_true",
        help="restore, quarantine or clean what the check finds (audited; nothing a person made "
        "is deleted)",
    )
    p.add_argument(
        "--temp-age",
        type=float,
        default=STALE_TEMP_AGE_S,
        metavar="S",
        help=f"temp and unreferenced files younger than S seconds may belong to a running writer "
        f"and are left alone (default {STALE_TEMP_AGE_S:g}; 0 when nothing else has the project "
        "open)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_check)


def _cmd_init(args: argparse.Namespace) -> int:
    """Create a project folder with a class scheme (default Bethesda: NILM, ASC-US, LSIL, HSIL;
    NILM is 'not revisable', every other class 'revisable' for review)."""
    scheme = build_scheme(args.scheme, args.classes, args.not_revisable)
    project = create_project(
        args.project, actor=current_user(args.user), scheme=scheme, max_pixels=args.max_pixels
    )
    project.close()  # init only creates the folder and its catalog
    normal = ", ".join(sorted(scheme.not_revisable)) or "none"
    console.print(f"created project {esc(str(args.project))}")
    console.print(f"classes: {esc(', '.join(scheme.classes))} (not revisable: {esc(normal)})")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    """Import images from a folder tree whose sub-folder names are classes, or from a CSV
    manifest with a 'path' column and optional 'class' and 'split' columns. With --masks, label
    masks with the same file stem become 'manual' mask versions. Unusable files are listed with
    the reason and skipped; importing the same image twice does nothing."""
    token = CancelToken()
    with open_project(args.project) as project:
        job = import_images(
            project,
            args.source,
            actor=current_user(args.user),
            masks_dir=args.masks,
            path_column=args.path_column,
            class_column=args.class_column,
            image_dir=args.image_dir,
            copy=not args.link,
            copy_slides=args.copy_slides,
            slide_pixel_size_um=args.slide_pixel_size,
            cancel=token,
        )
        report = drive(job, token, verbose=args.verbose)
    console.print(report.summary, markup=False)  # each warning was shown as it happened
    if report.cancelled:
        return EXIT_CANCELLED
    if report.problems and not (
        report.added or report.already_present or report.slides_added or report.slides_present
    ):
        raise ProjectError(
            f"{args.source}: nothing could be imported ({len(report.problems)} problem(s) above)"
        )
    return 0


def _cmd_seeds(args: argparse.Namespace) -> int:
    """Pick a stratified, reproducible seed set of N images per class for painting by hand.
    Images already painted stay in the set."""
    with open_project(args.project) as project:
        report = pick_seeds(
            project, actor=current_user(args.user), per_class=args.per_class, seed=args.seed
        )
    for label, names in report.picked.items():
        console.print(f"{esc(f'{label:>12}')}: {len(names):3d} seed(s)")
    for warning in report.warnings:
        warn(warning)
    if report.unlabelled_skipped:
        console.print(f"{report.unlabelled_skipped} unlabelled image(s) are not eligible")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    """Images per class, the seed quota (painted / target) and masks per provenance."""
    with open_project(args.project) as project:
        status = project_status(project)
    if args.json:
        print(json.dumps(asdict(status), indent=2))
    else:
        print_status(status)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    """masks: the current mask of every image that has one as <image name>.png (0/1/2).
    predictions: one CSV row per image: image, pred_class, prob_<class> for each class,
    pred_binary, prob_revisable, the cell measurements (areas in px and um2, N:C ratio, nucleus
    shape and intensity), then true_class, uncertainty, mask_source and model_id."""
    # Imported here, not at the top: the cell measurements pull scipy (start-up time).
    from cytoreview.workflows.export import export_masks, export_predictions

    token = CancelToken()
    if args.what == "predictions":
        with open_project(args.project) as project:
            job = export_predictions(project, args.out, cancel=token)
            table = drive(job, token, verbose=args.verbose)
        if table.cancelled:
            console.print("cancelled: nothing written")
            return EXIT_CANCELLED
        console.print(
            f"{table.rows} row(s) written to {esc(str(table.out))} ({len(table.columns)} columns; "
            f"{table.without_prediction} without a prediction, {table.without_mask} without a "
            "mask)"
        )
        return 0
    with open_project(args.project) as project:
        report = drive(export_masks(project, args.out, cancel=token), token, verbose=args.verbose)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(report.provenance_counts.items()))
    console.print(
        f"{report.written} mask(s) written to {esc(str(report.out))} ({counts or 'none'})"
    )
    return EXIT_CANCELLED if report.cancelled else 0


def _cmd_slides(args: argparse.Namespace) -> int:
    """The whole-slide images registered in the project: size, levels, pixel size, whether the
    file is linked or copied (and still there), and how many crops were cut from each."""
    with open_project(args.project) as project:
        slides = slide_summaries(project)
    if args.json:
        print(json.dumps([asdict(s) for s in slides], indent=2))
        return 0
    if not slides:
        console.print("no slides registered; add one with `cytoreview import PROJECT SLIDE`")
    for s in slides:
        size = f"{s.pixel_size_um:.4g} um/px" if s.pixel_size_um else "pixel size unknown"
        where = ("linked: " if s.linked else "copied: ") + s.path
        gone = "" if s.available else "  [FILE MISSING]"
        console.print(
            f"{esc(s.name)}: {s.width} x {s.height} px, {s.levels} level(s), {size}, "
            f"{s.crops} crop(s); {esc(where)}{gone}"
        )
    return 0


def _cmd_pixel_size(args: argparse.Namespace) -> int:
    """Set the pixel size used to report cell measurements in micrometres: the project default,
    or that of some images, or (--slide) that of a slide's level 0 and of the crops cut from it.
    TIFFs that carry a microscopy resolution tag keep their own. Without a value (and without
    --clear) the current sizes are shown."""
    with open_project(args.project) as project:
        if args.slide:
            if args.um is None:
                raise ProjectError("give the slide's micrometres per pixel, e.g. 0.25")
            slide = set_slide_pixel_size(
                project, args.slide, args.um, actor=current_user(args.user)
            )
            console.print(f"pixel size of slide {esc(slide.name)}: {args.um:g} um/px at level 0")
            return 0
        ids = [project.image(n).id for n in args.images] if args.images else None
        if args.um is None and not args.clear:
            default = project.catalog.get_meta("pixel_size_um")
            own = [im for im in project.images() if im.pixel_size_um]
            console.print(f"project default: {f'{default:g} um/px' if default else 'not set'}; "
                          f"{len(own)} image(s) with their own size")  # fmt: skip
            return 0
        value = None if args.clear else args.um
        project.set_pixel_size(value, actor=current_user(args.user), image_ids=ids)
    where = f"{len(ids)} image(s)" if ids else "the project default"
    console.print(f"pixel size of {where}: {'cleared' if value is None else f'{value:g} um/px'}")
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    """The append-only audit log: who changed what, when."""
    with open_project(args.project) as project:
        entries = project.audit_entries(limit=args.last)
    for entry in entries:
        if args.json:
            print(json.dumps(asdict(entry), sort_keys=True))
        else:
            console.print(entry.line(), soft_wrap=True, markup=False)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    """Check a project: SQLite's integrity and foreign keys, every file the catalog references
    (images, mask versions, heatmaps, model checkpoints and ONNX exports) present with its
    catalogued hash or intact checksums, training runs whose process died, and temp or
    unreferenced files left by a crash. One line per problem; exit status 0 when clean, 1 when a
    problem remains. --repair restores files from intact copies where it can, moves what it
    cannot trust to PROJECT/quarantine/<time>/ (manifest.json lists each file), closes dead runs
    as interrupted and records every change in the audit log; a person's mask is quarantined and
    reported, never dropped."""
    token = CancelToken()
    job = check_project(
        args.project,
        actor=current_user(args.user),
        repair=args.repair,
        temp_age_s=args.temp_age,
        cancel=token,
    )
    report = drive(job, token, verbose=args.verbose)
    if args.json:
        data = asdict(report)
        data["ok"] = report.ok
        print(json.dumps(data, indent=2, default=str))
        return 0 if report.ok else 1
    checked = ", ".join(f"{n} {kind.replace('_', ' ')}(s)" for kind, n in report.checked.items())
    state = "catalog ok" if report.catalog_ok else "catalog DAMAGED"
    console.print(f"checked {report.root}: {state}; {checked or 'no files'}", markup=False)
    for finding in report.findings:
        console.print(finding.line(), markup=False, soft_wrap=True)
    for action in report.actions:
        console.print(f"repair: {action.line()}", markup=False, soft_wrap=True)
    if report.quarantine:
        console.print(
            f"quarantine: {args.project / report.quarantine} (manifest.json lists every file)",
            markup=False,
        )
    if report.repaired:
        for finding in report.problems:
            console.print(f"still: {finding.line()}", markup=False, soft_wrap=True)
    counts = report.counts()
    if report.ok:
        notes = f" ({counts['note']} note(s))" if counts["note"] else ""
        console.print(f"no problems{notes}")
        return 0
    hint = "" if report.repaired else f"; `cytoreview check {args.project} --repair` repairs them"
    console.print(
        f"{counts['damage']} damaged, {counts['leftover']} leftover(s){hint}", markup=False
    )
    return 1
