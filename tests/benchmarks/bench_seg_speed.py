"""Auto-mask speed on the CPU: torch eager, ONNX Runtime fp32 and int8, `segment` end to end.

All in one run, on a U-Net trained here for a short time on synthetic 256 px cells (so that its
masks, and the Dice changes of the faster variants, mean something):

1. **Model speed**: each variant in its own child process (so peak memory is its own), on the
   same batches of letterboxed, normalised 256 px cells, rounds alternating so that machine
   noise hits all alike: torch eager fp32, ONNX Runtime fp32, ONNX Runtime int8 (the project's
   own quantised model, built and gated as ``segment`` does) and torch eager with bfloat16
   autocast (for reference only: ONNX Runtime's CPU provider has no bfloat16 convolution, see
   ``bf16`` in the output).
2. **Quality**: each variant's masks on held-out cells against the ONNX fp32 masks (Dice loss
   per class, mean over images, as the int8 gate measures it), and fp32 against the truth.
3. **End to end**: ``segment_project`` on a project of synthetic 256 px cells (load, letterbox,
   model, post-processing, uncertainty, PNG writes, catalog) against the bare fp32 ONNX Runtime
   session on the same inputs (model calls only), alternating rounds, with a breakdown of where
   ``segment`` spends its time.

    .venv/bin/python tests/benchmarks/bench_seg_speed.py [--rounds 3] [--train-steps 120]
        [--workdir DIR]   # keep the trained model and project between runs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CLASSES = ("NILM", "ASC-US", "LSIL", "HSIL")
VARIANTS = ("torch", "onnx_fp32", "onnx_int8", "torch_bf16")
TRAIN_IMAGES = 32
HELD_OUT_IMAGES = 32


# --- set-up: a trained model in a project of synthetic cells -----------------------------------
def _write_png(path: Path, array: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    image = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    assert cv2.imwrite(str(path), image)


def _cells(first: int, n: int, size: int) -> list[tuple[str, Any]]:
    from cytoreview.data.synthetic import synth_cell

    indices = range(first, first + n)
    return [(f"cell_{i:04d}", synth_cell(CLASSES[i % 4], 1000 + i, size)) for i in indices]


def _train(size: int, steps: int, threads: int) -> tuple[Any, dict[str, Any]]:
    """A resnet18 U-Net trained on TRAIN_IMAGES synthetic cells for ``steps`` (plain loop).

    A fixed number of steps, not a time budget: the same model whatever the machine's load.
    """
    import torch

    from cytoreview.data.transforms import letterbox_image, letterbox_mask, to_tensor_layout
    from cytoreview.models.segmenters import build_unet

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cells = _cells(0, TRAIN_IMAGES, size)
    boxed = [letterbox_image(s.image, size) for _, s in cells]
    x = torch.from_numpy(to_tensor_layout(np.stack([b[0] for b in boxed])))
    y = torch.from_numpy(
        np.stack([letterbox_mask(s.mask, b[1]) for (_, s), b in zip(cells, boxed, strict=True)])
    ).long()
    model = build_unet("resnet18").to(memory_format=torch.channels_last)
    optimiser = torch.optim.Adam(model.parameters(), 1e-3)
    weights = torch.tensor([0.5, 1.0, 2.0])  # the nucleus is small: weigh it up
    start, generator = time.perf_counter(), torch.Generator().manual_seed(0)
    for step in range(steps):
        idx = torch.randint(0, len(x), (8,), generator=generator)
        flip = bool(step % 2)
        xb, yb = (x[idx].flip(-1), y[idx].flip(-1)) if flip else (x[idx], y[idx])
        loss = torch.nn.functional.cross_entropy(model(xb), yb, weight=weights)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval(), {"steps": steps, "seconds": round(time.perf_counter() - start, 1),
                          "last_loss": round(float(loss.detach()), 4)}  # fmt: skip


def setup(workdir: Path, size: int, n_segment: int, train_steps: int, threads: int) -> dict:
    """Make (or reuse) the project with its trained model; build the int8 variant afresh.

    The int8 model and its gate are built as ``segment`` builds them on a model's first CPU
    run, every time, so that the time this takes is measured too.
    """
    from cytoreview.storage.model_store import ModelStore
    from cytoreview.storage.project import Project
    from cytoreview.workflows.segmentation import load_predictor

    info_path = workdir / "setup.json"
    if not info_path.is_file():
        info_path.write_text(
            json.dumps(_make_project(workdir, size, n_segment, train_steps, threads))
        )
    info = json.loads(info_path.read_text())
    with Project.open(workdir / "project") as project:
        store = ModelStore(project)
        model_id = info["model_id"]
        store.precision_path(model_id).unlink(missing_ok=True)
        store.int8_onnx_path(model_id).unlink(missing_ok=True)
        start = time.perf_counter()
        _, predictor, _ = load_predictor(project, model_id, device="cpu", precision="auto")
        info["first_cpu_load_s"] = round(time.perf_counter() - start, 1)
        info["auto_device"] = predictor.device
        info["precision_record"] = store.load_precision(model_id)
    return info


def _make_project(workdir: Path, size: int, n_segment: int, steps: int, threads: int) -> dict:
    """Train the model and make the project of images to segment (once per workdir)."""
    from cytoreview.inference.onnx_export import export_onnx
    from cytoreview.plugin_api import find
    from cytoreview.storage.model_store import ModelStore
    from cytoreview.storage.project import Project
    from cytoreview.workflows.importing import import_images

    model, training = _train(size, steps, threads)
    src = workdir / "images"
    for name, sample in _cells(TRAIN_IMAGES, n_segment, size):
        _write_png(src / sample.label / f"{name}.png", sample.image)
    project = Project.init(workdir / "project", actor="bench")
    for _ in import_images(project, src, actor="bench"):
        pass
    store = ModelStore(project)
    model_id = store.new_model_id("seg", "resnet18")
    # The network's settings as train-seg records them: a config without them is an old
    # checkpoint's, rebuilt with the decoder of that time.
    settings = find("segmenter", "unet").settings_record({"encoder": "resnet18"})
    config = {
        "kind": "segmentation", "model_id": model_id, "arch": "unet", "settings": settings,
        "in_channels": 3, "class_names": ["background", "cytoplasm", "nucleus"],
        "input_size": size, "tile_threshold": 1024, "tile_overlap": 64, "training": training,
    }  # fmt: skip
    store.save_weights(model_id, model.state_dict(), config)
    store.save_onnx(model_id, export_onnx(model, size))
    run_id = store.start_run("segmentation", model_id, config, actor="bench")
    store.finish_run(run_id, "finished", {}, actor="bench", has_checkpoint=True)
    project.close()
    return {"model_id": model_id, "training": training}


# --- model speed, one variant per child process -------------------------------------------------
def _predictor(variant: str, workdir: Path, threads: int):
    import torch

    from cytoreview.inference.predictors import OnnxPredictor, TorchPredictor
    from cytoreview.models.segmenters import build_segmenter
    from cytoreview.storage.model_store import ModelStore
    from cytoreview.storage.project import Project

    torch.set_num_threads(threads)
    with Project.open(workdir / "project") as project:
        store = ModelStore(project)
        model_id = store.current_model("segmentation")
        if variant.startswith("onnx"):
            fp32 = variant == "onnx_fp32"
            data = store.load_onnx(model_id) if fp32 else store.load_int8_onnx(model_id)
            precision = "fp32" if fp32 else "int8"
            return OnnxPredictor(data, device="cpu", threads=threads, precision=precision)
        config, state = store.load(model_id)
    model = build_segmenter(config)
    model.load_state_dict(state)
    predictor = TorchPredictor(model, device="cpu")
    if variant == "torch":
        return predictor

    def bf16(batch: np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(batch)).contiguous(
            memory_format=torch.channels_last
        )
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            probs = torch.softmax(predictor.model(x).float(), dim=1)
        return probs.numpy()

    bf16.device = f"CPU (torch bf16 autocast, {torch.get_num_threads()} threads)"
    return bf16


def _inputs(size: int, batch: int) -> np.ndarray:
    from cytoreview.data.transforms import letterbox_image, to_tensor_layout

    cells = _cells(TRAIN_IMAGES, batch, size)
    return to_tensor_layout(np.stack([letterbox_image(s.image, size)[0] for _, s in cells]))


def measure_model(variant: str, workdir: Path, size: int, batch: int, batches: int, threads: int):
    predictor = _predictor(variant, workdir, threads)
    data = _inputs(size, batch)
    predictor(data)  # warm-up: allocations, kernel selection
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        predictor(data)
        times.append(time.perf_counter() - start)
    per_image = float(np.median(times)) / batch
    return {
        "variant": variant,
        "device": predictor.device,
        "ms_per_image": round(per_image * 1000, 2),
        "images_per_s": round(1 / per_image, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


# --- quality: masks against fp32 ------------------------------------------------------------------
def measure_quality(workdir: Path, size: int, threads: int) -> dict:
    from cytoreview.inference.precision_gate import mask_agreement
    from cytoreview.inference.segment import SegmenterSpec, segment_images

    spec = SegmenterSpec(input_size=size)
    cells = _cells(TRAIN_IMAGES + 1000, HELD_OUT_IMAGES, size)  # cells no one has seen
    images = [s.image for _, s in cells]
    masks = {}
    for variant in VARIANTS:
        predictor = _predictor(variant, workdir, threads)
        masks[variant] = [r.mask for r in segment_images(images, predictor, spec)]
    truth = [s.mask for _, s in cells]
    vs_truth = mask_agreement(truth, masks["onnx_fp32"]).dice_loss
    out: dict[str, Any] = {
        "n_images": len(images),
        "onnx_fp32_vs_truth_dice": {k: round(1 - v, 4) for k, v in vs_truth.items()},
    }
    for variant in VARIANTS:
        if variant != "onnx_fp32":
            loss = mask_agreement(masks["onnx_fp32"], masks[variant]).dice_loss
            out[f"{variant}_dice_loss_vs_onnx_fp32"] = {k: round(v, 5) for k, v in loss.items()}
    return out


# --- segment end to end against the bare fp32 session --------------------------------------------
class StageClock:
    """Thread-safe wall time per stage of ``segment``, by wrapping the functions it calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._lock = threading.Lock()
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with self._lock:
                    self.seconds[stage] += time.perf_counter() - start

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def restore(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def _instrument(clock: StageClock) -> None:
    from cytoreview.inference import segment
    from cytoreview.inference.predictors import OnnxPredictor
    from cytoreview.storage.project import Project

    stages = [
        (Project, "load_image", "load_image"),
        (segment, "letterbox_image", "letterbox"),
        (segment, "to_tensor_layout", "normalise"),
        (OnnxPredictor, "__call__", "model"),  # a special method: wrapped on the class
        (segment, "unletterbox_probs", "unletterbox"),
        (segment, "clean_mask", "postprocess"),
        (segment, "image_uncertainty", "uncertainty"),
        (Project, "save_mask", "save_mask (PNG + catalog)"),
    ]
    for owner, name, stage in stages:
        if hasattr(owner, name):  # a renamed helper is simply not timed
            clock.wrap(owner, name, stage)


def measure_end_to_end(workdir: Path, size: int, batch: int, rounds: int, threads: int) -> dict:
    from cytoreview.data.transforms import letterbox_image, to_tensor_layout
    from cytoreview.inference.predictors import OnnxPredictor
    from cytoreview.storage.model_store import ModelStore
    from cytoreview.storage.project import Project
    from cytoreview.workflows import segmentation

    project = Project.open(workdir / "project")
    store = ModelStore(project)
    bare = OnnxPredictor(
        store.load_onnx(store.current_model("segmentation")), device="cpu", threads=threads
    )
    records = project.images()
    rgbs = [project.load_image(r).rgb for r in records]
    batches = [
        to_tensor_layout(np.stack([letterbox_image(im, size)[0] for im in rgbs[i : i + batch]]))
        for i in range(0, len(rgbs), batch)
    ]
    bare(batches[0])  # warm-up
    results: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, list[float]] = defaultdict(list)  # CPU ms per image, all threads
    breakdown: dict[str, dict[str, float]] = {}
    devices = {}
    for _ in range(rounds):
        start, cpu_start = time.perf_counter(), time.process_time()
        for b in batches:
            bare(b)
        results["bare_onnx_fp32_session"].append(len(rgbs) / (time.perf_counter() - start))
        cpu["bare_onnx_fp32_session"].append((time.process_time() - cpu_start) * 1000 / len(rgbs))
        for precision in ("auto", "int8", "fp32"):
            clock = StageClock()
            _instrument(clock)
            cpu_start = time.process_time()
            try:
                job = segmentation.segment_project(
                    project, actor="bench", device="cpu", precision=precision, tta=False,
                    batch_size=batch,
                )  # fmt: skip
                try:
                    while True:
                        next(job)
                except StopIteration as stop:
                    report = stop.value
            finally:
                clock.restore()
            assert len(report.segmented) == len(rgbs), report.problems
            key = f"segment_{precision}"
            results[key].append(len(rgbs) / report.seconds)
            cpu[key].append((time.process_time() - cpu_start) * 1000 / len(rgbs))
            devices[key] = report.device
            breakdown[key] = {
                k: round(v * 1000 / len(rgbs), 2) for k, v in sorted(clock.seconds.items())
            }
            breakdown[key]["wall"] = round(report.seconds * 1000 / len(rgbs), 2)
    project.close()
    median = {k: round(float(np.median(v)), 2) for k, v in results.items()}
    bare_ips = median["bare_onnx_fp32_session"]
    return {
        "n_images": len(rgbs),
        "tta": False,
        "images_per_s_median": median,
        "images_per_s_all_rounds": {k: [round(x, 2) for x in v] for k, v in results.items()},
        "cpu_ms_per_image_median": {k: round(float(np.median(v)), 1) for k, v in cpu.items()},
        "devices": devices,
        "ratio_segment_auto_over_bare_fp32": round(median["segment_auto"] / bare_ips, 2),
        "ratio_segment_int8_over_bare_fp32": round(median["segment_int8"] / bare_ips, 2),
        "ratio_segment_fp32_over_bare_fp32": round(median["segment_fp32"] / bare_ips, 2),
        "ms_per_image_by_stage_last_round": breakdown,
        "stage_note": (
            "stages overlap: segment computes two batches at once (each stage's time is summed "
            "over both threads) while saving the last one, so the stages add up to more than "
            "the wall time"
        ),
        "target": "segment end to end >= 1.5x the bare fp32 session",
    }


# --- driver ---------------------------------------------------------------------------------------
def _child(args: argparse.Namespace, what: str) -> dict:
    command = [
        sys.executable, __file__, "--child", what, "--workdir", str(args.workdir),
        "--batch", str(args.batch), "--size", str(args.size), "--batches", str(args.batches),
        "--threads", str(args.threads), "--rounds", str(args.rounds),
    ]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _load() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"loadavg_1_5_15": [round(one, 2), round(five, 2), round(fifteen, 2)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=6, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=64, help="images that segment masks")
    parser.add_argument("--train-steps", type=int, default=120, help="batches of 8 (once)")
    parser.add_argument("--workdir", type=Path, help="keep the model and project here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child in VARIANTS:
            result = measure_model(
                args.child, args.workdir, args.size, args.batch, args.batches, args.threads
            )
        elif args.child == "quality":
            result = measure_quality(args.workdir, args.size, args.threads)
        else:
            result = measure_end_to_end(
                args.workdir, args.size, args.batch, args.rounds, args.threads
            )
        print(json.dumps(result))
        return
    scratch = None
    if args.workdir is None:
        scratch = tempfile.TemporaryDirectory(prefix="bench-seg-speed-")
        args.workdir = Path(scratch.name)
    args.workdir.mkdir(parents=True, exist_ok=True)
    load_before = _load()
    info = setup(args.workdir, args.size, args.images, args.train_steps, args.threads)
    runs: dict[str, list[dict]] = defaultdict(list)
    for _ in range(args.rounds):
        for variant in VARIANTS:
            runs[variant].append(_child(args, variant))
    median = {v: float(np.median([r["ms_per_image"] for r in runs[v]])) for v in VARIANTS}
    fp32 = median["onnx_fp32"]
    record = info["precision_record"] or {}
    result = {
        "benchmark": "seg_speed",
        "batch": args.batch, "size": args.size, "rounds": args.rounds, "threads": args.threads,
        "cpu": _cpu_name(), "machine_load_before": load_before,
        "model": {"training": info["training"], "first_cpu_load_s": info["first_cpu_load_s"],
                  "auto_device": info["auto_device"]},
        "models": {v: min(runs[v], key=lambda r: r["ms_per_image"]) for v in VARIANTS},
        "median_ms_per_image": median,
        "median_images_per_s": {v: round(1000 / m, 2) for v, m in median.items()},
        "speedup_over_onnx_fp32_median": {v: round(fp32 / m, 2) for v, m in median.items()},
        "quality": _child(args, "quality"),
        "int8_gate": {k: record.get(k) for k in ("decision", "reason", "gate", "calibration")},
        "bf16": record.get("bf16"),
        "segment_end_to_end": _child(args, "end_to_end"),
        "machine_load_after": _load(),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if scratch is not None:
        scratch.cleanup()


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({len(os.sched_getaffinity(0))} cores)"
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
