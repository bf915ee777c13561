"""Plugin commands: ``plugins``, ``generate-masks`` and ``masks-from-labels``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cytoreview.cli.progress import console, drive, esc, warn
from cytoreview.cli.settings_flags import add_method_flags, chosen_settings, flag_of
from cytoreview.plugin_api import catalog, describe_settings
from cytoreview.settings import current_user
from cytoreview.types import CancelToken
from cytoreview.workflows.projects import open_project

EXIT_CANCELLED = 130


def register(sub: Any) -> None:
    """Add the plugin commands to the ``cytoreview`` parser."""
    p = sub.add_parser(
        "plugins", help="list the installed methods, with versions and citations",
        description=_cmd_plugins.__doc__,
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_plugins)

    p = sub.add_parser(
        "generate-masks", help="make masks with no painting (e.g. Otsu thresholding)",
        description=_cmd_generate.__doc__,
    )  # fmt: skip
    p.add_argument("project", type=Path, help="the project folder")
    generators = catalog().contributions("mask-generator")
    # With no --generator: the one generator that needs nothing but the pixels, if only one.
    plain = [c.name for c in generators if not c.uses_labels]
    add_method_flags(
        p, "mask-generator", choose="--generator",
        default=plain[0] if len(plain) == 1 else None,
    )  # fmt: skip
    p.add_argument("images", nargs="*", help="only these images (default: every image)")
    p.set_defaults(handler=_cmd_generate)

    p = sub.add_parser(
        "masks-from-labels", help="make masks from the images' class labels alone (no painting)",
        description=_cmd_from_labels.__doc__,
    )  # fmt: skip
    p.add_argument("project", type=Path, help="the project folder")
    learners = [c.name for c in generators if c.uses_labels]
    add_method_flags(
        p, "mask-generator", choose="--generator",
        default=learners[0] if len(learners) == 1 else None,
        where=lambda c: c.uses_labels,
    )  # fmt: skip
    p.add_argument("images", nargs="*", help="only these images (default: every image)")
    p.set_defaults(handler=_cmd_generate)


def _cmd_plugins(args: argparse.Namespace) -> int:
    """List every installed plugin and what it contributes (segmenters, classifiers, mask
    generators, presets), with versions, settings and citations. A plugin that failed to load
    is listed with the reason; the rest of the program works without it."""
    found = catalog()
    if args.json:
        data = {
            "plugins": [
                {
                    "name": p.name, "version": p.version, "entry_point": p.entry_point,
                    "contributions": [
                        {"kind": c.kind, "name": c.name, "description": c.description,
                         "citation": c.citation,
                         "settings": [{"name": s.name, "flag": flag_of(c, s),
                                       "default": s.default, "help": s.help}
                                      for s in describe_settings(c.settings)],
                         "presets": [{"name": r.name, "description": r.description,
                                      "citation": r.citation} for r in c.presets]}
                        for c in p.contributions
                    ],
                }
                for p in found.plugins
            ],
            "presets": [{"name": r.name, "segmenter": c.name, "plugin": who,
                         "description": r.description, "citation": r.citation,
                         "values": dict(r.values)} for c, r, who in found.presets()],
            "broken": found.broken,
        }  # fmt: skip
        print(json.dumps(data, indent=2))
        return 0
    for plugin in found.plugins:
        console.print(f"[bold]{esc(plugin.name)}[/bold] {esc(plugin.version)}")
        for c in plugin.contributions:
            console.print(f"  {c.kind:<15}{esc(c.name):<20} {esc(c.description)}")
            for s in describe_settings(c.settings):
                console.print(f"  {'':<36}{flag_of(c, s)} (default {s.default}): {esc(s.help)}")
            for r in c.presets:
                console.print(f"  {'':<36}--preset {esc(r.name)}: {esc(r.description)}")
            if c.citation:
                console.print(f"  {'':<36}[dim]cite: {esc(c.citation)}[/dim]")
        for r in plugin.presets:
            console.print(
                f"  {'preset':<15}{esc(r.name):<18}{esc(r.description)} "
                f"(train-seg --preset {esc(r.name)}; trains {esc(r.applies_to)})"
            )
            if r.citation:
                console.print(f"  {'':<36}[dim]cite: {esc(r.citation)}[/dim]")
    if found.broken:  # each was named in one warning when the plugins were found
        console.print(f"{len(found.broken)} plugin(s) not loaded (see the warning above)")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    """Make a mask for every image that has no manual, corrected or approved mask, with a mask
    generator (no painting, no model). The masks are stored as 'auto' masks whose source is the
    generator; a person's mask is never replaced. Train on them with
    `cytoreview train-seg --include-generated`."""
    from cytoreview.workflows.mask_generation import generate_masks

    settings = chosen_settings(args, "mask-generator", args.generator)
    token = CancelToken()
    with open_project(args.project) as project:
        job = generate_masks(
            project, args.generator, settings, actor=current_user(args.user),
            names=args.images or None, cancel=token,
        )  # fmt: skip
        report = drive(job, token, verbose=args.verbose)
    console.print(
        f"{len(report.made)} mask(s) generated with {esc(report.generator)} "
        f"({esc(report.plugin)} {esc(report.version)}) in {report.seconds:.1f} s; "
        f"{len(report.skipped_human)} image(s) with a person's mask left as they are"
    )
    if report.fitted_model:
        console.print(f"fitted first: {esc(report.fitted or '')} (stored as model "
                      f"{esc(report.fitted_model)})")  # fmt: skip
    if report.uncertainties:
        worst = sorted(report.uncertainties.items(), key=lambda kv: -kv[1])[:3]
        console.print("least sure (review first): "
                      + ", ".join(f"{esc(n)} {u:.2f}" for n, u in worst))  # fmt: skip
    for line in report.problems:
        warn(line)
    return EXIT_CANCELLED if report.cancelled else 0


def _cmd_from_labels(args: argparse.Namespace) -> int:
    """Make masks from class labels alone: a generator that learns from the project's class
    labels (e.g. a normal/abnormal classifier whose explanations are grouped into nucleus and
    cytoplasm and refined with GrabCut) masks every image that has no person's mask. The
    masks are 'auto' masks whose source is the generator, with an uncertainty for the review
    queue; a person's mask is never replaced. Images in the test split are not learned from."""
    return _cmd_generate(args)
