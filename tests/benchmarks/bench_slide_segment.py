"""Whole-slide segmentation throughput: this process against a LocalCluster of 1 and 2 workers.

A synthetic slide (``--side`` px square, 0.25 um/px, some bare glass) is registered in a project
whose U-Net was trained for a few epochs on synthetic fields (its masks are rough; its compute is
a real fields model's: 128 px tiles at native resolution). ``segment-slide`` runs with the
product's defaults (tissue mask, 1024 px chunks, 40 um halo) on each driver in turn, from a
fresh run each time. Prints JSON: megapixels of tissue chunks per second for each driver (the
cluster's start-up is inside its time, as a person waits for it), and whether every driver's
label pyramid and cell table are identical to the in-process ones, bit for bit.

    .venv/bin/python tests/benchmarks/bench_slide_segment.py [--side 4096] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4096, help="slide side in px")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=3, help="training epochs of the model")
    args = parser.parse_args()

    from cytoreview.data.synthetic_slide import SyntheticSlide
    from cytoreview.storage.project import Project
    from cytoreview.storage.slide_results import LabelPyramid
    from cytoreview.storage.slide_store import SlideStore
    from cytoreview.storage.slides import write_tiled_pyramid
    from cytoreview.workflows.executors import ExecutorSpec
    from cytoreview.workflows.segmentation import SegTrainRequest, train_segmentation
    from cytoreview.workflows.slide_segmentation import segment_slide
    from tests.conftest import run_job
    from tests.workflows.test_fields_and_nuclei import _fields_project

    work = Path(tempfile.mkdtemp(prefix="cytoreview-slideseg-"))
    project = _fields_project(work, nucleus_only=False)
    request = SegTrainRequest(epochs=args.epochs, input_size=128, patience=args.epochs, seed=0)
    _, trained = run_job(train_segmentation(project, request, actor="bench"))
    source = SyntheticSlide(args.side, args.side, seed=3, field=512, empty_fraction=0.3)
    levels = 1
    while max(source.level_shape(levels - 1)) > 1024:
        levels += 1
    slide_path = write_tiled_pyramid(
        work / "slide.ome.tif", source, levels=levels, tile=512, pixel_size_um=0.25
    )
    SlideStore(project).register(slide_path, actor="bench")
    project.close()
    drivers = [("this process", ExecutorSpec("none"))] + [
        (f"LocalCluster x{n}", ExecutorSpec("local", n)) for n in args.workers
    ]
    out: dict = {"side": args.side, "model": trained.model_id, "runs": []}
    reference = None
    for name, spec in drivers:
        folder = work / f"run-{len(out['runs'])}"
        shutil.copytree(work / "proj", folder)
        with Project.open(folder) as copy:
            start = time.perf_counter()
            _, report = run_job(segment_slide(copy, "slide", actor="bench", compute=spec))
            seconds = time.perf_counter() - start
            labels = np.asarray(LabelPyramid(Path(report.labels_path)).level(0)[:])
            digest = (
                hashlib.sha256(labels.tobytes()).hexdigest()[:16],
                hashlib.sha256(Path(report.cells_path).read_bytes()).hexdigest()[:16],
            )
        reference = reference or digest
        out["runs"].append({
            "driver": name, "executor": report.executor, "seconds": round(seconds, 1),
            "chunks": report.chunks_with_tissue, "of_chunks": report.chunks_total,
            "megapixels": round(report.megapixels, 1),
            "mp_per_s": round(report.megapixels / seconds, 3), "cells": report.cells,
            "identical_to_this_process": digest == reference,
        })  # fmt: skip
        print(json.dumps(out["runs"][-1]), file=sys.stderr)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
