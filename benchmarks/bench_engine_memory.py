"""Peak RSS of the engine (and of the raw rasterio loop) in a fresh subprocess per run.

usage: python benchmarks/bench_engine_memory.py [--scenes A.tif,B.tif] [--cache default,64]
                                                [--variants raw,engine-raster,engine-vector,engine-vector-split]
                                                [--prompts water,vegetation] [--json OUT]

Each measurement spawns ``python bench_engine_memory.py --child VARIANT SCENE OUTDIR`` with
the GDAL_CACHEMAX of that row (``default`` = unset, GDAL then uses 5 % of RAM, which counts
in RSS) and reads the child's own ``ru_maxrss`` from ``os.wait4`` (not the cumulative
RUSAGE_CHILDREN maximum), plus whole-process wall time. Variants as in
bench_engine_throughput.py: ``raw`` (anchors/raw_run.py loop), ``engine-raster``
(probability raster only), ``engine-vector`` (raster + GeoPackage), ``engine-vector-split``
(the same with ``split_objects=True``). ``--prompts`` (default ``water``) are the spectral model's.
Target: peak <= 1 GiB on 20k, and 20k within 10 % of 5k (flat in scene size).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def child(variant: str, scene: str, out: str) -> None:
    out = Path(out)
    if variant == "raw":
        import runpy  # noqa: PLC0415
        # the anchor script itself: one block in memory at a time
        sys.argv = ["raw_run.py", scene, str(out / "raw.tif")]
        runpy.run_path("/work/shared/anchors/raw_run.py", run_name="__main__")
        return
    import geopix_tiles  # noqa: PLC0415
    vector = variant.startswith("engine-vector")
    prompts = os.environ.get("GEOPIX_BENCH_PROMPTS", "water").split(",")
    geopix_tiles.segment(scene, prompts, model="spectral", raster_out=out / "engine.tif",
                         out=(out / "engine.gpkg") if vector else None, vectorize=vector,
                         tile=512, overlap=64, batch_size=8, collect=False, overwrite=True,
                         split_objects=variant == "engine-vector-split")


def measure(variant: str, scene: str, cache: str, prompts: str = "water") -> dict:
    env = dict(os.environ, GEOPIX_BENCH_PROMPTS=prompts)
    env.pop("GDAL_CACHEMAX", None)
    if cache != "default":
        env["GDAL_CACHEMAX"] = cache
    with tempfile.TemporaryDirectory(prefix="bench-mem-", dir=Path(scene).parent) as out:
        t0 = time.perf_counter()
        p = subprocess.Popen([sys.executable, str(HERE), "--child", variant, scene, out], env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    return {"variant": variant, "scene": Path(scene).name, "prompts": prompts, "gdal_cachemax": cache, "rc": rc,
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1), "process_wall_s": round(wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=3, metavar=("VARIANT", "SCENE", "OUT"))
    ap.add_argument("--scenes", default="/tmp/geopix-bench/scene_5000.tif,/tmp/geopix-bench/scene_20000.tif")
    ap.add_argument("--cache", default="default,64")
    ap.add_argument("--variants", default="raw,engine-raster,engine-vector")
    ap.add_argument("--prompts", default="water", help="spectral prompts, comma-separated")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    rows = []
    print("| variant | scene | GDAL_CACHEMAX | peak RSS MiB | process wall s |\n|---|---|---|---|---|", flush=True)
    for cache in a.cache.split(","):
        for variant in a.variants.split(","):
            for scene in a.scenes.split(","):
                r = measure(variant, scene, cache, a.prompts)
                rows.append(r)
                print(f"| {variant} | {r['scene']} | {cache} | {r['peak_rss_mib']:.0f} | {r['process_wall_s']:.2f} |"
                      + ("" if r["rc"] == 0 else f" rc={r['rc']}"), flush=True)
    print()
    for cache in a.cache.split(","):
        for variant in a.variants.split(","):
            sel = [r for r in rows if r["variant"] == variant and r["gdal_cachemax"] == cache]
            if len(sel) == 2:
                print(f"{variant} cache={cache}: {sel[1]['scene']} / {sel[0]['scene']} peak = "
                      f"{sel[1]['peak_rss_mib'] / sel[0]['peak_rss_mib']:.2f}x")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "date": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1))


if __name__ == "__main__":
    main()
