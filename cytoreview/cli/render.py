"""Tables for the terminal."""

from __future__ import annotations

from rich import box
from rich.table import Table

from cytoreview.cli.progress import console, esc, warn
from cytoreview.workflows.status import MASK_STATES, ClassRow, ProjectStatus


def _row(row: ClassRow, target: int) -> list[str]:
    # The binary call: images of a "revisable" class need a pathologist's review.
    binary = {True: "yes", False: "no", None: ""}[row.revisable]
    quota = f"{row.seeds_painted}/{target or row.seeds}" if (target or row.seeds) else "-"
    return [esc(row.label), binary, str(row.images), quota] + [
        str(row.masks[s]) for s in MASK_STATES
    ]


def print_status(status: ProjectStatus) -> None:
    """Print the per-class table of ``cytoreview status``."""
    table = Table(
        title=f"{esc(str(status.root))}: {status.total_images} image(s); masks by current version",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        show_edge=False,
    )
    headers = ["images", "seeds\npainted", *(s if s != "none" else "no\nmask" for s in MASK_STATES)]
    longest = max(len(r.label) for r in [*status.classes, status.unlabelled])
    table.add_column("class", no_wrap=True, min_width=longest)
    table.add_column("review", no_wrap=True)
    for header in headers:
        width = max(len(line) for line in header.split("\n"))
        table.add_column(header, justify="right", no_wrap=True, min_width=width)
    for row in status.classes:
        table.add_row(*_row(row, status.seed_target))
    if status.unlabelled.images:
        table.add_row(*_row(status.unlabelled, 0))
    totals = [sum(r.masks[s] for r in [*status.classes, status.unlabelled]) for s in MASK_STATES]
    painted = sum(r.seeds_painted for r in status.classes)
    target = status.seed_target * len(status.classes)
    table.add_row(
        "total", "", str(status.total_images), f"{painted}/{target}" if target else "-",
        *map(str, totals), style="bold",
    )  # fmt: skip
    console.print(table)
    for warning in status.warnings:
        warn(warning)
