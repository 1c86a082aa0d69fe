"""Generate the synthetic benchmark scenes (same recipe as /work/shared/anchors).

usage: python benchmarks/make_scene.py [OUT_DIR] [--sizes 20000,5000] [--pattern fields|spots]

Writes OUT_DIR/scene_20000.tif and OUT_DIR/scene_5000.tif (default OUT_DIR /tmp/geopix-bench):
4-band uint8 (descriptions red, green, blue, nir), EPSG:32633, 0.5 m pixels, tiled 512x512,
deflate. Pixels are a smooth sum of sinusoids: a large-scale field ``w`` decides
water-like regions (green > nir where w > 0) plus a small fine-scale ripple so the file
compresses like imagery rather than like a constant. Written block by block; only one
512x512x4 block is ever in memory. Deterministic (no RNG).

``--pattern spots`` (files ``spots_SIZE.tif``) replaces the large field by small water-like spots,
two per 40 x 40 px cell (~80 px each): 31,250 objects at 5k and 500,000 at 20k, for the memory
of the vector side when a scene holds hundreds of thousands of small objects (issue 14).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from geopix_tiles.io.gdal_cache import block_cache

BLOCK = 512


def block_pixels(y0: int, x0: int, h: int, w: int, pattern: str = "fields") -> np.ndarray:
    y = np.arange(y0, y0 + h, dtype=np.float32)[:, None]
    x = np.arange(x0, x0 + w, dtype=np.float32)[None, :]
    tau = np.float32(2 * np.pi)
    if pattern == "spots":  # small separate spots (both cosines near +-1), land between them
        field = 2.5 * (np.cos(tau * x / 40.0) * np.cos(tau * y / 40.0) - 0.6)
    else:  # large-scale "land/water" field, ~1-3 km features at 0.5 m
        field = (np.sin(tau * x / 3100.0 + 0.3) * np.sin(tau * y / 2700.0 + 1.1)
                 + 0.45 * np.sin(tau * (x + 0.6 * y) / 1700.0)
                 - 0.15)
    ripple = np.sin(tau * x / 37.0) * np.cos(tau * y / 41.0) * 0.6  # fine smooth texture
    shade = 0.5 * np.sin(tau * (x - y) / 900.0)
    red = 90 + 25 * shade - 20 * field + 1.0 * ripple
    green = 100 + 10 * shade + 35 * field + 1.0 * ripple
    blue = 95 + 15 * shade + 25 * field + 1.0 * ripple
    nir = 100 + 20 * shade - 35 * field + 1.0 * ripple
    out = np.stack([red, green, blue, nir])
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def make_scene(path: Path, size: int, pattern: str = "fields") -> None:
    profile = dict(
        driver="GTiff", width=size, height=size, count=4, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(500000.0, 5000000.0, 0.5, 0.5), tiled=True, blockxsize=BLOCK,
        blockysize=BLOCK, compress="deflate", interleave="pixel", photometric="minisblack",
        bigtiff="IF_SAFER",
    )
    tmp = path.with_suffix(".partial.tif")
    with block_cache(64):
        with rasterio.open(tmp, "w", **profile) as dst:
            for i, name in enumerate(("red", "green", "blue", "nir"), start=1):
                dst.set_band_description(i, name)
            for row in range(0, size, BLOCK):
                for col in range(0, size, BLOCK):
                    h, w = min(BLOCK, size - row), min(BLOCK, size - col)
                    dst.write(block_pixels(row, col, h, w, pattern), window=Window(col, row, w, h))
    tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default="/tmp/geopix-bench")
    ap.add_argument("--sizes", default="20000,5000")
    ap.add_argument("--force", action="store_true", help="regenerate existing scenes")
    ap.add_argument("--pattern", choices=("fields", "spots"), default="fields")
    a = ap.parse_args()
    out = Path(a.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for size in (int(s) for s in a.sizes.split(",")):
        path = out / (f"scene_{size}.tif" if a.pattern == "fields" else f"spots_{size}.tif")
        if path.exists() and not a.force:
            print(f"{path} exists ({path.stat().st_size / 1e6:.1f} MB), keeping it")
            continue
        t0 = time.perf_counter()
        make_scene(path, size, a.pattern)
        print(f"{path}: {size}x{size}x4 uint8, {path.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
