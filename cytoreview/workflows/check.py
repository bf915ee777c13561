"""``cytoreview check``: is a project intact, and, with ``repair``, make it so without losing work.

The scan is :class:`~cytoreview.storage.integrity.ProjectScanner`'s; this module drives it with
progress events and holds the repair rules, one per kind of finding:

- a catalog that fails SQLite's checks is never repaired here, and no file is moved on its
  word (an untrustworthy catalog cannot say which files are orphans): restore it from a backup;
- a referenced file that is missing or has other bytes is restored from an intact copy with the
  catalogued hash (a temp file beside it, an image's import source) when there is one; else the
  damaged file goes to quarantine and the audit log records it. A person's mask version keeps
  its row: it is quarantined and reported, never dropped;
- derived data is dropped or detached with an audit entry (a heatmap row, a run's reference to
  a damaged checkpoint; the current model falls back to the newest intact one);
- crash leftovers: a run whose process died is closed as ``interrupted`` (its best checkpoint
  kept); temp and unreferenced files under ``images/`` and ``masks/`` go to quarantine (they may
  hold a person's work), machine-made ones elsewhere are deleted; young files that may belong
  to a running writer are left alone.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

from cytoreview.errors import ProjectNotFoundError
from cytoreview.storage.atomic import STALE_TEMP_AGE_S
from cytoreview.storage.catalog import Catalog
from cytoreview.storage.integrity import (
    DAMAGE,
    LEFTOVER,
    NOTE,
    Finding,
    ProjectScanner,
)
from cytoreview.storage.project import CATALOG_FILE
from cytoreview.storage.repair import (
    Quarantine,
    audit_restore,
    detach_checkpoint,
    drop_heatmap_row,
    record_quarantine,
    record_repair,
    restore_candidates,
    restore_from,
)
from cytoreview.storage.run_guard import close_interrupted_run
from cytoreview.types import CancelToken, Progress

#: Folders whose stray files may be a person's work: quarantined, never deleted.
HUMAN_FOLDERS = ("images", "masks")
_CHECKPOINT = "model.pt"
_LEFTOVER_KINDS = ("temp-file", "orphan-file", "orphan-model-folder", "stale-run-lock")


@dataclass(frozen=True)
class RepairAction:
    """What a repair did about one finding."""

    finding: Finding
    #: restored, quarantined, recorded (gone, no copy), deleted, closed, detached, dropped, or
    #: left (nothing could be done).
    action: str
    detail: str

    def line(self) -> str:
        """One line: what was done to which file."""
        return f"{self.action}: {self.finding.path or CATALOG_FILE}: {self.detail}"


@dataclass
class CheckReport:
    """What ``check`` found and, with repair, what it did and what is left."""

    root: str
    catalog_ok: bool
    #: Files verified, by kind (images, mask versions, heatmaps, checkpoints...).
    checked: dict[str, int]
    #: Findings of the first scan.
    findings: list[Finding]
    repaired: bool = False
    actions: list[RepairAction] = field(default_factory=list)
    #: Findings after the repair (the first scan's without one).
    remaining: list[Finding] = field(default_factory=list)
    #: The quarantine folder of this repair, relative to the project, if it was used.
    quarantine: str | None = None

    @property
    def problems(self) -> list[Finding]:
        """Remaining damage and leftovers (notes are not problems)."""
        return [f for f in self.remaining if f.severity != NOTE]

    @property
    def ok(self) -> bool:
        """True when nothing but notes remains."""
        return not self.problems

    def counts(self, findings: list[Finding] | None = None) -> dict[str, int]:
        """Findings per severity."""
        found = self.remaining if findings is None else findings
        return {s: sum(f.severity == s for f in found) for s in (DAMAGE, LEFTOVER, NOTE)}


def _scan(
    root: Path, temp_age_s: float, cancel: CancelToken | None
) -> Generator[Progress, None, tuple[bool, list[Finding], dict[str, int]]]:
    scanner = ProjectScanner(root, temp_age_s=temp_age_s)
    yield Progress("check", 0, 0, "checking the catalog (SQLite integrity, foreign keys)")
    findings, facts = scanner.check_catalog()
    checked: dict[str, int] = {}
    if not scanner.catalog_ok:
        return False, findings, checked
    total = len(facts.refs)
    for i, ref in enumerate(facts.refs, 1):
        if cancel is not None and cancel.cancelled:
            break
        checked[ref.entity] = checked.get(ref.entity, 0) + (ref.check != "onnx")
        found = scanner.verify(ref, facts)
        if found is not None:
            findings.append(found)
        yield Progress("check", i, total, f"{ref.path}: {'ok' if found is None else found.kind}")
    findings += scanner.runs(facts)
    findings += scanner.unreferenced(facts)
    return True, findings, checked


def check_project(
    root: str | Path,
    *,
    actor: str,
    repair: bool = False,
    temp_age_s: float = STALE_TEMP_AGE_S,
    cancel: CancelToken | None = None,
) -> Generator[Progress, None, CheckReport]:
    """Check a project (see the module's docstring); with ``repair``, repair and check again.

    Parameters
    ----------
    root
        The project folder.
    actor
        Who is acting (the audit log names them for every repair).
    repair
        Repair what can be repaired, quarantine what cannot be trusted.
    temp_age_s
        Temp and unreferenced files younger than this are left alone (a writer may be running);
        0 right after a crash, when nothing else has the project open.
    cancel
        Stops the scan between files (the report then covers what was checked).

    Raises
    ------
    ProjectNotFoundError
        If ``root`` has no catalog at all (not a project).
    """
    root = Path(root)
    if not (root / CATALOG_FILE).exists():
        raise ProjectNotFoundError(
            f"{root}: not a CytoReview project (no {CATALOG_FILE}); nothing to check"
        )
    catalog_ok, findings, checked = yield from _scan(root, temp_age_s, cancel)
    report = CheckReport(str(root), catalog_ok, checked, findings, remaining=list(findings))
    todo = _repair_order(findings)
    if not repair or not todo or (cancel is not None and cancel.cancelled):
        return report
    report.repaired = True
    if not catalog_ok:
        report.actions = [
            RepairAction(
                f,
                "left",
                "the catalog cannot be trusted, so no file was moved; "
                "restore cytoreview.sqlite from a backup",
            )
            for f in todo
        ]
        return report
    quarantine = Quarantine(root, actor)
    catalog = Catalog(root / CATALOG_FILE)
    try:
        yield Progress("repair", 0, len(todo), "repairing")
        for i, finding in enumerate(todo, 1):
            action = _repair_one(root, catalog, quarantine, finding, actor)
            if action is not None:
                report.actions.append(action)
            yield Progress("repair", i, len(todo), action.line() if action else "")
        if report.actions:
            done = [a for a in report.actions if a.action != "left"]
            record_repair(
                catalog,
                actor,
                actions=len(done),
                left=len(report.actions) - len(done),
                quarantine=quarantine.folder.relative_to(root).as_posix()
                if quarantine.used
                else None,
            )
    finally:
        catalog.close()
    if quarantine.used:
        report.quarantine = quarantine.folder.relative_to(root).as_posix()
    _, report.remaining, _ = yield from _scan(root, temp_age_s, cancel)
    return report


def _repair_order(findings: list[Finding]) -> list[Finding]:
    """Problems in the order they are repaired.

    Dead runs first (closing one cleans its folder), then referenced files (temp copies beside
    them may restore them), then the other leftovers.
    """
    rank = {"interrupted-run": 0}
    return sorted(
        (f for f in findings if f.severity != NOTE),
        key=lambda f: rank.get(f.kind, 1 if f.severity == DAMAGE else 2),
    )


def _repair_one(
    root: Path, catalog: Catalog, quarantine: Quarantine, finding: Finding, actor: str
) -> RepairAction | None:
    kind, path = finding.kind, finding.path
    if kind == "interrupted-run":
        assert finding.entity_id is not None
        closed = close_interrupted_run(
            root, catalog, finding.entity_id, actor=actor, reason="found by check --repair"
        )
        if closed is None:
            return None  # closed meanwhile by another process
        kept = (
            f"best checkpoint kept ({closed.kept_checkpoint})"
            if closed.kept_checkpoint
            else ("it had saved no checkpoint")
        )
        return RepairAction(
            finding,
            "closed",
            f"marked interrupted; {len(closed.removed)} partial file(s) removed; {kept}",
        )
    if finding.entity == "slide":  # a scanner file: never rewritten or moved by a repair
        return RepairAction(
            finding, "left", "put the slide file back, or register it again with cytoreview import"
        )
    if path is not None and kind in _LEFTOVER_KINDS:
        return _clean_leftover(root, quarantine, finding)
    if path is not None and kind in ("missing-file", "hash-mismatch", "damaged-file"):
        return _repair_reference(root, catalog, quarantine, finding, actor)
    advice = {
        "linked-source": "outside the project: put the source file back or import it again",
        "unreadable-file": "check the file's permissions and the disk",
    }.get(kind, "restore cytoreview.sqlite from a backup")
    return RepairAction(finding, "left", advice)


def _exists(root: Path, rel: str) -> bool:
    path = root / rel
    return path.exists() or path.is_symlink()


def _clean_leftover(root: Path, quarantine: Quarantine, finding: Finding) -> RepairAction | None:
    path = finding.path
    assert path is not None
    if not _exists(root, path):
        return None  # removed with an interrupted run's folder, or used to restore a file
    top = path.split("/", 1)[0]
    folder = root / path
    keep = (
        top in HUMAN_FOLDERS
        or finding.kind == "orphan-file"
        or (finding.kind == "orphan-model-folder" and (folder / _CHECKPOINT).exists())
    )
    if keep:
        moved = quarantine.move(path, finding.message, finding)
        return RepairAction(finding, "quarantined", f"moved to {moved}")
    quarantine.delete(path, finding.message, finding)
    return RepairAction(finding, "deleted", "machine-made leftover, rebuilt when needed")


def _repair_reference(
    root: Path, catalog: Catalog, quarantine: Quarantine, finding: Finding, actor: str
) -> RepairAction:
    path = finding.path
    assert path is not None
    moved: str | None = None
    if _exists(root, path):
        moved = quarantine.move(path, finding.message, finding)
    if finding.sha256 is not None:
        source = restore_from(root, finding, restore_candidates(root, catalog, finding))
        if source is not None:
            audit_restore(catalog, actor, finding, source)
            extra = f" (the damaged file moved to {moved})" if moved else ""
            return RepairAction(
                finding, "restored", f"catalogued bytes put back from {source}{extra}"
            )
    reason = finding.message
    if finding.entity == "heatmap":
        drop_heatmap_row(catalog, actor, finding, moved, reason)
        return RepairAction(
            finding,
            "dropped",
            "heatmap forgotten (made again on demand)"
            + (f"; file moved to {moved}" if moved else ""),
        )
    if finding.entity == "training_run" and path.endswith(_CHECKPOINT):
        current = detach_checkpoint(catalog, actor, finding, moved, reason)
        return RepairAction(
            finding,
            "detached",
            "the run no longer offers this checkpoint; "
            f"current model: {current or 'none'}" + (f"; file moved to {moved}" if moved else ""),
        )
    record_quarantine(catalog, actor, finding, moved, reason)
    who = "a person's mask: " if finding.human else ""
    where = f"moved to {moved}" if moved else "no copy with the catalogued bytes was found"
    return RepairAction(
        finding,
        "quarantined" if moved else "recorded",
        f"{who}{where}; its catalog row stays and the audit log records it",
    )
