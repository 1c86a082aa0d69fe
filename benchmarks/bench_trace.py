"""The vectorizer's tracer against GDAL's polygonizer on the strips the engine hands it.

For each mask raster given (a uint8 probability raster written by ``segment --raster``, or
the 4-band benchmark scene, whose NDWI > 0 is used), strips of ``--rows`` rows and one
panel (4096 columns) are thresholded, cut into the vectorizer's foreground boxes and
labelled exactly as ``StripVectorizer.add`` does; then, alternating, every box is traced by

* ``gdal``   ``rasterio.features.shapes(labels, mask=fg, connectivity=4)`` + ``shapely.geometry.shape``
             (the vectorizer before 2026-12-03);
* ``numpy``  ``geopix_tiles.outputs.trace.trace_labels`` (the vectorizer now).

Reports seconds per megapixel of box and the ratio, and checks that both give the same
polygons (normalized, exact) on every box.

    python benchmarks/bench_trace.py /tmp/geopix-bench/scene_20000.tif [more rasters] [--strips 12]
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.features import shapes
from rasterio.windows import Window

from geopix_tiles.outputs.trace import trace_labels
from geopix_tiles.outputs.vectorize import _foreground_boxes, _label_boxes


def strips(path: str, rows: int, count: int):
    with rasterio.open(path) as src:
        width = min(src.width, 4096)
        for i in range(count):
            y0 = i * rows
            if y0 + rows > src.height:
                break
            win = Window(0, y0, width, rows)
            if src.count >= 4:  # the benchmark scene: NDWI > 0 as the spectral model paints water
                g, n = (src.read(b, window=win).astype(np.float32) for b in (2, 4))
                yield (g - n) / np.maximum(g + n, 1) > 0
            else:
                yield src.read(1, window=win) >= 128


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("rasters", nargs="+")
    ap.add_argument("--rows", type=int, default=192)
    ap.add_argument("--strips", type=int, default=12)
    args = ap.parse_args()
    print(f"### {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC - {platform.machine()}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f} at start")
    print("| raster | strips | box Mpx | objects | GDAL s | numpy s | GDAL / numpy | same polygons |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.rasters:
        t = {"gdal": 0.0, "numpy": 0.0}
        mpx, objects, same, n = 0.0, 0, True, 0
        for fg in strips(path, args.rows, args.strips):
            n += 1
            boxes = _foreground_boxes(fg)
            labels, _ = _label_boxes(fg, boxes)
            for (r0, r1), (c0, c1) in boxes:
                lab, m = labels[r0:r1, c0:c1], fg[r0:r1, c0:c1]
                mpx += lab.size / 1e6
                results = {}
                for name in ("gdal", "numpy") if n % 2 else ("numpy", "gdal"):
                    s = time.perf_counter()
                    if name == "gdal":
                        got = {int(v): shapely.geometry.shape(g) for g, v in
                               shapes(lab, mask=m, connectivity=4, transform=Affine.translation(c0, r0))}
                    else:
                        values, polys = trace_labels(lab, c0, r0)
                        got = dict(zip(values.tolist(), polys))
                    t[name] += time.perf_counter() - s
                    results[name] = got
                objects += len(results["numpy"])
                same &= sorted(results["gdal"]) == sorted(results["numpy"]) and all(
                    shapely.normalize(results["gdal"][k]).equals_exact(shapely.normalize(p), 0)
                    for k, p in results["numpy"].items())
        print(f"| {os.path.basename(path)} | {n} | {mpx:.1f} | {objects} | {t['gdal']:.2f} | {t['numpy']:.2f} | "
              f"{t['gdal'] / max(t['numpy'], 1e-9):.1f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
