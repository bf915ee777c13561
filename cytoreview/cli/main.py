"""``cytoreview`` command: parser, dispatch and the one-line error policy."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cytoreview import __version__
from cytoreview.cli import (
    commands_cls,
    commands_demo,
    commands_labels,
    commands_project,
    commands_seg,
)
from cytoreview.cli.progress import err_console
from cytoreview.errors import CytoReviewError

#: Exit codes, documented in ``cytoreview --help``.
EXIT_OK, EXIT_ERROR, EXIT_CANCELLED = 0, 1, 130

_EPILOG = """\
A typical session:
  cytoreview init my-project                       # Bethesda classes by default
  cytoreview import my-project scans/ --masks painted/
  cytoreview seeds my-project --per-class 20       # the images to paint by hand
  cytoreview status my-project

Exit status: 0 done (skipped files are listed as warnings), 1 error (one line says why),
130 cancelled with Ctrl-C (work finished so far is kept).
The person acting is recorded in the audit log: --user, else $CYTOREVIEW_USER, else the login.
"""


def build_parser(
    extra_commands: Sequence[Callable[[Any], None]] = (),
) -> argparse.ArgumentParser:
    """The full argument parser (also used by the tests and the docs).

    Parameters
    ----------
    extra_commands
        Functions that add more sub-commands (the launcher adds ``gui`` this way, so the CLI
        never imports the GUI).
    """
    parser = argparse.ArgumentParser(
        prog="cytoreview",
        description="CytoReview: paint, segment, classify and review cervical cytology images.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cytoreview {__version__}")
    parser.add_argument("--user", help="name recorded in the audit log for this command")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every step")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands_project.register(sub)
    commands_labels.register(sub)
    commands_seg.register(sub)
    commands_cls.register(sub)
    commands_demo.register(sub)
    for register in extra_commands:
        register(sub)
    return parser


def main(
    argv: Sequence[str] | None = None, extra_commands: Sequence[Callable[[Any], None]] = ()
) -> int:
    """Run one command; returns the exit status (see :mod:`cytoreview.launcher`)."""
    parser = build_parser(extra_commands)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    try:
        return int(args.handler(args) or EXIT_OK)
    except CytoReviewError as exc:
        err_console.print(f"[red]cytoreview {args.command}: error:[/] {exc}", soft_wrap=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        err_console.print(f"cytoreview {args.command}: aborted")
        return EXIT_CANCELLED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
