"""Auto-mask throughput: ONNX Runtime against torch eager, in one run, plus peak memory.

Each engine runs in its own child process (so peak memory is its own), on the same random
256 px batches, alternating rounds so that machine noise hits both alike.

    .venv/bin/python tests/benchmarks/bench_seg_speed.py [--batch 8] [--rounds 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def measure(engine: str, batch: int, size: int, batches: int, device: str) -> dict:
    import torch

    from cytoreview.inference.onnx_export import export_onnx
    from cytoreview.inference.predictors import OnnxPredictor, TorchPredictor
    from cytoreview.models.segmenters import build_unet

    torch.manual_seed(0)
    model = build_unet("resnet18").eval()
    if engine == "onnx":
        predictor = OnnxPredictor(export_onnx(model, size), device=device)
    else:
        predictor = TorchPredictor(model, device=device)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    predictor(data)  # warm-up: allocations, kernel selection
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        predictor(data)
        times.append(time.perf_counter() - start)
    per_image = float(np.median(times)) / batch
    return {
        "engine": engine,
        "device": predictor.device,
        "ms_per_image": round(per_image * 1000, 2),
        "images_per_s": round(1 / per_image, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=6, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--child", choices=["onnx", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.batch, args.size, args.batches, args.device)))
        return
    runs: dict[str, list[dict]] = {"onnx": [], "torch": []}
    for _ in range(args.rounds):
        for engine in ("torch", "onnx"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    engine,
                    "--batch",
                    str(args.batch),
                    "--size",
                    str(args.size),
                    "--batches",
                    str(args.batches),
                    "--device",
                    args.device,
                ],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            runs[engine].append(json.loads(out.strip().splitlines()[-1]))
    best = {e: min(r, key=lambda x: x["ms_per_image"]) for e, r in runs.items()}
    median = {e: float(np.median([x["ms_per_image"] for x in r])) for e, r in runs.items()}
    print(
        json.dumps(
            {
                "benchmark": "seg_speed",
                "batch": args.batch,
                "size": args.size,
                "rounds": args.rounds,
                "onnx": best["onnx"],
                "torch": best["torch"],
                "median_ms_per_image": median,
                "speedup_onnx_over_torch_median": round(median["torch"] / median["onnx"], 2),
                "speedup_onnx_over_torch_best": round(
                    best["torch"]["ms_per_image"] / best["onnx"]["ms_per_image"], 2
                ),
                "target": "onnx >= 1.5x torch eager on CPU",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
