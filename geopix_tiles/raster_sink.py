"""Georeferenced mask raster, written strip by strip under a temporary name.

The raster has one band per prompt, the scene's CRS and transform exactly, and is tiled and
compressed. Probabilities are stored as uint8 (p x 255) with an internal mask marking the
scene's nodata (all 256 values are data); with a threshold the bands are 0/1 with nodata
255. A checkpoint closes and reopens the file so that everything written so far is on disk
in a valid TIFF, which is what makes ``--resume`` safe after a hard kill.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.windows import Window

from .scene import Scene

NODATA_BINARY = 255


class RasterSink:
    def __init__(self, final: str | os.PathLike, tmp: str | os.PathLike, scene: Scene, prompts: Sequence[str],
                 threshold: float | None = None, cog: bool = False) -> None:
        self.final = Path(final)
        self.tmp = Path(tmp)
        self.scene = scene
        self.prompts = list(prompts)
        self.threshold = threshold
        self.cog = cog
        self._dst = None

    def profile(self) -> dict:
        small = min(self.scene.width, self.scene.height) < 512
        block = 256 if small else 512
        profile = dict(
            driver="GTiff", width=self.scene.width, height=self.scene.height, count=len(self.prompts),
            dtype="uint8", crs=self.scene.crs, transform=self.scene.transform, tiled=True,
            blockxsize=block, blockysize=block, compress="deflate", predictor=2, zlevel=3,
            bigtiff="IF_SAFER", num_threads="ALL_CPUS", interleave="pixel",
        )
        if self.threshold is not None:
            profile["nodata"] = NODATA_BINARY
        return profile

    def open(self, resume: bool = False) -> None:
        if resume and self.tmp.exists():
            self._dst = rasterio.open(self.tmp, "r+")
        else:
            self._dst = rasterio.open(self.tmp, "w", **self.profile())
            for i, p in enumerate(self.prompts, start=1):
                self._dst.set_band_description(i, p)
            self._dst.update_tags(source="geopix-tiles", threshold=str(self.threshold))

    def write(self, y0: int, probs: np.ndarray, valid: np.ndarray) -> None:
        n = probs.shape[1]
        window = Window(0, y0, self.scene.width, n)
        if self.threshold is None:
            data = np.empty(probs.shape, dtype=np.uint8)
            np.multiply(probs, 255.0, out=probs)
            np.add(probs, 0.5, out=probs)
            np.copyto(data, probs, casting="unsafe")  # probs are in [0, 255.5): truncation rounds
            self._dst.write(data, window=window)
            self._dst.write_mask(np.where(valid, 255, 0).astype(np.uint8), window=window)
        else:
            data = (probs >= self.threshold).astype(np.uint8)
            data[:, ~valid] = NODATA_BINARY
            self._dst.write(data, window=window)

    def checkpoint(self) -> None:
        self._dst.close()
        self._dst = rasterio.open(self.tmp, "r+")

    def close(self) -> None:
        if self._dst is not None:
            self._dst.close()
            self._dst = None

    def finalize(self) -> None:
        """Close, convert to COG if asked, and move into place atomically."""
        self.close()
        src = self.tmp
        if self.cog:
            cog_tmp = self.tmp.with_name(self.tmp.stem + ".cog.tif")
            rasterio.shutil.copy(
                self.tmp, cog_tmp, driver="COG", compress="DEFLATE", predictor="YES", blocksize=512,
                overview_resampling="NEAREST" if self.threshold is not None else "AVERAGE",
                num_threads="ALL_CPUS", bigtiff="IF_SAFER",
            )
            self.tmp.unlink()
            src = cog_tmp
        os.replace(src, self.final)
