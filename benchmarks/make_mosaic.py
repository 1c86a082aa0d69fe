"""A large scene of real imagery for the learned-model benchmarks: NAIP dates tiled side by side.

usage: python benchmarks/make_mosaic.py [OUT_DIR] [--sizes 2048,5000]

The sinusoid scenes of ``make_scene.py`` are fine for the spectral engine, but a learned
model's outputs (and so the polygons the vector side must hold) depend on real texture. This
tiles the ten NAIP dates of ``../shared/data/naip`` (934 x 723 px, 4 bands, public domain)
row by row into an N x N GeoTIFF (alternate copies mirrored so edges meet), with the first
date's CRS and pixel size, band descriptions red/green/blue/nir, tiled 512, deflate. Written
block-row by block-row: memory stays at one strip.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

NAIP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "naip"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="/tmp/geopix-bench")
    ap.add_argument("--sizes", default="2048,5000")
    ap.add_argument("--naip", default=str(NAIP))
    args = ap.parse_args()
    files = sorted(Path(args.naip).glob("*.tif"))
    if not files:
        raise SystemExit(f"no NAIP scenes in {args.naip}; pass --naip")
    scenes = []
    for f in files:
        with rasterio.open(f) as src:
            scenes.append(src.read()[:, :720, :930])
            crs, t = src.crs, src.transform
    h, w = scenes[0].shape[1:]
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for n in (int(s) for s in args.sizes.split(",")):
        path = out_dir / f"naip_mosaic_{n}.tif"
        profile = dict(driver="GTiff", width=n, height=n, count=4, dtype="uint8", crs=crs,
                       transform=Affine(t.a, 0, t.c, 0, t.e, t.f), tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate")
        with rasterio.open(path, "w", **profile) as dst:
            dst.descriptions = ("red", "green", "blue", "nir")
            for r0 in range(0, n, h):
                rows = min(h, n - r0)
                strip = np.zeros((4, rows, n), np.uint8)
                for c0 in range(0, n, w):
                    k = (r0 // h * 7 + c0 // w) % len(scenes)
                    img = scenes[k]
                    if (r0 // h + c0 // w) % 2:
                        img = img[:, :, ::-1]
                    cols = min(w, n - c0)
                    strip[:, :, c0:c0 + cols] = img[:, :rows, :cols]
                dst.write(strip, window=Window(0, r0, n, rows))
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
