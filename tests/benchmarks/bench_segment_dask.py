"""``segment`` in this process against a LocalCluster of 1 and 2 worker processes.

A project of ``--images`` synthetic cells (``--size`` px) and a segmenter that is not trained
(its masks mean nothing; its compute is a real network's): ``unet`` is the default U-Net
(resnet18) exported to ONNX, ``grey`` the tiny hand-set network of the tests (then reading,
letterboxing, post-processing and writing dominate: the Python share that threads of one
process cannot run in parallel). Each driver runs ``segment_project`` on every image with the
product's settings (precision gate, 8-view averaging for crops); the cluster's start-up, its
first job (workers import the runtime and build the session) and a second job are timed apart.
The masks of every driver are compared with the in-process ones, bit for bit.

    .venv/bin/python tests/benchmarks/bench_segment_dask.py [--images 64] [--model unet]
        [--size 128] [--workers 1 2] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _project(root: Path, n: int, size: int, model: str) -> Any:
    from cytoreview.data.synthetic import synth_cell
    from cytoreview.storage.model_store import ModelStore
    from cytoreview.storage.project import Project
    from cytoreview.workflows.importing import import_images
    from tests.conftest import run_job, write_rgb_png
    from tests.inference.int8_models import add_grey_model, grey_net_onnx

    classes = ("NILM", "ASC-US", "LSIL", "HSIL")
    for i in range(n):
        cell = synth_cell(classes[i % 4], 5000 + i, size)
        write_rgb_png(root / "src" / classes[i % 4] / f"cell_{i:04d}.png", cell.image)
    project = Project.init(root / "proj", actor="bench")
    run_job(import_images(project, root / "src", actor="bench"))
    if model == "grey":
        add_grey_model(project, grey_net_onnx(size))
        return project
    import torch

    from cytoreview.inference.onnx_export import export_onnx
    from cytoreview.models.segmenters import build_segmenter
    from tests.inference.int8_models import model_config

    torch.manual_seed(0)
    store = ModelStore(project)
    model_id = store.new_model_id("seg", "unet")
    config = {**model_config(model_id, size), "arch": "unet", "settings": {}}
    net = build_segmenter(config).eval()
    store.save_weights(model_id, net.state_dict(), config)
    store.save_onnx(model_id, export_onnx(net, size))
    run_id = store.start_run("segmentation", model_id, config, actor="bench")
    store.finish_run(run_id, "finished", {}, actor="bench", has_checkpoint=True)
    return project


def _masks(project: Any) -> dict[str, np.ndarray]:
    return {im.name: project.current_mask(im.id)[1] for im in project.images()}


def _run(project: Any, compute: Any) -> tuple[float, Any]:
    from cytoreview.workflows.segmentation import segment_project
    from tests.conftest import run_job

    start = time.perf_counter()
    _, report = run_job(segment_project(project, actor="bench", compute=compute))
    return time.perf_counter() - start, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--model", choices=("unet", "grey"), default="unet")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    from cytoreview.workflows.executors import DaskExecutor, ExecutorSpec, usable_cores

    out: dict[str, Any] = {
        "images": args.images,
        "size": args.size,
        "model": args.model,
        "usable_cores": usable_cores(),
        "cpu_count": os.cpu_count(),
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        project = _project(Path(tmp), args.images, args.size, args.model)
        _run(project, ExecutorSpec("none"))  # warm-up: the precision gate decides once
        reference = _masks(project)
        for round_ in range(args.rounds):
            seconds, report = _run(project, ExecutorSpec("none"))
            same = _masks(project)
            out["runs"].append(
                {
                    "round": round_,
                    "driver": report.driver,
                    "device": report.device,
                    "start_s": 0.0,
                    "segment_s": round(seconds, 2),
                    "images_per_s": round(args.images / seconds, 2),
                    "images_per_s_with_start": round(args.images / seconds, 2),
                    "identical": all(np.array_equal(same[k], v) for k, v in reference.items()),
                }
            )
            for workers in args.workers:
                start = time.perf_counter()
                with DaskExecutor.local_cluster(workers) as executor:
                    started = time.perf_counter() - start
                    # The first job on new workers imports the runtime and builds the session.
                    cold, _ = _run(project, executor)
                    seconds, report = _run(project, executor)
                masks = _masks(project)
                out["runs"].append(
                    {
                        "round": round_,
                        "driver": report.driver,
                        "device": report.device,
                        "start_s": round(started, 2),
                        "first_job_s": round(cold, 2),
                        "segment_s": round(seconds, 2),
                        "images_per_s": round(args.images / seconds, 2),
                        "images_per_s_with_start": round(args.images / (cold + started), 2),
                        "identical": all(np.array_equal(masks[k], v) for k, v in reference.items()),
                    }
                )
        project.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
