"""Whole-slide commands: segment-slide (and the cell finder, find-cells).

Registering a slide is ``cytoreview import PROJECT SLIDE``; listing them ``cytoreview slides``.
The workflows (torch, ONNX Runtime) are imported when a command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cytoreview.choices import FINDER_METHODS
from cytoreview.cli.compute_flags import add_compute_flags, compute_spec
from cytoreview.cli.progress import console, drive, esc
from cytoreview.defaults import CELL_FINDER, SLIDE
from cytoreview.settings import current_user
from cytoreview.types import CancelToken
from cytoreview.workflows.projects import open_project

EXIT_CANCELLED = 130


def register(sub: Any) -> None:
    """Add the slide commands to the ``cytoreview`` parser."""
    p = sub.add_parser(
        "segment-slide",
        help="segment a whole slide tile by tile into a label pyramid and a cell table",
        description=_cmd_segment_slide.__doc__,
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("slide", help="the slide's name (see `cytoreview slides`)")
    p.add_argument("--model", help="segmenter id (default: the current one)")
    p.add_argument("--level", type=int, help="slide level to segment at (default: see below)")
    p.add_argument(
        "--chunk", type=int, default=SLIDE.chunk, help=f"core side in px (default {SLIDE.chunk})"
    )
    p.add_argument(
        "--halo",
        type=int,
        help=f"context around each core in px (default: {SLIDE.halo_um:g} um, or "
        f"{SLIDE.halo_px} px without a pixel size)",
    )
    p.add_argument(
        "--all-tiles", action="store_true", help="segment empty glass too (no tissue mask)"
    )
    p.add_argument(
        "--region",
        type=int,
        nargs=4,
        metavar=("Y", "X", "H", "W"),
        help="segment only this box of level-0 pixels (default: the whole tissue)",
    )
    p.add_argument(
        "--restart", action="store_true", help="start afresh instead of resuming a stopped run"
    )
    add_compute_flags(p)
    p.set_defaults(handler=_cmd_segment_slide)

    p = sub.add_parser(
        "find-cells",
        help="find the cells of a slide and cut each into the project as an image",
        description=_cmd_find_cells.__doc__,
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("slide", help="the slide's name (see `cytoreview slides`)")
    p.add_argument(
        "--method",
        choices=FINDER_METHODS,
        default="auto",
        help="how nuclei are found: auto (the segmenter if trained on fields, else otsu), "
        "model or otsu (default auto)",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--crop-um",
        type=float,
        help=f"crop side in micrometres (default {CELL_FINDER.crop_um:g}; needs the pixel size)",
    )
    size.add_argument(
        "--crop-px",
        type=int,
        help=f"crop side in pixels (default without a pixel size: {CELL_FINDER.crop_px})",
    )
    p.add_argument("--max-cells", type=int, help="cut at most N cells (the most confident)")
    p.add_argument(
        "--recut",
        action="store_true",
        help="cut the cells found earlier again at another size (no new search)",
    )
    add_compute_flags(p)
    p.set_defaults(handler=_cmd_find_cells)

    p = sub.add_parser(
        "export-slide",
        help="export a slide's cells as QuPath GeoJSON (and its labels as OME-TIFF)",
        description=_cmd_export_slide.__doc__,
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("slide", help="the slide's name (see `cytoreview slides`)")
    p.add_argument("--out", type=Path, help="output folder (default: PROJECT/exports/slides)")
    p.add_argument(
        "--labels-tiff", action="store_true", help="also write the label pyramid as OME-TIFF"
    )
    p.set_defaults(handler=_cmd_export_slide)


def _cmd_segment_slide(args: argparse.Namespace) -> int:
    """Segment a registered slide at native resolution: a tissue mask at low resolution
    first (empty glass is skipped), then cores of --chunk px read with a halo, each segmented
    through the field path and written to slides/<name>/segmentation/labels.ome.zarr (an
    OME-Zarr label pyramid: 1 cytoplasm, 2 nucleus), with cells.csv (centroid in level-0 px
    and um, areas in px and um2, N:C). The default level is the one most crops of this slide
    were cut at (the scale the model learnt), else level 0. Stopped or killed, the same command
    resumes where it stopped and gives the same result."""
    from cytoreview.workflows.slide_segmentation import segment_slide

    token = CancelToken()
    with open_project(args.project) as project:
        job = segment_slide(
            project, args.slide, actor=current_user(args.user), model_id=args.model,
            level=args.level, chunk=args.chunk, halo=args.halo, skip_glass=not args.all_tiles,
            region=tuple(args.region) if args.region else None,
            resume=not args.restart, compute=compute_spec(args), cancel=token,
        )  # fmt: skip
        report = drive(job, token, verbose=args.verbose)
    console.print(esc(report.summary))
    if not report.cancelled:
        console.print(f"cell table: {esc(report.cells_path)}")
    return EXIT_CANCELLED if report.cancelled else 0


def _cmd_find_cells(args: argparse.Namespace) -> int:
    """Find candidate cells on a registered slide and cut a square crop around each into the
    project as an ordinary image that remembers the slide, the level and its corner (so it can
    be painted, auto-masked, classified and reviewed like any image). Only tiles with tissue are
    read; nuclei are found by the project's segmenter when it was trained on fields, else by a
    model-free Otsu detector; a cell near a tile seam is found once and overlapping crops are
    merged. The candidates are kept: --recut cuts them again at another size."""
    from cytoreview.workflows.cell_finder import find_cells, recut_cells

    token = CancelToken()
    with open_project(args.project) as project:
        common = {
            "actor": current_user(args.user), "crop_um": args.crop_um, "crop_px": args.crop_px,
            "max_cells": args.max_cells, "cancel": token,
        }  # fmt: skip
        if args.recut:
            job = recut_cells(project, args.slide, **common)
        else:
            job = find_cells(
                project, args.slide, method=args.method, compute=compute_spec(args), **common
            )
        report = drive(job, token, verbose=args.verbose)
    console.print(esc(report.summary))
    return EXIT_CANCELLED if report.cancelled else 0


def _cmd_export_slide(args: argparse.Namespace) -> int:
    """Write <slide>.geojson for QuPath (File > Import objects): every cell of the whole-slide
    segmentation with its nucleus and measurements, and every crop cut from the slide that has
    a mask, with its class (expert label, else the latest prediction); coordinates are level-0
    pixels of the slide. --labels-tiff also writes <slide>.labels.ome.tif (0/1/2 pyramid). The
    label pyramid itself is OME-Zarr: slides/<name>/segmentation/labels.ome.zarr."""
    from cytoreview.workflows.slide_export import export_slide

    token = CancelToken()
    with open_project(args.project) as project:
        job = export_slide(project, args.slide, args.out, tiff=args.labels_tiff, cancel=token)
        report = drive(job, token, verbose=args.verbose)
    console.print(esc(report.summary))
    return EXIT_CANCELLED if report.cancelled else 0
