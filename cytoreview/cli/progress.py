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
from rich.markup import escape
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

# emoji=False: a name like "cell:warning:1.png" must print as written, not with a symbol.
console = Console(highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

#: Every string a person supplied (a path, an image or class name, a message that quotes one)
#: goes through this before rich prints it: "[/]" or "[bold]" in a file name is text, not
#: markup (unescaped, rich raised an error and the command, or a whole batch, stopped).
esc = escape


def warn(message: str, label: str = "warning", out: Console | None = None) -> None:
    """Print ``label: message`` with a yellow label; ``message`` is shown exactly as written."""
    (out or console).print(f"[yellow]{label}:[/] {escape(str(message))}", soft_wrap=True)


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
                    warn(event.message, out=bar.console)
                elif verbose and event.message:
                    bar.console.print(event.message, soft_wrap=True, markup=False)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
