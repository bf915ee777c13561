"""Classifier inference speed on the CPU: torch eager vs ONNX Runtime, alone and beside a CPU hog.

For each architecture a resnet18 classifier is trained briefly on Herlev (``../shared/data/
herlev40``, true masks; ``--synthetic`` uses generated cells instead) at the default input size
(128 px), so that the comparison is made on trained weights, not random ones. Then, on held-out
cells:

* agreement: the ONNX engine's arg-max against torch's (identical or not), the largest
  probability difference, and the largest heatmap difference (Grad-CAM++ at the CAM layer's
  resolution and at the image's own size) against the autograd reference;
* time per image, batch 1 (what the review window does for one cell), as the product runs it
  (the measurement model's features and call included, when the classifier has one):
  ``classify`` = :func:`predict_class_probs` on one crop; ``classify + Grad-CAM++`` =
  :func:`explain_image` without the pixel-flipping check (input, forward, map, map back to the
  image, region shares); and ``classify`` per image in batches of 16 (``cytoreview classify``);
* the same beside ``--hogs`` busy processes (``python3 -c 'while True: pass'``), each pinned to
  nothing, started after the quiet measurement and killed by their process ids at the end;
* for the first architecture, ONNX Runtime thread settings (1 or 2 threads, spinning on or
  off), alone and beside the hogs: the evidence for the default;
* beside each wall time, the CPU time the process spent (``cpu_median_ms``): on a shared machine
  the wall time says as much about the other jobs as about the model.

    .venv/bin/python tests/benchmarks/bench_cls_speed.py [--archs fusion-gap image-only
        fusion-flatten] [--train-minutes 1.5] [--n-timing 60] [--hogs 2] [--synthetic]

Prints one JSON object; progress goes to standard error.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _drive import drain

from cytoreview.data.cls_dataset import make_inputs
from cytoreview.data.synthetic import synth_dataset
from cytoreview.data.transforms import letterbox_geometry
from cytoreview.explain.cam import class_activation_maps, heatmap_to_image
from cytoreview.inference.classify import (
    ClassifierSpec,
    export_classifier_onnx,
    predict_class_probs,
)
from cytoreview.models.classifiers import build_classifier
from cytoreview.models.measurement_model import MeasurementModel
from cytoreview.storage.images import read_image, read_label_mask
from cytoreview.training.classification import ClsTrainConfig, train_classifier
from cytoreview.workflows.classification import LoadedClassifier
from cytoreview.workflows.cls_runtime import ClassifierRuntime
from cytoreview.workflows.review_data import explain_image

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "herlev40"
HERLEV_CLASSES = ["NILM", "LSIL", "HSIL"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _indented(message: str) -> None:
    log(f"  {message}")


def load_cells(synthetic: bool, n_synthetic: int) -> tuple[list, list, list, list[str], str]:
    """Images, masks, labels, class names and a description of the data."""
    if not synthetic and (DATA / "labels.csv").is_file():
        rows = list(csv.DictReader((DATA / "labels.csv").open()))
        images = [read_image(DATA / "images" / f"{r['id']}.png").rgb for r in rows]
        masks = [read_label_mask(DATA / "masks" / f"{r['id']}.png") for r in rows]
        return images, masks, [r["bethesda"] for r in rows], HERLEV_CLASSES, "herlev40"
    classes = ["NILM", "ASC-US", "LSIL", "HSIL"]
    samples = [s for _, s in synth_dataset(n_synthetic, seed=1, classes=classes)]
    images, masks = [s.image for s in samples], [s.mask for s in samples]
    return images, masks, [s.label for s in samples], classes, f"synthetic ({n_synthetic})"


def split(labels: list[str], test_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    n_test = int(len(labels) * test_fraction)
    return order[n_test:], np.sort(order[:n_test])


def train(
    arch: str, args: argparse.Namespace, images, masks, labels, classes
) -> tuple[LoadedClassifier, dict]:
    """A briefly trained classifier, loaded as the workflows load one (with its ONNX export)."""
    config = ClsTrainConfig(
        arch=arch, input_size=args.input_size, epochs=args.epochs, batch_size=32, lr=1e-3,
        patience=args.epochs, time_budget_s=args.train_minutes * 60, device="cpu", seed=0,
    )  # fmt: skip
    result = drain(train_classifier(images, masks, labels, classes, config), log=_indented)
    model = build_classifier(result.model_config)
    model.load_state_dict(result.state_dict)
    model.eval()
    log(f"  {arch}: {len(result.history)} epochs, {result.stop_reason}")
    best = None if result.best is None else round(result.best.val_accuracy, 3)
    info = {"n_train": len(images), "epochs": len(result.history), "stop": result.stop_reason,
            "val_accuracy": best}  # fmt: skip
    return LoadedClassifier(
        model_id=f"bench-{arch}", task="bethesda", config=dict(result.model_config), model=model,
        class_names=list(result.class_names), input_size=args.input_size, uses_mask=True,
        onnx_bytes=export_classifier_onnx(model, args.input_size),
        measurements=MeasurementModel.from_config(result.model_config),
    ), info  # fmt: skip


def agreement(loaded: LoadedClassifier, images, masks) -> dict[str, float | bool | int]:
    """ONNX engine against the torch reference on every held-out cell (batches of 16)."""
    onnx_rt = ClassifierRuntime(loaded, "onnx", "cpu")
    torch_rt = ClassifierRuntime(loaded, "torch", "cpu")
    x = make_inputs(images, masks, loaded.input_size)
    worst_p = worst_cam = worst_image = 0.0
    same, n = 0, len(images)
    for lo in range(0, n, 16):
        batch = x[lo : lo + 16]
        p_onnx, cams_onnx, t_onnx = onnx_rt.explain(batch)
        p_torch = torch_rt.probs(batch)
        t_torch = p_torch.argmax(axis=1)
        # The autograd maps of the ONNX call's class, so a tie-flip would not hide a map error.
        model = loaded.model
        cams_ref = class_activation_maps(model, model.cam_layer, batch, t_onnx.tolist())
        same += int((t_onnx == t_torch).sum())
        worst_p = max(worst_p, float(np.abs(p_onnx - p_torch).max()))
        worst_cam = max(worst_cam, float(np.abs(cams_onnx - cams_ref).max()))
        for i, cam in enumerate(cams_onnx):
            box = letterbox_geometry(images[lo + i].shape[:2], loaded.input_size)
            diff = heatmap_to_image(cam, box) - heatmap_to_image(cams_ref[i], box)
            worst_image = max(worst_image, float(np.abs(diff).max()))
    return {
        "n": n, "argmax_identical": same == n, "argmax_same": same,
        "max_abs_prob_diff": worst_p, "max_abs_cam_diff": worst_cam,
        "max_abs_heatmap_diff_at_image_size": worst_image,
        "closed_form": onnx_rt.closed_form,
    }  # fmt: skip


def per_image_ms(fn: Callable[[int], object], n: int) -> dict[str, float]:
    """Wall-clock times per call, and the CPU time this process spent per call.

    On a shared machine the wall time depends on what else runs; the CPU time much less so: a
    1-thread session's CPU time is close to its wall time on an idle core.
    """
    fn(0)
    fn(1)  # warm-up: first runs allocate
    times, cpu = [], []
    for i in range(n):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(i)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return {"median_ms": round(float(np.median(times)), 2),
            "p90_ms": round(float(np.percentile(times, 90)), 2),
            "mean_ms": round(float(np.mean(times)), 2),
            "cpu_median_ms": round(float(np.median(cpu)), 2)}  # fmt: skip


def timings(loaded: LoadedClassifier, images, masks, runtimes: dict[str, ClassifierRuntime]):
    """Per-image times of classify and classify + Grad-CAM++ for each runtime."""
    spec = ClassifierSpec.from_config(loaded.config)  # with its measurement model, if any
    n = len(images)
    out: dict[str, dict] = {}
    for name, runtime in runtimes.items():
        # explain_image finds its runtime on the loaded classifier under (engine, device).
        loaded.runtimes[(runtime.engine, "cpu")] = runtime
        predictor = runtime.predictor()

        def classify(i: int, predictor=predictor) -> object:
            return predict_class_probs(predictor, images[i : i + 1], masks[i : i + 1], spec,
                                       device="cpu")  # fmt: skip

        def explain(i: int, engine=runtime.engine) -> object:
            return explain_image(loaded, images[i], masks[i], flipping_steps=0, device="cpu",
                                 engine=engine)  # fmt: skip

        def batched(i: int, predictor=predictor) -> object:
            lo = (i * 16) % max(1, n - 16)
            return predict_class_probs(predictor, images[lo : lo + 16], masks[lo : lo + 16],
                                       spec, batch_size=16, device="cpu")  # fmt: skip

        batch16 = per_image_ms(batched, max(3, n // 16))
        out[name] = {
            "device": runtime.device,
            "classify": per_image_ms(classify, n),
            "classify_plus_gradcampp": per_image_ms(explain, n),
            "classify_batch16_per_image_ms": round(batch16["median_ms"] / 16, 2),
        }
        log(f"    {name}: {json.dumps(out[name])}")
    loaded.runtimes.clear()
    return out


def start_hogs(count: int) -> list[subprocess.Popen]:
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    time.sleep(1.0)  # let the scheduler see them as busy
    return hogs


def stop_hogs(hogs: list[subprocess.Popen]) -> None:
    for hog in hogs:  # by process id, only the ones started here
        hog.kill()
        hog.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--archs", nargs="+", default=["fusion-gap", "image-only", "fusion-flatten"]
    )
    parser.add_argument("--input-size", type=int, default=128, help="default input size: 128")
    parser.add_argument("--train-minutes", type=float, default=1.5)
    parser.add_argument(
        "--n-train", type=int, default=200, help="training cells (epochs fit the budget)"
    )
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--n-timing", type=int, default=60, help="cells timed one by one")
    parser.add_argument("--hogs", type=int, default=2, help="busy processes beside it (0: none)")
    parser.add_argument("--synthetic", action="store_true", help="generated cells, not Herlev")
    parser.add_argument("--n-synthetic", type=int, default=160)
    args = parser.parse_args()
    load_before = os.getloadavg()
    images, masks, labels, classes, source = load_cells(args.synthetic, args.n_synthetic)
    train_idx, test_idx = split(labels)
    train_idx = train_idx[: args.n_train]  # a seeded permutation already: a random subset
    pick = lambda seq, idx: [seq[i] for i in idx]  # noqa: E731
    test_images, test_masks = pick(images, test_idx), pick(masks, test_idx)
    timed = slice(0, min(args.n_timing, len(test_idx)))
    results: dict[str, dict] = {}
    threads: dict[str, dict] = {}
    for k, arch in enumerate(args.archs):
        log(f"{arch}: training ({args.train_minutes} min at most)")
        loaded, trained = train(arch, args, pick(images, train_idx), pick(masks, train_idx),
                       pick(labels, train_idx), classes)  # fmt: skip
        entry: dict[str, dict] = {"training": trained}
        entry["agreement"] = agreement(loaded, test_images, test_masks)
        log(f"  agreement: {json.dumps(entry['agreement'])}")
        engines = {"torch": ClassifierRuntime(loaded, "torch", "cpu"),
                   "onnx": ClassifierRuntime(loaded, "onnx", "cpu")}  # fmt: skip
        variants: dict[str, ClassifierRuntime] = {}
        if k == 0:
            for n_threads in (1, 2):
                for spin in (False, True):
                    name = f"onnx_{n_threads}threads_{'spin' if spin else 'nospin'}"
                    variants[name] = ClassifierRuntime(loaded, "onnx", "cpu", n_threads, spin)
        for condition, hog_count in (("alone", 0), (f"beside_{args.hogs}_hogs", args.hogs)):
            if condition != "alone" and hog_count == 0:
                continue
            log(f"  timing {condition}")
            hogs = start_hogs(hog_count)
            try:
                entry[condition] = timings(loaded, test_images[timed], test_masks[timed], engines)
                if variants:
                    threads[condition] = timings(
                        loaded, test_images[timed], test_masks[timed], variants
                    )
            finally:
                stop_hogs(hogs)
        results[arch] = entry
    default = results.get("fusion-gap", next(iter(results.values())))
    out = {
        "benchmark": "cls_speed", "data": source, "n_test": len(test_idx),
        "n_timed": len(test_images[timed]), "input_size": args.input_size,
        "backbone": "resnet18", "train_minutes": args.train_minutes,
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "results": results, "onnx_thread_settings_first_arch": threads,
        "target_20ms_met_alone": default["alone"]["onnx"]["classify_plus_gradcampp"]["median_ms"]
        <= 20.0,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }  # fmt: skip
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
