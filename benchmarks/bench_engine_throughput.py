"""Engine throughput vs the plain rasterio I/O floor, in ONE process.

usage: python benchmarks/bench_engine_throughput.py [--scene PATH] [--repeats 2] [--cachemax 64]
                                                    [--variants raw,engine-raster,...] [--json OUT]

Variants (all on the same scene, same process, same GDAL_CACHEMAX, set in the environment
before rasterio is imported, exactly like ``GDAL_CACHEMAX=64 python raw_run.py``):

* ``raw``                  the loop of /work/shared/anchors/raw_run.py (reads bands green+nir
                           of every 512 block, NDWI > 0, writes a 1-band uint8 deflate mask);
* ``engine-raster``        ``segment(model="spectral", vectorize=False, raster_out=...)``:
                           probabilities as uint8 (p x 255) + internal nodata mask;
* ``engine-raster-binary`` same with ``threshold=0.5`` (0/1 mask like raw, no mask band);
* ``engine-vector``        raster (probabilities) + GeoPackage polygons (``out=...gpkg``);
* ``engine-vector-overlap64`` the same with 64 px tile overlap (the default before 2026-12-03;
                           the engine variants above use the default, 0 px for the per-pixel
                           spectral model);
* ``anchor-subprocess``    /work/shared/anchors/raw_run.py run as a subprocess under
                           /usr/bin/time -v (whole-process wall incl. imports, like the anchors).

Repeats alternate the order (forward, reversed, ...) and medians are reported with the
ratio raw / engine (>= 0.8 is the target). Wall seconds are measured around the call
(imports excluded, scene in page cache after the first pass for every variant alike).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ANCHOR_RAW = Path("/work/shared/anchors/raw_run.py")


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", default="/tmp/geopix-bench/scene_20000.tif")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--cachemax", default="64", help="GDAL_CACHEMAX for the whole process ('' = GDAL default)")
    ap.add_argument("--variants", default="raw,engine-raster,engine-raster-binary,engine-vector,anchor-subprocess")
    ap.add_argument("--workdir", default=None, help="where outputs go (default: a temp folder next to the scene)")
    ap.add_argument("--json", default=None, help="write all timings to this JSON file")
    return ap.parse_args()


ARGS = _parse()
if ARGS.cachemax:
    os.environ["GDAL_CACHEMAX"] = str(ARGS.cachemax)  # before rasterio/GDAL is loaded

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from rasterio.windows import Window  # noqa: E402

import geopix_tiles  # noqa: E402

GREEN, NIR, BLOCK = 2, 4, 512


def raw(scene: str, out: Path) -> dict:
    """Verbatim loop of anchors/raw_run.py."""
    with rasterio.open(scene) as src:
        profile = src.profile.copy()
        profile.update(count=1, dtype="uint8", compress="deflate", tiled=True,
                       blockxsize=BLOCK, blockysize=BLOCK, nodata=None,
                       photometric=None, interleave="band")
        profile.pop("photometric", None)
        with rasterio.open(out / "raw.tif", "w", **profile) as dst:
            for row in range(0, src.height, BLOCK):
                for col in range(0, src.width, BLOCK):
                    w = Window(col, row, min(BLOCK, src.width - col), min(BLOCK, src.height - row))
                    g, n = src.read((GREEN, NIR), window=w).astype(np.float32)
                    den = g + n
                    ndwi = np.divide(g - n, den, out=np.zeros_like(den), where=den != 0)
                    dst.write((ndwi > 0).astype(np.uint8), 1, window=w)
    return {}


def _engine(scene: str, out: Path, *, vector: bool, threshold: float | None, overlap: int | None = None) -> dict:
    for f in ("engine.tif", "engine.gpkg"):
        (out / f).unlink(missing_ok=True)
    _, stats = geopix_tiles.segment(
        scene, "water", model="spectral", raster_out=out / "engine.tif",
        out=(out / "engine.gpkg") if vector else None, vectorize=vector, threshold=threshold,
        tile=512, overlap=overlap, batch_size=8, return_stats=True, collect=False, overwrite=True,
    )
    return {"engine_seconds": round(stats.seconds, 3), "features": stats.features, "tiles": stats.tiles_done}


def anchor_subprocess(scene: str, out: Path) -> dict:
    env = dict(os.environ)
    cmd = ["/usr/bin/time", "-v", sys.executable, str(ANCHOR_RAW), scene, str(out / "anchor.tif")]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    rss = next(int(line.split()[-1]) for line in p.stderr.splitlines() if "Maximum resident set size" in line)
    wall = next(line.split()[-1] for line in p.stderr.splitlines() if "Elapsed (wall clock)" in line)
    m, s = wall.split(":")[-2:]
    return {"process_wall_s": round(int(m) * 60 + float(s), 2), "peak_rss_mib": round(rss / 1024)}


VARIANTS = {
    "raw": raw,
    "engine-raster": lambda s, o: _engine(s, o, vector=False, threshold=None),
    "engine-raster-binary": lambda s, o: _engine(s, o, vector=False, threshold=0.5),
    "engine-vector": lambda s, o: _engine(s, o, vector=True, threshold=None),
    "engine-vector-overlap64": lambda s, o: _engine(s, o, vector=True, threshold=None, overlap=64),
    "anchor-subprocess": anchor_subprocess,
}


def main() -> None:
    names = [v.strip() for v in ARGS.variants.split(",") if v.strip()]
    for n in names:
        if n not in VARIANTS:
            sys.exit(f"unknown variant {n}; known: {', '.join(VARIANTS)}")
    work = Path(ARGS.workdir or tempfile.mkdtemp(prefix="bench-engine-", dir=Path(ARGS.scene).parent))
    work.mkdir(parents=True, exist_ok=True)
    times: dict[str, list[float]] = {n: [] for n in names}
    extra: dict[str, list[dict]] = {n: [] for n in names}
    print(f"scene {ARGS.scene}  GDAL_CACHEMAX={os.environ.get('GDAL_CACHEMAX', '(default)')}  "
          f"repeats {ARGS.repeats}  order alternates", flush=True)
    for rep in range(ARGS.repeats):
        order = names if rep % 2 == 0 else names[::-1]
        for n in order:
            t0 = time.perf_counter()
            info = VARIANTS[n](ARGS.scene, work)
            dt = time.perf_counter() - t0
            times[n].append(dt)
            extra[n].append(info)
            print(f"  rep {rep} {n:22s} {dt:7.2f} s  {info}", flush=True)
    med = {n: statistics.median(v) for n, v in times.items()}
    print("\n| variant | runs (s) | median s | raw/engine |")
    print("|---|---|---|---|")
    for n in names:
        ratio = f"{med['raw'] / med[n]:.2f}" if "raw" in med and n.startswith("engine") else ""
        print(f"| {n} | {', '.join(f'{t:.2f}' for t in times[n])} | {med[n]:.2f} | {ratio} |")
    if ARGS.json:
        Path(ARGS.json).parent.mkdir(parents=True, exist_ok=True)
        Path(ARGS.json).write_text(json.dumps({
            "scene": ARGS.scene, "gdal_cachemax": os.environ.get("GDAL_CACHEMAX"), "repeats": ARGS.repeats,
            "times_s": times, "median_s": med, "extra": extra,
            "ratio_raw_over_engine": {n: med["raw"] / med[n] for n in names if n.startswith("engine") and "raw" in med},
            "versions": {"python": platform.python_version(), "numpy": np.__version__,
                         "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__},
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        }, indent=1))
    shutil.rmtree(work, ignore_errors=True) if ARGS.workdir is None else None


if __name__ == "__main__":
    main()
