"""Typed settings and the few process-wide defaults.

Project-level choices (class scheme, pixel limit) live in the project catalog; this module holds
only defaults and how the acting user is named in the audit log.
"""

from __future__ import annotations

import getpass
import os

#: Environment variable that names the person acting, for the audit log.
USER_ENV = "CYTOREVIEW_USER"
#: Environment variable with the Dask scheduler batch jobs run on (``tcp://host:8786``), or
#: ``local`` / ``none`` (see :mod:`cytoreview.workflows.executors`); a ``--scheduler`` flag wins.
SCHEDULER_ENV = "CYTOREVIEW_SCHEDULER"
#: Seconds a writer waits for another process's write lock before giving up with a clear message.
DEFAULT_BUSY_TIMEOUT_S: float = 10.0
#: Images per class picked for manual painting when no number is given.
DEFAULT_SEEDS_PER_CLASS: int = 20


def current_user(explicit: str | None = None) -> str:
    """Name of the person acting, as written into the audit log.

    Parameters
    ----------
    explicit
        A name given on the command line or in the GUI; wins over everything else.

    Returns
    -------
    str
        ``explicit``, else ``$CYTOREVIEW_USER``, else the login name, else ``"unknown"``.
    """
    if explicit and explicit.strip():
        return explicit.strip()
    env = os.environ.get(USER_ENV, "").strip()
    if env:
        return env
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - getuser raises assorted errors in containers
        return "unknown"
