"""Starting from zero painting on Herlev: a mask generator's masks train the segmenter.

Wubineh et al.'s bootstrap through CytoReview's own workflows: every image is imported with no
mask, a mask generator (default ``otsu``, from the cytoreview-otsu plugin) makes a mask for
each, a segmenter is trained on those generated masks (``include_generated``), every image is
auto-segmented, and the auto masks are scored against Herlev's true masks (its undetermined
border pixels left out). The generator's own masks are scored too: what training on them adds.

    .venv/bin/python tests/benchmarks/bench_bootstrap_herlev.py [--generator otsu]
        [--arch unet] [--preset wubineh2024] [--minutes 10] [--epochs N]

Prints one JSON object on standard output.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from _drive import drain
from _herlev import DATA, import_herlev

from cytoreview.storage.project import Project
from cytoreview.workflows.mask_generation import generate_masks
from cytoreview.workflows.segmentation import (
    evaluate_segmentation,
    seg_request,
    segment_project,
    train_segmentation,
)


def _scores(evaluation) -> dict:
    return {
        kind: {
            c: {"dice": round(getattr(evaluation.report, kind)[c].dice, 4),
                "iou": round(getattr(evaluation.report, kind)[c].iou, 4)}
            for c in ("cytoplasm", "nucleus", "cell")
        }
        for kind in ("mean", "pooled")
    }  # fmt: skip


def run(args: argparse.Namespace, work: Path) -> dict:
    project = Project.init(work / "proj", actor="bench")
    import_herlev(project)
    start = time.perf_counter()
    made = drain(generate_masks(project, args.generator, actor="bench"))
    result: dict = {
        "generator": args.generator, "images": len(made.made),
        "generate_seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    truth = {"ignore_dir": DATA / "ignore", "provenance": ["auto"]}
    result["generated_vs_truth"] = _scores(
        drain(evaluate_segmentation(project, DATA / "masks", **truth))
    )
    explicit: dict = {"include_generated": True, "arch": args.arch}
    if args.minutes:
        explicit["time_budget_min"] = args.minutes
    if args.epochs:
        explicit["epochs"] = args.epochs
    request = seg_request(args.preset, **explicit)
    start = time.perf_counter()
    report = drain(train_segmentation(project, request, actor="bench"), log=True)
    minutes = round((time.perf_counter() - start) / 60, 2)
    result.update(
        arch=request.arch, preset=args.preset, train_minutes=minutes,
        epochs_run=len(report.history), stop_reason=report.stop_reason, device=report.device,
        n_train=report.n_train, n_val=report.n_val,
        val_scores_vs_generated=report.best.scores if report.best else None,
    )  # fmt: skip
    seg = drain(segment_project(project, actor="bench", batch_size=32))
    result["auto_segmented"] = len(seg.segmented)
    result["auto_vs_truth"] = _scores(
        drain(evaluate_segmentation(project, DATA / "masks", **truth))
    )
    project.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="otsu")
    parser.add_argument("--arch", default="unet")
    parser.add_argument("--preset", default=None, help="e.g. wubineh2024")
    parser.add_argument("--minutes", type=float, default=None, help="training budget")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="herlev-bootstrap-"))
    try:
        print(json.dumps(run(args, work), indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
