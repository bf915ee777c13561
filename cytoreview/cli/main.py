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
    commands_compare,
    commands_demo,
    commands_doctor,
    commands_geojson,
    commands_labels,
    commands_plugins,
    commands_project,
    commands_seg,
    commands_slides,
)
from cytoreview.cli.failures import describe, one_line_warnings, print_traceback, quiet_broken_pipe
from cytoreview.cli.progress import err_console

#: Exit codes, documented in ``cytoreview --help``.
EXIT_OK, EXIT_ERROR, EXIT_CANCELLED = 0, 1, 130
#: The reader of the output went away (``cytoreview status --json | head -1``): what a Unix
#: tool killed by SIGPIPE returns (128 + 13), without a message.
EXIT_BROKEN_PIPE = 141

_EPILOG = """\
A typical session:
  cytoreview init my-project                       # Bethesda classes by default
  cytoreview import my-project scans/ --masks painted/
  cytoreview seeds my-project --per-class 20       # the images to paint by hand
  cytoreview status my-project

Exit status: 0 done (skipped files are listed as warnings), 1 error (one line says why;
--debug adds the traceback), 130 cancelled with Ctrl-C (work finished so far is kept),
141 the output pipe was closed (e.g. `| head`).
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
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, show the traceback too (for a bug report)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands_project.register(sub)
    commands_geojson.register(sub)
    commands_labels.register(sub)
    commands_seg.register(sub)
    commands_slides.register(sub)
    commands_cls.register(sub)
    commands_demo.register(sub)
    commands_plugins.register(sub)
    commands_compare.register(sub)
    commands_compare.register_methods(sub)
    commands_doctor.register(sub)
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
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    if not args.debug:
        # tifffile logs what it skips in an odd TIFF ("ERROR: <TiffTag.fromfile> raised ...")
        # without naming the file; the readers decide whether the file is usable and say so
        # in one line that names it.
        logging.getLogger("tifffile").setLevel(logging.CRITICAL + 1)
        one_line_warnings()
    try:
        return int(args.handler(args) or EXIT_OK)
    except KeyboardInterrupt:
        err_console.print(f"cytoreview {args.command}: aborted")
        return EXIT_CANCELLED
    except BrokenPipeError:
        quiet_broken_pipe()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - the one place every failure becomes one line
        if args.debug:
            print_traceback(exc)
        line = describe(exc, getattr(args, "project", None))
        # markup=False: the message names files, and a name may hold "[...]" (rich markup).
        err_console.print(f"cytoreview {args.command}: error: ", style="red", end="")
        err_console.print(line, markup=False, soft_wrap=True)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
