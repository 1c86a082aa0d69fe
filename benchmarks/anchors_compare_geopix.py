"""geopix-tiles side of benchmarks/anchors_compare.sh: one engine run per process.

usage: python benchmarks/anchors_compare_geopix.py MODE SCENE OUT.tif

MODE
  prob     geopix_tiles.segment(scene, "water", raster_out=OUT, vectorize=False)
           -> probabilities x 255 (uint8), spectral NDWI model (threshold 0.2, ramp 0.15)
  binary   same with threshold=0.5 -> 0/1 raster (water = NDWI >= 0.2)
  ndwi0    same as binary but model=NDWIZero(): the anchors' decision rule exactly
           (class 1 where (g - nir) / (g + nir) > 0, strict; 0 where g + nir == 0), so the
           mask can be compared pixel by pixel with raw_run.py / samgeo / geoai.

Everything else is the engine's defaults (tile 512, overlap 64, batch 8, segment()'s GDAL block
cache: 4 MB since 2026-12-06; the runs recorded before it had 64 bytes, see geopix_tiles/io/gdal_cache.py). The whole process is timed from outside (/usr/bin/time -v), imports
included, like the anchors.
"""
from __future__ import annotations

import sys
import time

t0 = time.perf_counter()

import numpy as np  # noqa: E402

import geopix_tiles  # noqa: E402


class NDWIZero:
    """Segmenter protocol: probability 1 where NDWI > 0 (strict), else 0 -- the anchors' rule."""

    band_roles = ("green", "nir")
    tile_size = 512
    scaling = "reflectance"

    def check_prompts(self, prompts):
        return None

    def predict(self, tiles: np.ndarray, prompts) -> np.ndarray:
        g = tiles[:, 0]
        n = tiles[:, 1]
        # g, n >= 0 (uint8 reflectance cast to float32): NDWI > 0  <=>  g - n > 0 and g + n != 0
        water = g > n
        out = np.empty((tiles.shape[0], len(prompts)) + tiles.shape[2:], dtype=np.float32)
        for k in range(len(prompts)):
            out[:, k] = water
        return out


def main(mode: str, scene: str, out: str) -> None:
    t_import = time.perf_counter() - t0
    kw = dict(raster_out=out, vectorize=False, overwrite=True)
    if mode == "prob":
        geopix_tiles.segment(scene, "water", **kw)
    elif mode == "binary":
        geopix_tiles.segment(scene, "water", threshold=0.5, **kw)
    elif mode == "ndwi0":
        geopix_tiles.segment(scene, "water", model=NDWIZero(), threshold=0.5, **kw)
    else:
        sys.exit(f"unknown mode {mode}")
    print(f"geopix[{mode}]: {scene} -> {out} in {time.perf_counter() - t0:.1f}s (import {t_import:.1f}s)")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
