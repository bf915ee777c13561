"""Setting or correcting an image's class after import: one image, a table, or a reviewer's call.

The class label of an image is what training learns from and what evaluation scores against
(both read ``ImageRecord.class_label``), so a correction here changes what the next training run
and the next evaluation use. Every change is audited: who, when, the old and the new class, and
where the new one came from (typed in, a table and its line, a reviewer's recorded call).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cytoreview.errors import InputFileError, ProjectError, UnknownClassError
from cytoreview.storage.class_tables import read_class_table
from cytoreview.storage.predictions import PredictionStore
from cytoreview.storage.project import Project
from cytoreview.storage.records import ImageRecord


@dataclass(frozen=True)
class ClassChange:
    """One image's class before and after (equal when nothing changed)."""

    image_id: int
    name: str
    old: str | None
    new: str | None

    @property
    def changed(self) -> bool:
        """Whether the label was different before."""
        return self.old != self.new

    def line(self) -> str:
        """``name: HSIL -> LSIL`` (``none`` for no class)."""
        return f"{self.name}: {self.old or 'none'} -> {self.new or 'none'}"


def find_image(project: Project, listed: str) -> ImageRecord:
    """The image a person means by ``listed``: its name, or a file name or path of it.

    Raises
    ------
    ProjectError
        If no image of the project has that name (or file stem).
    """
    value = listed.strip()
    try:
        return project.image(value)
    except ProjectError:
        stem = Path(value.replace("\\", "/")).stem
        if stem and stem != value:
            try:
                return project.image(stem)
            except ProjectError:
                pass
    raise ProjectError(f"no image named {value!r} in this project")


def set_image_class(
    project: Project, image: int | str, class_name: str, *, actor: str, source: str = "typed"
) -> ClassChange:
    """Set the class of one image (by id, name or file name); audited when it changes.

    Parameters
    ----------
    project
        The open project.
    image
        The image id, or its name (a file name or path of it is accepted).
    class_name
        One of the project's classes (letter case and separators are forgiven: ``asc us``).
    actor
        Who made the change.
    source
        Where the new class comes from, for the audit log.

    Raises
    ------
    UnknownClassError
        If ``class_name`` is not a class of the project (the message lists the valid ones).
    ProjectError
        If there is no such image.
    """
    record = project.image(image) if isinstance(image, int) else find_image(project, image)
    new = project.scheme.resolve(class_name)
    if record.class_label == new:
        return ClassChange(record.id, record.name, new, new)
    old = project.set_class(record.id, new, actor=actor, source=source)
    return ClassChange(record.id, record.name, old, new)


@dataclass
class ClassTableReport:
    """What a class table changed, and its rows that could not be used (one line each)."""

    table: Path
    changes: list[ClassChange] = field(default_factory=list)
    unchanged: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """One line: how many classes changed, stayed and were refused."""
        return (
            f"{self.table.name}: {len(self.changes)} class(es) changed, {self.unchanged} already "
            f"right, {len(self.problems)} row(s) refused"
        )


def set_classes_from_table(project: Project, table: str | Path, *, actor: str) -> ClassTableReport:
    """Set the classes a CSV table lists (columns ``image``, ``class``); bad rows are named.

    Every row is checked before anything changes; good rows are then applied and each bad row
    gets one line (the file, its line and why: an unknown image, an unknown class with the
    valid ones, an image listed twice with two classes).

    Raises
    ------
    ManifestError
        If the table cannot be read or lacks the ``image`` or ``class`` column.
    """
    table = Path(table)
    rows, unusable = read_class_table(table)
    report = ClassTableReport(table, problems=[str(p) for p in unusable])
    wanted: dict[int, tuple[ImageRecord, str, int]] = {}  # image id -> record, class, line
    torn: set[int] = set()  # images listed with two classes
    for row in rows:
        try:
            record = find_image(project, row.image)
            label = project.scheme.resolve(row.class_name)
        except (ProjectError, UnknownClassError) as exc:
            report.problems.append(str(InputFileError(table, f"line {row.line}: {exc}")))
            continue
        earlier = wanted.get(record.id)
        if record.id in torn or (earlier is not None and earlier[1] != label):
            first = f" (line {earlier[2]}: {earlier[1]})" if earlier is not None else ""
            report.problems.append(
                str(InputFileError(table, f"line {row.line}: {record.name} is listed again with "
                                          f"another class{first}; neither is applied"))
            )  # fmt: skip
            wanted.pop(record.id, None)  # two answers: the person must choose
            torn.add(record.id)
            continue
        wanted[record.id] = (record, label, row.line)
    for record, label, line in wanted.values():
        change = set_image_class(
            project, record.id, label, actor=actor, source=f"{table.name} line {line}"
        )
        if change.changed:
            report.changes.append(change)
        else:
            report.unchanged += 1
    return report


def adopt_expert_call(
    project: Project, image_id: int, *, actor: str, call: str | None = None
) -> ClassChange:
    """Make the newest class call a reviewer recorded for an image the image's class label.

    Parameters
    ----------
    call
        The acting reviewer's own call, when they make it now: it is recorded first (as
        ``actor``'s) unless it already is the newest call on record, so that the label and the
        review log say the same.

    Raises
    ------
    ProjectError
        If no reviewer has recorded a class call for the image (and none is given).
    """
    store = PredictionStore(project)
    if call is not None:
        recorded = store.latest_reviews().get(int(image_id))
        if recorded is None or recorded.class_call != call:
            store.add_review(int(image_id), reviewer=actor, class_call=call)
    newest = store.latest_reviews().get(int(image_id))
    record = project.image(int(image_id))
    if newest is None or not newest.class_call:
        raise ProjectError(f"{record.name}: no expert call recorded yet; record one first")
    return set_image_class(
        project, record.id, newest.class_call, actor=actor,
        source=f"review call by {newest.reviewer} at {newest.created_at}",
    )  # fmt: skip
