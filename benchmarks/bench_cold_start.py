"""Cold start: the whole CLI on a 256 px scene with the default model, against import floors.

Issue 14: "cold start of the whole CLI on a 256 px scene <= 4 s" (it was 14 s, 9.5 s of it
``import geopix_tiles.model`` pulling in transformers' model stack). Each command runs in a
fresh process under ``/usr/bin/time``, in interleaved repeats; medians of wall time and peak
RSS are reported, with the floors measured in the same script:

* ``import torch``                  what any learned-model run pays first;
* ``import torch, transformers.modeling_utils, timm``  what the old inference path imported;
* ``import geopix_tiles.model``     the package as a notebook imports it;
* ``segment 256 px``                ``geopix-tiles segment crop.tif -o x.gpkg --raster x.tif
                                     --model default -p water -p vegetation -p buildings -p roads``
                                     on a 256 x 256 crop of the shipped NAIP sample.

    python benchmarks/bench_cold_start.py [--repeats 5] [--write benchmarks/results/cold_start.md]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from report import publish

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ["water", "vegetation", "buildings", "roads"]


def _crop(path: Path) -> None:
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(ROOT / "geopix_tiles" / "data" / "naip_sample.tif") as src:
        w = Window(300, 200, 256, 256)
        profile = src.profile | {"width": 256, "height": 256, "transform": src.window_transform(w), "tiled": False}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(src.read(window=w))
            dst.descriptions = src.descriptions


def _timed(cmd: list[str], env: dict) -> tuple[float, float]:
    out = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *cmd], capture_output=True, text=True, env=env, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(out.stderr[-2000:])
    wall, rss = re.search(r"TIME ([\d.]+) (\d+)", out.stderr).groups()
    return float(wall), int(rss) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--write")
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    py = sys.executable
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        crop = Path(tmp) / "crop.tif"
        _crop(crop)
        out = Path(tmp) / "out"
        jobs = {
            "import torch": [py, "-c", "import torch"],
            "import torch, transformers.modeling_utils, timm": [py, "-c",
                                                               "import torch, transformers.modeling_utils, timm"],
            "import geopix_tiles.model": [py, "-c", "import geopix_tiles.model"],
            "segment 256 px (4 prompts, GeoPackage + raster)": [
                py, "-m", "geopix_tiles", "segment", str(crop), "-o", str(out / "x.gpkg"), "--raster",
                str(out / "x.tif"), "--model", "default", "--quiet", *[a for p in PROMPTS for a in ("-p", p)]],
        }
        res: dict[str, list[tuple[float, float]]] = {k: [] for k in jobs}
        for r in range(args.repeats):
            for name in (list(jobs) if r % 2 == 0 else list(reversed(jobs))):
                if out.exists():
                    shutil.rmtree(out)
                out.mkdir()
                res[name].append(_timed(jobs[name], env))
                print(name, res[name][-1], flush=True)
    floor = statistics.median(w for w, _ in res["import torch"])
    lines = [f"### {dt.datetime.now():%Y-%m-%d %H:%M} - {platform.machine()}, {os.cpu_count()} cores, "
             f"load {load0:.2f} at start, {args.repeats} interleaved repeats",
             "", "| command | wall s (median) | runs | vs `import torch` | peak RSS MB |", "|---|---|---|---|---|"]
    for name, vals in res.items():
        w = statistics.median(v[0] for v in vals)
        lines.append(f"| `{name}` | {w:.2f} | {', '.join(f'{v[0]:.2f}' for v in vals)} | {w / floor:.2f} | "
                     f"{statistics.median(v[1] for v in vals):.0f} |")
    text = "\n".join(lines) + "\n"
    return publish(text, args.write)


if __name__ == "__main__":
    raise SystemExit(main())
