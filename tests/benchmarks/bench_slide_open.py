"""Opening a whole slide lazily: open time, region reads and memory, on a synthetic slide.

A synthetic slide (:class:`cytoreview.data.synthetic_slide.SyntheticSlide`: a grid of synthetic
Pap fields, some bare glass) is written tile by tile as a pyramidal OME-TIFF (and, with
``--aperio``, an Aperio-style SVS, also read through OpenSlide), then opened in a fresh process
per reader: the time to open,
to read a 1024 x 1024 region at level 0 and the whole smallest level, and the process's peak
memory against the size level 0 would take decoded. Prints JSON.

    .venv/bin/python tests/benchmarks/bench_slide_open.py [--side 20000] [--keep DIR] [--aperio]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cytoreview.data.synthetic_slide import SyntheticSlide
from cytoreview.storage.slides import write_tiled_pyramid

#: What the fresh process measures (its peak RSS is the number that matters).
PROBE = r"""
import json, sys, time

def hwm_mb():
    # VmHWM belongs to this process's own memory map; getrusage's ru_maxrss would carry the
    # parent's high-water mark across fork + exec on Linux.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

t0 = time.perf_counter()
from cytoreview.storage.slides import _open_openslide, open_slide
t_import = time.perf_counter() - t0
base = hwm_mb()
t0 = time.perf_counter()
from pathlib import Path
path = Path(sys.argv[1])
slide = _open_openslide(path) if sys.argv[2:] == ["openslide"] else open_slide(path)
t_open = time.perf_counter() - t0
h, w = slide.levels[0].height, slide.levels[0].width
t0 = time.perf_counter()
region = slide.read_region(0, h // 2, w // 2, 1024, 1024)
t_region = time.perf_counter() - t0
t0 = time.perf_counter()
overview = slide.read_region(len(slide.levels) - 1, 0, 0, 10**6, 10**6)
t_overview = time.perf_counter() - t0
peak = hwm_mb()
print(json.dumps({
    "reader": slide.reader, "levels": [[lv.height, lv.width] for lv in slide.levels],
    "pixel_size_um": slide.pixel_size_um, "import_s": round(t_import, 3),
    "open_s": round(t_open, 3), "region_1024_s": round(t_region, 3),
    "overview_s": round(t_overview, 3), "overview_shape": list(overview.shape),
    "rss_before_open_mb": round(base, 1), "rss_peak_mb": round(peak, 1),
    "level0_decoded_mb": round(h * w * 3 / 2**20, 1),
}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=20_000, help="slide side in px")
    parser.add_argument("--keep", type=Path, help="write (or reuse) the slides in this folder")
    parser.add_argument("--aperio", action="store_true", help="also an Aperio-style .svs")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="cytoreview-slide-"))
    source = SyntheticSlide(args.side, args.side, seed=0, field=512)
    levels = 1
    while max(source.level_shape(levels - 1)) > 1024:
        levels += 1
    out: dict = {"side": args.side, "levels": levels, "slides": {}}
    flavours = {"ome": "synthetic.ome.tif", **({"aperio": "synthetic.svs"} if args.aperio else {})}
    for flavour, name in flavours.items():
        path = folder / f"{args.side}-{name}"
        written = None
        if not path.exists():
            start = time.perf_counter()
            write_tiled_pyramid(path, source, levels=levels, tile=512, pixel_size_um=0.25,
                                flavour=flavour)  # fmt: skip
            written = round(time.perf_counter() - start, 1)
        readers = ["default", "openslide"] if flavour == "aperio" else ["default"]
        for reader in readers:  # the SVS also through OpenSlide, as a vendor format is read
            probe = subprocess.run([sys.executable, "-c", PROBE, str(path), reader],
                                   capture_output=True, text=True, check=True)  # fmt: skip
            result = json.loads(probe.stdout)
            result.update(write_s=written, file_mb=round(path.stat().st_size / 2**20, 1))
            out["slides"][flavour if reader == "default" else f"{flavour}-openslide"] = result
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
