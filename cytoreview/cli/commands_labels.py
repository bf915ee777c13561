"""Class-label commands: set-class (one image, or a CSV table of corrections).

Light imports only: no torch, so the command answers at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cytoreview.cli.progress import console, err_console
from cytoreview.errors import ConfigError
from cytoreview.settings import current_user
from cytoreview.workflows.class_labels import set_classes_from_table, set_image_class
from cytoreview.workflows.projects import open_project

EXIT_REFUSED = 1


def register(sub: Any) -> None:
    """Add ``set-class`` to the ``cytoreview`` parser."""
    p = sub.add_parser(
        "set-class",
        help="set or correct the class of images",
        description=_cmd_set_class.__doc__,
        usage="cytoreview set-class PROJECT IMAGE CLASS | PROJECT --csv FILE",
    )
    p.add_argument("project", type=Path, help="the project folder")
    p.add_argument("image", nargs="?", help="the image's name (or its file name)")
    p.add_argument("class_name", nargs="?", metavar="class", help="its class, e.g. HSIL")
    p.add_argument("--csv", type=Path, metavar="FILE", help="a table with the columns image,class")
    p.set_defaults(handler=_cmd_set_class)


def _cmd_set_class(args: argparse.Namespace) -> int:
    """Set or correct the expert class of one image (IMAGE CLASS), or of every image a CSV table
    lists (--csv FILE, columns image,class). Training and evaluation use the new class from
    then on. Every change is in the audit log (who, when, old and new class, from where).
    Rows of a table that cannot be used (unknown image, unknown class, an image listed with two
    classes) are named one per line and change nothing; the others are applied; the exit
    status is then 1."""
    single = args.image is not None or args.class_name is not None
    if args.csv is not None and single:
        raise ConfigError("give either IMAGE CLASS or --csv FILE, not both")
    if args.csv is None and (args.image is None or args.class_name is None):
        if args.image is not None and args.image.lower().endswith((".csv", ".tsv", ".txt")):
            # A table given where an image name goes: say how to pass it.
            raise ConfigError(
                f"a class table is read with --csv: `set-class PROJECT --csv {args.image}`"
            )
        raise ConfigError("give IMAGE CLASS (e.g. `set-class PROJECT cell_07 HSIL`) or --csv FILE")
    actor = current_user(args.user)
    with open_project(args.project) as project:
        if args.csv is None:
            change = set_image_class(project, args.image, args.class_name, actor=actor)
            console.print(change.line() if change.changed else f"{change.name}: already "
                          f"{change.new}, nothing changed", markup=False)  # fmt: skip
            return 0
        report = set_classes_from_table(project, args.csv, actor=actor)
    for change in report.changes:
        console.print(change.line(), markup=False)
    console.print(report.summary, markup=False)
    for problem in report.problems:
        err_console.print(f"refused: {problem}", markup=False)
    return EXIT_REFUSED if report.problems else 0
