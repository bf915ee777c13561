"""The ``cytoreview`` program: the command line, plus ``cytoreview gui`` for the window.

The command line and the GUI never import each other (import-linter checks it); this module sits
above both and hands the CLI one extra sub-command that starts the window. The GUI's heavy
imports (Qt, napari) happen only when that sub-command runs, so batch commands start fast and
work on a server without a display.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cytoreview.cli.main import main as cli_main


def _register_gui(sub: Any) -> None:
    p = sub.add_parser(
        "gui",
        help="open the napari workbench",
        description="Open the CytoReview window (napari): paint masks, train, auto-segment, "
        "review predictions with heatmaps, and teach. Needs a display.",
    )
    p.add_argument("project", type=Path, nargs="?", help="a project folder to open")
    p.set_defaults(handler=_run_gui)


def _run_gui(args: argparse.Namespace) -> int:
    from cytoreview.gui.app import launch  # Qt and napari load only here

    return int(launch(args.project, actor=args.user) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cytoreview`` console script; returns the exit status."""
    return cli_main(argv, extra_commands=(_register_gui,))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
