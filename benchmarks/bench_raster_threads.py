"""GDAL compression threads of the probability GeoTIFF: ALL_CPUS vs 1, the whole CLI job.

Why: with ``NUM_THREADS=ALL_CPUS`` GDAL 3.10's multi-threaded GeoTIFF compression prints
``ERROR 1: _TIFFVSetField ... "ExtraSamples"`` from its in-memory job files in most runs with
several bands (the data are not affected). One thread avoids it; this measures what it costs
(not adopted yet: see ``results/raster_threads.md``).
Each run is its own process, the two settings interleaved, GeoPackage + raster, 4 prompts,
``--model default``; the ratio is single-threaded wall time / multi-threaded.

    python benchmarks/bench_raster_threads.py SCENE.tif [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = r'''
import sys, time, tempfile, os
import geopix_tiles
from geopix_tiles.outputs import raster_sink as rs
nt = sys.argv[1]
orig = rs.RasterSink.profile
def prof(self):
    p = orig(self); p["num_threads"] = nt if nt == "ALL_CPUS" else int(nt); return p
rs.RasterSink.profile = prof
d = tempfile.mkdtemp()
t = time.perf_counter()
geopix_tiles.segment(sys.argv[2], ["water", "vegetation", "buildings", "roads"], model="default",
                     out=os.path.join(d, "o.gpkg"), raster_out=os.path.join(d, "o.tif"), progress=False)
print(time.perf_counter() - t)
'''


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scene")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    times: dict[str, list[float]] = {"ALL_CPUS": [], "1": []}
    errors: dict[str, int] = {"ALL_CPUS": 0, "1": 0}
    for _ in range(args.repeats):
        for nt in times:
            out = subprocess.run([sys.executable, "-c", RUN, nt, args.scene], env=env, capture_output=True, text=True,
                                 check=True)
            times[nt].append(float(out.stdout.strip().splitlines()[-1]))
            errors[nt] += out.stderr.count("ExtraSamples")
    mean = {k: sum(v) / len(v) for k, v in times.items()}
    lines = [f"| {Path(args.scene).name} | {k} | " + ", ".join(f"{t:.2f}" for t in v) + f" | {mean[k]:.2f} | "
             f"{errors[k]} |" for k, v in times.items()]
    lines.append(f"\nratio 1 thread / ALL_CPUS: {mean['1'] / mean['ALL_CPUS']:.3f} "
                 f"({time.strftime('%Y-%m-%d %H:%M')}, {platform.node()}, {os.cpu_count()} CPUs, "
                 f"load {os.getloadavg()[0]:.2f})")
    print("| scene | NUM_THREADS | wall s per run | mean | ExtraSamples errors |\n|---|---|---|---|---|")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
