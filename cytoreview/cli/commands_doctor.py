"""``cytoreview doctor``: check this machine and a project folder, a line per check."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cytoreview.cli.progress import console, esc

_STYLE = {"OK": "green", "WARN": "yellow", "FAIL": "red"}


def register(sub: Any) -> None:
    """Add ``doctor`` to the ``cytoreview`` parser."""
    p = sub.add_parser(
        "doctor",
        help="check the installation, GPU, display and a project folder",
        description=_cmd_doctor.__doc__,
    )
    p.add_argument(
        "project",
        type=Path,
        nargs="?",
        help="the project folder to check (default: the current folder)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    """Check that CytoReview can work here; each line is OK, WARN or FAIL, with the fix.

    Checks: Python and the key package versions (against the tested ones), torch and CUDA
    (GPU name and memory; a tiny kernel must run), ONNX Runtime (one build, its providers),
    Qt and OpenGL for the window (probed in a child process, so a missing display cannot hang
    or crash this), write access and free disk in the project folder, the catalog's write
    lock, the plugins that loaded and those that failed, and Dask distributed (and the
    scheduler in $CYTOREVIEW_SCHEDULER, if set).

    Exit status: 0 when no check failed (warnings alone give 0), 1 when any check failed."""
    # Imported here: the checks load torch, and the parser must not.
    from cytoreview.workflows.doctor import (
        DoctorReport,
        doctor_steps,
        format_check,
        run_step,
    )

    checks = []
    for step in doctor_steps(args.project):
        if args.json:
            checks += run_step(step)
            continue
        with console.status(f"checking {step.title}...", spinner="dots"):
            lines = run_step(step)
        for check in lines:
            status, _, rest = format_check(check).partition(" ")
            console.print(f"[{_STYLE[check.status]}]{status}[/] {esc(rest)}")
        checks += lines
    report = DoctorReport(tuple(checks))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        console.print(report.summary)
    return report.exit_code
