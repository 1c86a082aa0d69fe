"""Peak RSS of the learned-model job on the CUDA build of torch against a CPU build, same script.

Issue 14 asks that `geopix-tiles segment --model default` stay <= 1 GB and flat in scene size.
`import torch` of the CUDA wheel our CI installs (torch 2.14.1+cu130, chosen for its matching
torchvision) is ~580 MB of RSS before any work; a CPU build is ~210 MB. The model-runtime
environment (`pip install -e ".[run]"`, no torchvision / timm / open_clip) can use a CPU build,
so this script runs the same CLI job with each interpreter, alternating, and compares peak
RSS, speed and the outputs (the rasters must be identical).

    bash benchmarks/make_run_venv.sh /tmp/geopix-run-venv          # CPU-build runtime venv
    python benchmarks/bench_runtime_rss.py --run-python /tmp/geopix-run-venv/bin/python \\
        [--scenes /tmp/geopix-bench/naip_mosaic_2048.tif,...] [--repeats 2] [--write benchmarks/results/runtime_rss.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio

from bench_learned_cli import PROMPTS, cli_run
from report import publish


def _torch_of(python: str) -> str:
    code = "import torch; print(torch.__version__)"
    return subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-python", required=True, help="python of the CPU-build runtime venv")
    ap.add_argument("--scenes", default="/tmp/geopix-bench/naip_mosaic_2048.tif,/tmp/geopix-bench/naip_mosaic_5000.tif")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--write")
    args = ap.parse_args()
    pythons = {"CUDA build": sys.executable, "CPU build": args.run_python}
    builds = {k: _torch_of(p) for k, p in pythons.items()}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for scene in args.scenes.split(","):
            res: dict[str, list[dict]] = {k: [] for k in pythons}
            for rep in range(args.repeats):
                order = list(pythons) if rep % 2 == 0 else list(pythons)[::-1]
                for k in order:
                    res[k].append(cli_run(scene, Path(tmp) / k.replace(" ", "_"), env, pythons[k]))
                    print(Path(scene).name, k, res[k][-1], flush=True)
            with rasterio.open(Path(tmp) / "CUDA_build" / "x.tif") as a, rasterio.open(Path(tmp) / "CPU_build" / "x.tif") as b:
                diff = int(np.abs(a.read().astype(np.int16) - b.read().astype(np.int16)).max())
            med = {k: {f: statistics.median(r[f] for r in v) for f in ("engine_rate", "rss_mb")} for k, v in res.items()}
            rows.append((Path(scene).name, res["CUDA build"][0]["polygons"], res["CPU build"][0]["polygons"], med, diff))
    lines = [f"### {dt.datetime.now():%Y-%m-%d %H:%M} - {platform.machine()}, {os.cpu_count()} cores, load {load:.2f} at start",
             f"CUDA build: torch {builds['CUDA build']}; CPU build: torch {builds['CPU build']}; "
             f"prompts {', '.join(PROMPTS)}; GeoPackage + probability raster; medians of {args.repeats} alternating runs",
             "",
             "| scene | polygons (CUDA / CPU build) | tiles/s CUDA build | tiles/s CPU build | peak RSS MB CUDA build "
             "| peak RSS MB CPU build | raster max abs difference |",
             "|---|---|---|---|---|---|---|"]
    for name, pa, pb, med, diff in rows:
        lines.append(f"| {name} | {pa} / {pb} | {med['CUDA build']['engine_rate']:.1f} | {med['CPU build']['engine_rate']:.1f} | "
                     f"{med['CUDA build']['rss_mb']:.0f} | {med['CPU build']['rss_mb']:.0f} | {diff} |")
    return publish("\n".join(lines) + "\n", args.write)


if __name__ == "__main__":
    raise SystemExit(main())
