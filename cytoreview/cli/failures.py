"""One line for every failure: what went wrong, with which file, in words.

The README promises that any error ends a command with one line naming the file and the reason
(and exit status 1). Errors CytoReview raises itself already read that way; this module words
the others a command can meet: the operating system refusing a write (permission, a full disk,
a missing folder), a damaged catalog, a file that is not what its name says, or a plain bug.
``--debug`` shows the traceback as well.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
import warnings
from pathlib import Path
from types import TracebackType

from cytoreview.errors import CytoReviewError
from cytoreview.storage.atomic import TEMP_SUFFIX
from cytoreview.storage.project import CATALOG_FILE

#: Plain words for the errors a write or a read meets most often (``strerror`` is terse).
_OS_REASONS = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.EEXIST: "already exists",
    errno.ENAMETOOLONG: "name too long",
    errno.EIO: "input/output error (a failing disk or a lost network share?)",
}


def _shown_path(filename: object) -> str:
    """The file a person asked for: a crash-safe write's temp name maps back to its target.

    :func:`cytoreview.storage.atomic.atomic_write_bytes` writes ``.<name>.<random><suffix>``
    beside ``<name>``; an error on that temp file is an error writing ``<name>``.
    """
    if not isinstance(filename, str | bytes | os.PathLike):
        return str(filename)  # e.g. a file descriptor
    path = Path(os.fsdecode(filename))
    name = path.name
    if name.startswith(".") and name.endswith(TEMP_SUFFIX):
        target = name[1 : -len(TEMP_SUFFIX)].rsplit(".", 1)[0]
        if target:
            return str(path.with_name(target))
    return str(path)


def describe_os_error(exc: OSError) -> str:
    """``<file>: <reason>`` for an OSError (the file is left out when the error has none)."""
    if exc.errno is None and exc.args:
        return str(exc.args[0])  # our own, e.g. FileExistsError("<path>: refusing to overwrite")
    reason = _OS_REASONS.get(exc.errno) or exc.strerror or type(exc).__name__
    if exc.filename is None:
        return reason
    if exc.errno == errno.EEXIST and Path(_shown_path(exc.filename)).is_file():
        reason = "is a file, not a folder"  # a folder was to be made where a file is
    where = _shown_path(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {_shown_path(exc.filename2)}"
    return f"{where}: {reason}"


def describe(exc: BaseException, project: Path | None = None) -> str:
    """One line (no newline) that says what failed and why.

    Parameters
    ----------
    exc
        The exception that ended the command.
    project
        The project folder the command worked on, if any: a damaged catalog is named by it.
    """
    if isinstance(exc, CytoReviewError):
        text = str(exc)
    elif isinstance(exc, OSError):
        text = describe_os_error(exc)
    elif isinstance(exc, sqlite3.DatabaseError):
        where = f"{project / CATALOG_FILE}: " if project is not None else ""
        text = (
            f"{where}the project catalog cannot be read or written ({exc}); it may be damaged: "
            f"`cytoreview check` tells, a backup restores it"
        )
    elif isinstance(exc, MemoryError):
        text = "not enough memory for this step (try fewer or smaller images at a time)"
    elif isinstance(exc, UnicodeError):
        text = f"text that is not valid UTF-8 ({exc})"
    else:
        # A bug, or a library failing in a way nobody foresaw: say what, and how to see more.
        detail = str(exc).strip() or "(no message)"
        text = f"unexpected {type(exc).__name__}: {detail} (run again with --debug for details)"
    return " ".join(text.split())  # one line, however the message was written


def one_line_warnings() -> None:
    """Show Python warnings (from numpy, torch, Pillow...) as one ``warning:`` line each.

    The default format adds the file, the line number and the source line of the library
    that warned: three lines a person cannot act on.
    """

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: object = None,
        line: str | None = None,
    ) -> None:
        text = " ".join(str(message).split())
        sys.stderr.write(f"warning: {text} ({category.__name__})\n")

    warnings.showwarning = show


def quiet_broken_pipe() -> None:
    """After the reader of our output went away (``| head``), write nothing more, quietly.

    Python flushes stdout again at exit and would print a second error; pointing stdout at
    the null device makes that flush succeed (the recipe of the ``signal`` module's docs).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's capture): nothing to do
        pass
    finally:
        os.close(devnull)


def print_traceback(exc: BaseException) -> None:
    """The full traceback on stderr (``--debug``)."""
    import traceback

    tb: TracebackType | None = exc.__traceback__
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
