"""Driving a workflow generator in the terminal: a progress bar, warnings, Ctrl-C to cancel."""

from __future__ import annotations

import shutil
import signal
import sys
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as Bar,
)

from cytoreview.types import CancelToken, Progress

T = TypeVar("T")

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def command_name() -> str:
    """How the user can call ``cytoreview`` again: the bare name if it is on PATH."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name != "cytoreview":
        return "cytoreview"  # python -m cytoreview, or a test
    on_path = shutil.which("cytoreview")
    if on_path and Path(on_path).samefile(argv0):
        return "cytoreview"
    return argv0


@contextmanager
def cancel_on_interrupt(token: CancelToken) -> Generator[None, None, None]:
    """First Ctrl-C asks the job to stop at its next check; a second one aborts at once."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if token.cancelled:
            raise KeyboardInterrupt
        token.cancel()
        err_console.print("[yellow]stopping after the current step (Ctrl-C again to abort)[/]")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def drive(
    job: Generator[Progress, None, T],
    token: CancelToken,
    *,
    verbose: bool = False,
) -> T:
    """Run a workflow generator to its end with a progress bar and return its result.

    Warnings are printed above the bar as they come; info messages only with ``verbose``.
    """
    columns = (
        TextColumn("[bold]{task.description:<8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )
    with cancel_on_interrupt(token), Bar(*columns, console=err_console, transient=True) as bar:
        tasks: dict[str, int] = {}
        try:
            while True:
                event = next(job)
                if event.stage not in tasks:
                    tasks[event.stage] = bar.add_task(event.stage, total=event.total or None)
                bar.update(tasks[event.stage], completed=event.step, total=event.total or None)
                if event.level == "warning":
                    bar.console.print(f"[yellow]warning:[/] {event.message}", soft_wrap=True)
                elif verbose and event.message:
                    bar.console.print(event.message, soft_wrap=True)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
