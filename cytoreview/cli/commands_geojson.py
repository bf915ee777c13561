"""QuPath exchange commands: export-geojson and import-geojson.

The workflows (cell measurements: scipy, scikit-image) are imported by the command that runs
them, so that building the parser stays light.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cytoreview.cli.progress import console, drive, err_console, esc, warn
from cytoreview.errors import ConfigError, CytoReviewError
from cytoreview.settings import current_user
from cytoreview.types import CancelToken
from cytoreview.workflows.projects import open_project

EXIT_REFUSED, EXIT_CANCELLED = 1, 130


def register(sub: Any) -> None:
    """Add ``export-geojson`` and ``import-geojson`` to the ``cytoreview`` parser."""
    p = sub.add_parser(
        "export-geojson",
        help="cells of the current masks as QuPath GeoJSON",
        description=_cmd_export_geojson.__doc__,
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("--out", type=Path, help="output folder (default: PROJECT/exports/geojson)")
    p.add_argument("--images", nargs="+", metavar="NAME", help="only these images")
    p.set_defaults(handler=_cmd_export_geojson)

    p = sub.add_parser(
        "import-geojson",
        help="QuPath GeoJSON objects as new mask versions",
        description=_cmd_import_geojson.__doc__,
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("files", type=Path, nargs="+", metavar="FILE", help="GeoJSON file(s)")
    p.add_argument(
        "--image", metavar="NAME", help="the image of FILE (default: FILE's name without suffix)"
    )
    p.set_defaults(handler=_cmd_import_geojson)


def _cmd_export_geojson(args: argparse.Namespace) -> int:
    """Write <image>.geojson for every image with a mask (or those given with --images): one
    QuPath cell object per cell (8-connected cytoplasm + nucleus region), with its outline, its
    nucleus, the image's class (the expert label, else the newest prediction; the features'
    metadata say which) and its measurements (areas in px and um^2 when the pixel size is
    known, N:C ratio, nucleus shape and grey level). In QuPath: File > Import objects from file."""
    from cytoreview.workflows.geojson import export_geojson

    token = CancelToken()
    with open_project(args.project) as project:
        out = args.out if args.out is not None else project.root / "exports" / "geojson"
        job = export_geojson(project, out, names=args.images, cancel=token)
        report = drive(job, token, verbose=args.verbose)
    console.print(
        f"{len(report.files)} file(s), {report.cells} cell(s) written to {esc(str(report.out))}"
    )
    return EXIT_CANCELLED if report.cancelled else 0


def _cmd_import_geojson(args: argparse.Namespace) -> int:
    """Draw GeoJSON objects (QuPath cells with their nuclei, or annotations classified Nucleus,
    Cytoplasm or Cell) into a label mask and save it as a new 'manual' mask version of the image
    named like the file (cell_07.geojson -> cell_07), or of --image. The mask it follows stays
    in the history. Objects of other classes, points and lines are named and skipped. A file
    that cannot be used is named in one line and the others are imported; the exit status is
    then 1."""
    from cytoreview.workflows.geojson import import_geojson

    if args.image is not None and len(args.files) > 1:
        raise ConfigError("--image names the image of one FILE; give one file with it")
    actor = current_user(args.user)
    refused = 0
    with open_project(args.project) as project:
        for path in args.files:
            try:
                result = import_geojson(project, path, args.image, actor=actor)
            except CytoReviewError as exc:
                refused += 1
                err_console.print(f"refused: {exc}", markup=False, soft_wrap=True)
                continue
            for line in result.skipped:
                warn(f"{path.name}: {line}")
            console.print(result.line(), markup=False)
    return EXIT_REFUSED if refused else 0
