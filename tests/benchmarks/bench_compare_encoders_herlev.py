"""Wubineh et al.'s backbone comparison on Herlev, through ``compare_encoders``.

The 80 seed images of split 0 (stratified by class, as ``bench_seg_quality_herlev.py`` picks
them) are "painted" with their true masks; the U-Net is trained once per encoder with one recipe
(CytoReview's defaults, or ``--preset``) on the same split, and each is scored on that split's
validation images at native resolution. Prints the table as JSON.

    .venv/bin/python tests/benchmarks/bench_compare_encoders_herlev.py [--minutes 3]
        [--encoders vgg19_bn resnet50 ...] [--preset wubineh2024] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _drive import drain
from _herlev import import_herlev, paint, seed_names

from cytoreview.storage.project import Project
from cytoreview.workflows.compare import PAPER_ENCODERS, compare_encoders
from cytoreview.workflows.segmentation import seg_request


def painted_project(work: Path, seeds: int, split: int) -> Project:
    """Herlev imported, ``seeds`` stratified images with their true masks as manual masks."""
    project = Project.init(work / "proj", actor="bench")
    import_herlev(project)
    paint(project, work, seed_names(project, seeds, split))
    return project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", default=list(PAPER_ENCODERS))
    parser.add_argument("--minutes", type=float, default=3.0, help="budget per encoder")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--seeds", type=int, default=80)
    parser.add_argument("--split", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="herlev-compare-"))
    try:
        project = painted_project(work, args.seeds, args.split)
        explicit: dict = {"time_budget_min": args.minutes}
        if args.epochs:
            explicit["epochs"] = args.epochs
        base = seg_request(args.preset, **explicit)
        report = drain(compare_encoders(project, args.encoders, base=base, actor="bench"), log=True)
        print(json.dumps({
            "n_train": report.n_train, "n_val": report.n_val, "recipe": report.recipe,
            "rows": [asdict(row) for row in report.rows],
        }, indent=2, default=str))  # fmt: skip
        project.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
