"""``cytoreview doctor``: is this machine ready, and if not, what to do about it.

Each check is a pair: a probe that gathers facts (:mod:`cytoreview.workflows.doctor_probes`,
:mod:`cytoreview.storage.health`) and a pure judge that turns them into lines
(:mod:`cytoreview.workflows.doctor_judges`), each ``OK``, ``WARN`` (works, but slower or with
less) or ``FAIL`` (something a user will run into), with the fix in words. The command line
prints the lines as each check finishes; the workbench's help dock runs :func:`run_doctor` in
the background and shows the same report. Exit status: 1 if any line is FAIL, else 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cytoreview.plugin_api.discovery import PluginCatalog, discover
from cytoreview.storage.health import catalog_facts, folder_facts
from cytoreview.types import CancelToken, Progress
from cytoreview.workflows import doctor_probes as probes
from cytoreview.workflows.doctor_judges import (
    FAIL,
    OK,
    WARN,
    Check,
    judge_catalog,
    judge_dask,
    judge_folder,
    judge_ort,
    judge_packages,
    judge_plugins,
    judge_python,
    judge_qt,
    judge_torch,
)

__all__ = ["FAIL", "OK", "WARN", "Check", "DoctorReport", "doctor_steps", "run_doctor", "run_step"]

_RANK = {OK: 0, WARN: 1, FAIL: 2}


@dataclass(frozen=True)
class DoctorReport:
    """Every check's lines, in order."""

    checks: tuple[Check, ...]

    @property
    def status(self) -> str:
        """The worst verdict (OK when there is no line at all)."""
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default=OK)

    @property
    def exit_code(self) -> int:
        """1 when any check failed, else 0 (warnings alone do not fail)."""
        return 1 if self.status == FAIL else 0

    @property
    def summary(self) -> str:
        """``N failure(s), M warning(s)``."""
        fails = sum(c.status == FAIL for c in self.checks)
        warns = sum(c.status == WARN for c in self.checks)
        return f"{fails} failure(s), {warns} warning(s)"

    def to_json(self) -> dict[str, Any]:
        """The report as plain data (``cytoreview doctor --json``)."""
        return {
            "status": self.status,
            "exit_code": self.exit_code,
            "checks": [asdict(c) for c in self.checks],
        }


def format_check(check: Check) -> str:
    """``STATUS  name  detail``, then the fix on an indented line of its own."""
    line = f"{check.status:<5} {check.name:<12} {check.detail}"
    return f"{line}\n      fix: {check.fix}" if check.fix else line


def format_report(report: DoctorReport) -> str:
    """The whole report as text (what the help dock shows)."""
    return "\n".join([*(format_check(c) for c in report.checks), report.summary])


def _plugins() -> PluginCatalog:
    with warnings.catch_warnings():  # each broken plugin is a FAIL line: no warning as well
        warnings.simplefilter("ignore")
        return discover()


# -- running them -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One check to run: its title (for progress) and what produces its lines."""

    title: str
    run: Callable[[], list[Check]]


def doctor_steps(folder: str | Path | None = None) -> list[Step]:
    """The checks in the order they are reported, for ``folder`` (default: the current one).

    The probes are looked up when a step runs, so tests may replace them on the module.
    """
    explicit = folder is not None
    where = Path(folder) if folder is not None else Path.cwd()
    return [
        Step("Python", lambda: judge_python(probes.python_facts())),
        Step("packages", lambda: judge_packages(probes.package_facts())),
        Step("torch and CUDA", lambda: judge_torch(probes.torch_facts())),
        Step("ONNX Runtime", lambda: judge_ort(probes.ort_facts())),
        Step("Qt and OpenGL", lambda: judge_qt(probes.qt_facts())),
        Step("project folder", lambda: judge_folder(folder_facts(where))),
        Step("catalog lock", lambda: judge_catalog(catalog_facts(where), explicit=explicit)),
        Step("plugins", lambda: judge_plugins(_plugins())),
        Step("Dask", lambda: judge_dask(probes.dask_facts())),
    ]


def run_step(step: Step) -> list[Check]:
    """A step's lines; a step that itself crashes is a FAIL line, never the end of doctor."""
    try:
        return step.run()
    except Exception as exc:  # noqa: BLE001 - doctor reports everything and goes on
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        return [
            Check(
                step.title,
                FAIL,
                f"the check itself failed ({why})",
                "run `cytoreview --debug doctor` and report the output",
            )
        ]


def run_doctor(
    folder: str | Path | None = None, cancel: CancelToken | None = None
) -> Generator[Progress, None, DoctorReport]:
    """Run every check (the workbench's background job); yields one event per check begun.

    Returns
    -------
    DoctorReport
        The lines of the checks that ran (all of them unless ``cancel`` stopped it).
    """
    steps = doctor_steps(folder)
    checks: list[Check] = []
    for i, step in enumerate(steps):
        if cancel is not None and cancel.cancelled:
            break
        yield Progress("doctor", i, len(steps), f"checking {step.title}...")
        checks += run_step(step)
    yield Progress("doctor", len(steps), len(steps), "done")
    return DoctorReport(tuple(checks))
