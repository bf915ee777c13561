"""Crash check of painting: kill the workbench with SIGKILL while a person paints (a script).

Each run copies a small synthetic project, starts the workbench on it in a child process (under
the X display this script runs on, e.g. ``xvfb-run``), paints a stroke every ``--interval``
seconds through the mask layer (``Labels.paint`` as napari's brush does, one undo step and one
``paint`` event per stroke), and kills the child with SIGKILL at a random moment. It then
reopens the project and checks:

* the project opens and SQLite's ``integrity_check`` says ok;
* every mask version's file is there with its recorded hash (none missing or changed);
* which strokes the saved mask holds: every stroke the child had finished (it writes one line
  per stroke, unbuffered, so the lines survive the kill) and the saved mask lacks is lost, with
  its age at the kill.

The target: nothing lost but the strokes of the last maximum wait (2 s: at most 3 strokes at
0.7 s), and no corruption. ``--max-wait-ms 0`` runs the child without a maximum wait (the
autosave before it had one), for comparison. One JSON object on standard output.

Run e.g. ``nice -n 19 xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python
tests/benchmarks/bench_paint_kill.py --runs 12``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

#: The painted image: strokes are small squares on a grid, stroke ``i`` at cell ``i``.
SIZE, STEP, BRUSH = 160, 14, 5
GRID = (SIZE - STEP) // STEP
NEVER_MS = 24 * 3600 * 1000


def stroke_centre(i: int) -> tuple[int, int]:
    """Where stroke ``i`` is painted (row, column); strokes never overlap."""
    return STEP + STEP * (i // GRID), STEP + STEP * (i % GRID)


def stroke_label(i: int) -> int:
    """Cytoplasm and nucleus in turn."""
    return 1 + i % 2


# -- the child: a workbench that paints until it is killed ------------------------------------
def child(project: Path, log_path: Path, interval_s: float, delay_ms: int, max_wait_ms: int) -> int:
    import napari
    from qtpy.QtCore import QTimer

    from cytoreview.gui.annotate_panel import MASK_LAYER
    from cytoreview.gui.app import build_workbench

    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def note(text: str) -> None:  # one write(2) per line: nothing waits in a buffer
        os.write(fd, f"{text}\n".encode())

    viewer = napari.Viewer(show=True)
    wb = build_workbench(viewer, project, actor="bench", autosave_delay_ms=delay_ms,
                         autosave_max_wait_ms=max_wait_ms or NEVER_MS)  # fmt: skip
    labels = viewer.layers[MASK_LAYER]  # the workbench opened its first image
    labels.brush_size = BRUSH
    count = {"i": 0}

    def paint() -> None:
        i = count["i"]
        if i >= GRID * GRID:
            return
        saving = wb.autosave._inflight is not None  # a save being written on the worker
        start = time.perf_counter()
        labels.selected_label = stroke_label(i)
        with labels.block_history():  # one stroke: one undo step, one paint event
            labels.paint(stroke_centre(i), stroke_label(i))
        handler_ms = (time.perf_counter() - start) * 1000
        count["i"] = i + 1
        note(f"stroke {i} {time.monotonic():.4f} {handler_ms:.3f} {int(saving)}")

    timer = QTimer()
    timer.setInterval(round(interval_s * 1000))
    timer.timeout.connect(paint)
    note(f"ready {time.monotonic():.4f} {wb.annotate_panel.image_id}")
    timer.start()
    napari.run()
    return 0


# -- the parent: kill, reopen, count -----------------------------------------------------------
def make_template(root: Path) -> Path:
    from cytoreview.data.synthetic import synth_dataset
    from cytoreview.storage.project import Project
    from cytoreview.workflows.importing import import_images
    from tests.conftest import run_job, write_rgb_png

    for name, sample in synth_dataset(3, seed=7, size_range=(SIZE, SIZE)):
        write_rgb_png(root / "src" / sample.label / f"{name}.png", sample.image)
    with Project.init(root / "template", actor="bench") as project:
        run_job(import_images(project, root / "src", actor="bench"))
    return root / "template"


def check(
    project_root: Path, image_id: int, strokes: list[tuple[int, float]], killed: float
) -> dict:
    """Open the killed project; integrity, mask files, strokes kept and lost."""
    from cytoreview.storage.project import Project

    result: dict = {"opens": False, "integrity": None, "bad_versions": 0}
    try:
        project = Project.open(project_root)
    except Exception as exc:  # noqa: BLE001 - any failure to open is what this counts
        result["error"] = f"{type(exc).__name__}: {exc}"
        return result
    with project:
        result["opens"] = True
        result["integrity"] = str(project.catalog.query("PRAGMA integrity_check")[0][0])
        versions = project.mask_versions(image_id)
        result["versions"] = len(versions)
        result["bad_versions"] = sum(project.read_mask_version(v) is None for v in versions)
        found = project.current_mask(image_id)
    mask = found[1] if found is not None else None
    kept = [i for i, _ in strokes if mask is not None
            and mask[stroke_centre(i)] == stroke_label(i)]  # fmt: skip
    lost = [(i, t) for i, t in strokes if i not in set(kept)]
    result.update(
        strokes=len(strokes),
        lost=len(lost),
        # Saved strokes are always the first ones: a save writes everything painted so far.
        kept_is_prefix=kept == list(range(len(kept))),
        oldest_lost_age_s=round(max((killed - t for _, t in lost), default=0.0), 2),
    )
    return result


def run_once(
    template: Path, work: Path, n: int, args: argparse.Namespace, rng: random.Random
) -> dict:
    project = work / f"run{n:03d}"
    shutil.copytree(template, project)
    log = work / f"run{n:03d}.log"
    cmd = [sys.executable, __file__, "--child", str(project), str(log), str(args.interval),
           str(args.delay_ms), str(args.max_wait_ms)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + args.start_timeout
    ready = None
    while ready is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
        lines = log.read_text().splitlines() if log.exists() else []
        ready = next((ln.split() for ln in lines if ln.startswith("ready")), None)
    if ready is None:
        proc.kill()
        _, err = proc.communicate()
        return {"run": n, "error": "the workbench did not start", "stderr": err.decode()[-2000:]}
    wait = rng.uniform(args.kill_after_min, args.kill_after_max)
    time.sleep(wait)
    os.kill(proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    proc.wait()
    strokes, handler_ms = [], []
    for line in log.read_text().splitlines():
        parts = line.split()
        if parts[0] == "stroke" and len(parts) == 5:
            strokes.append((int(parts[1]), float(parts[2])))
            if int(parts[1]) > 0:  # the first stroke also warms napari's painting up
                handler_ms.append((float(parts[3]), parts[4] == "1"))
    result = {"run": n, "killed_after_s": round(wait, 2)}
    result.update(check(project, int(ready[2]), strokes, killed))
    result["stroke_ms"] = handler_ms
    if not args.keep:
        shutil.rmtree(project, ignore_errors=True)
    return result


def _stats(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(values), "median": round(statistics.median(values), 2),
            "p95": round(p95, 2), "max": round(ordered[-1], 2)}  # fmt: skip


def summarise(runs: list[dict], args: argparse.Namespace) -> dict:
    started = [r for r in runs if r.get("error") != "the workbench did not start"]
    corrupt = [r for r in started if not r.get("opens") or r.get("integrity") != "ok"
               or r.get("bad_versions") or not r.get("kept_is_prefix", True)]  # fmt: skip
    lost = [r["lost"] for r in started if "lost" in r]
    return {
        "interval_s": args.interval,
        "delay_ms": args.delay_ms,
        "max_wait_ms": args.max_wait_ms or None,
        "kills": len(started),
        "did_not_start": len(runs) - len(started),
        "corruptions": len(corrupt),
        "strokes_painted": sum(r.get("strokes", 0) for r in started),
        "strokes_lost": sum(lost),
        "lost_per_kill": lost,
        "kills_losing_more_than_3": sum(n > 3 for n in lost),
        "oldest_lost_age_s_max": max((r.get("oldest_lost_age_s", 0) for r in started), default=0),
        # Time of one stroke (napari's paint plus the workbench's paint-event handler, which
        # schedules the save), while a save was being written or not; the first stroke of
        # each run (napari warming up) is left out.
        "stroke_ms": {
            "saving": _stats([ms for r in started for ms, s in r.get("stroke_ms", []) if s]),
            "not_saving": _stats(
                [ms for r in started for ms, s in r.get("stroke_ms", []) if not s]
            ),
        },
        "lost_median": statistics.median(lost) if lost else None,
        "runs": [
            {k: v for k, v in r.items() if k != "stroke_ms"}
            for r in runs
            if args.verbose or r in corrupt or "error" in r
        ],
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        project, log, interval, delay, max_wait = sys.argv[2:7]
        return child(Path(project), Path(log), float(interval), int(delay), int(max_wait))
    from cytoreview.gui.autosave import DEFAULT_DELAY_MS, DEFAULT_MAX_WAIT_MS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=12, help="kills (default 12)")
    parser.add_argument("--interval", type=float, default=0.7, help="seconds between strokes")
    parser.add_argument("--kill-after-min", type=float, default=3.0, help="seconds of painting")
    parser.add_argument("--kill-after-max", type=float, default=10.0, help="seconds of painting")
    parser.add_argument("--delay-ms", type=int, default=DEFAULT_DELAY_MS, help="autosave pause")
    parser.add_argument("--max-wait-ms", type=int, default=DEFAULT_MAX_WAIT_MS,
                        help="autosave maximum wait (0: none, as before it existed)")  # fmt: skip
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds to start")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep the projects and logs here")
    parser.add_argument("--keep", action="store_true", help="keep every killed project")
    parser.add_argument("--verbose", action="store_true", help="every run in the output")
    args = parser.parse_args()
    if not os.environ.get("DISPLAY") and os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        parser.error("needs a display: run it under xvfb-run")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="paint-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    template = make_template(work / "data")
    rng = random.Random(args.seed)
    runs = []
    for n in range(args.runs):
        runs.append(run_once(template, work, n, args, rng))
        brief = {k: v for k, v in runs[-1].items() if k != "stroke_ms"}
        print(json.dumps(brief), file=sys.stderr, flush=True)
    print(json.dumps(summarise(runs, args), indent=2))
    if args.workdir is None and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
