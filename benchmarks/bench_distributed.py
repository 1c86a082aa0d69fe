"""1 vs 2 dask.distributed worker processes on this machine, CPU-bound segmenter.

usage: python benchmarks/bench_distributed.py [--size 2048] [--repeats 2] [--json OUT]

The segmenter does real CPU work per tile (repeated 5x5 box filters in numpy, ~GIL-bound
between calls), so a second worker process can only help if the engine keeps both busy.
Baseline: the same run in-process (no cluster) in the same script. Peak RSS per worker is
read from each worker process with getrusage.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

import geopix_tiles
from geopix_tiles.scale.distributed import DaskRunner, make_client


class BusyNDWI:
    band_roles = ("green", "nir")
    tile_size = 256
    scaling = "reflectance"

    def __init__(self, work: int = 60):
        self.work = work

    def __repr__(self):
        return f"BusyNDWI({self.work})"

    def check_prompts(self, prompts):
        pass

    def predict(self, tiles, prompts):
        g, n = tiles[:, 0], tiles[:, 1]
        p = np.clip(0.5 + (g - n) / (g + n + 1e-6), 0, 1)
        for _ in range(self.work):
            p = ndimage.uniform_filter(p, size=(1, 5, 5))
        return np.repeat(p[:, None], len(prompts), axis=1).astype(np.float32)


def make_scene(path: Path, size: int) -> None:
    yy, xx = np.mgrid[0:size, 0:size]
    wave = (np.sin(xx / 97.0) + np.cos(yy / 73.0)) > 0.3
    data = np.zeros((4, size, size), np.uint8)
    data[0], data[2] = 60, 50
    data[1] = np.where(wave, 110, 30)
    data[3] = np.where(wave, 20, 120)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=4, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 4000000, 1, 1), tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate") as dst:
        dst.write(data)
        for i, d in enumerate(["red", "green", "blue", "nir"], 1):
            dst.set_band_description(i, d)


def run(scene: Path, out: Path, remote) -> float:
    t = time.perf_counter()
    geopix_tiles.segment(scene, "water", model=BusyNDWI(), out=out.with_suffix(".gpkg"), raster_out=out,
                         tile=256, overlap=32, batch_size=4, overwrite=True, remote=remote)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="geopix-dist-"))
    scene = work / "scene.tif"
    make_scene(scene, args.size)
    results: dict = {"machine": f"{platform.node()} {platform.processor() or platform.machine()}",
                     "cpus": len(__import__("os").sched_getaffinity(0)), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                     "size": args.size, "runs": {}}
    results["runs"]["in-process"] = [run(scene, work / "local.tif", None) for _ in range(args.repeats)]
    rss = {}
    for n in (1, 2):
        client = make_client(workers=n)
        remote = DaskRunner(client, BusyNDWI())
        client.run(lambda: None)
        results["runs"][f"{n} worker(s)"] = [run(scene, work / f"w{n}.tif", remote) for _ in range(args.repeats)]
        rss[n] = sorted(v / 1024 for v in client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values())
        cluster = client.cluster
        client.close()
        cluster.close()
    with rasterio.open(work / "local.tif") as a, rasterio.open(work / "w2.tif") as b:
        results["identical_outputs"] = bool(np.array_equal(a.read(), b.read()))
    med = {k: statistics.median(v) for k, v in results["runs"].items()}
    results["median_s"] = med
    results["speedup_2_vs_1"] = med["1 worker(s)"] / med["2 worker(s)"]
    results["worker_peak_rss_mib"] = rss
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
