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
from rasterio.errors import RasterioError

from ..core.cores import compression_threads
from ..io.scene import GDAL_IO_LOCK, Scene

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
        self._pending: list[tuple[int, np.ndarray, np.ndarray | None]] = []
        self._x0 = 0  # first column of the panel being written

    def profile(self) -> dict:
        small = min(self.scene.width, self.scene.height) < 512
        block = 256 if small else 512
        profile = dict(
            driver="GTiff", width=self.scene.width, height=self.scene.height, count=len(self.prompts),
            dtype="uint8", crs=self.scene.crs, transform=self.scene.transform, tiled=True,
            # LZW, not DEFLATE: a run's checkpoints reopen the file in update mode, where GDAL
            # forgets DEFLATE's level and compresses at 6 (2.7 CPU s per 100 MB of probabilities
            # against 1.0 at level 3; no open or config option sets it), and most of a long run
            # is written after its first checkpoint. LZW has no level: 1.3 CPU s before and after,
            # files ~6-12 % larger (benchmarks/results/raster_codec.md)
            # Band-interleaved: each block holds one prompt's probability surface, which LZW with the
            # predictor packs 24 % faster and 26 % smaller than four surfaces interleaved pixel by
            # pixel, and reading one prompt's band decodes a quarter of the data (bench_raster_codec.py)
            blockxsize=block, blockysize=block, compress="lzw", predictor=2,
            bigtiff="IF_SAFER", num_threads=compression_threads(), interleave="band",
            # one probability layer per prompt, not a picture: without this GDAL tags 3 or 4 uint8
            # bands as RGB(A), and GIS tools draw the fourth prompt as transparency
            photometric="MINISBLACK",
        )
        if self.threshold is not None:
            profile["nodata"] = NODATA_BINARY
        return profile

    def open(self, resume: bool = False) -> None:
        if resume and self.tmp.exists():
            self._dst = self._reopen()
        else:
            self._dst = rasterio.open(self.tmp, "w", **self.profile())
            for i, p in enumerate(self.prompts, start=1):
                self._dst.set_band_description(i, p)
            self._dst.update_tags(source="geopix-tiles", threshold=str(self.threshold))

    def _reopen(self):
        """The partial file in update mode, with the creation's compression threads.

        An update handle forgets creation options: without ``NUM_THREADS`` here every block after
        the first checkpoint (10 s into a run) was compressed by one thread. It would forget a
        DEFLATE or ZSTD level too (hence LZW, see :meth:`profile`).
        """
        threads = compression_threads()  # what profile() asks for at creation
        return rasterio.open(self.tmp, "r+", **({"NUM_THREADS": str(threads)} if threads > 1 else {}))

    def encode(self, probs: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Float probabilities -> stored bands (and the mask band, only for scenes with nodata)."""
        if self.threshold is None:
            data = np.empty(probs.shape, dtype=np.uint8)
            scaled = np.multiply(probs, np.float32(255.0))
            scaled += np.float32(0.5)
            np.copyto(data, scaled, casting="unsafe")  # values in [0, 255.5): truncation rounds
            mask = valid.view(np.uint8) * np.uint8(255) if self.scene.has_mask else None
            return data, mask
        data = (probs >= self.threshold).view(np.uint8)
        if self.scene.has_mask:
            data[:, ~valid] = NODATA_BINARY
        return data, None

    def write(self, y0: int, probs: np.ndarray, valid: np.ndarray, x0: int = 0) -> None:
        """Queue rows; write whenever whole block rows are complete.

        Writing only whole blocks keeps GDAL from evicting half-filled compressed blocks
        and decoding them again later (the strips are a tile stride high, not a block).
        """
        data, mask = self.encode(probs, valid)
        if self._pending and self._x0 != x0:
            self.flush()  # a new panel
        self._x0 = x0
        self._pending.append((y0, data, mask))
        end = y0 + data.shape[1]
        block = self.profile()["blockysize"]
        ready = self.scene.height if end >= self.scene.height else (end // block) * block
        if ready > self._pending[0][0]:
            self._write_until(ready)

    def _write_until(self, until: int) -> None:
        start = self._pending[0][0]
        if until <= start:
            return
        parts = self._pending
        data = np.concatenate([d for _, d, _ in parts], axis=1) if len(parts) > 1 else parts[0][1]
        masks = [m for _, _, m in parts]
        n = until - start
        window = Window(self._x0, start, data.shape[2], n)
        mask = None
        if masks[0] is not None:
            mask = np.concatenate(masks, axis=0) if len(masks) > 1 else masks[0]
        with GDAL_IO_LOCK:
            self._dst.write(data[:, :n], window=window)
            if mask is not None:
                self._dst.write_mask(mask[:n], window=window)
        rest = data.shape[1] - n
        self._pending = [(until, data[:, n:], None if mask is None else mask[n:])] if rest else []

    def flush(self) -> None:
        """Write every queued row (before a checkpoint or at the end)."""
        if self._pending:
            end = self._pending[-1][0] + self._pending[-1][1].shape[1]
            self._write_until(end)

    def checkpoint(self) -> None:
        self.flush()
        with GDAL_IO_LOCK:
            self._dst.close()
            self._dst = self._reopen()

    def close(self) -> None:
        if self._dst is not None:
            self.flush()
            with GDAL_IO_LOCK:
                self._dst.close()
            self._dst = None

    @property
    def _cog_tmp(self) -> Path:
        return self.tmp.with_name(self.tmp.stem + ".cog.tif")

    def discard(self) -> None:
        """Delete the partial files (a failed run leaves nothing behind).

        Queued rows are dropped, not written: after a failed write (a full disk) writing them
        would fail again and hide the first error behind a second traceback.
        """
        self._pending = []
        if self._dst is not None:
            try:
                with GDAL_IO_LOCK:
                    self._dst.close()
            except (OSError, RasterioError):
                pass  # the file is deleted below; the run's own error is the one to report
            self._dst = None
        for p in (self.tmp, self._cog_tmp):
            if p.exists():
                p.unlink()

    def finalize(self) -> None:
        """Close, convert to COG if asked, and move into place atomically."""
        self.close()
        src = self.tmp
        if self.cog:
            cog_tmp = self._cog_tmp
            rasterio.shutil.copy(
                self.tmp, cog_tmp, driver="COG", compress="DEFLATE", predictor="YES", blocksize=512,
                overview_resampling="NEAREST" if self.threshold is not None else "AVERAGE",
                num_threads="ALL_CPUS", bigtiff="IF_SAFER",
            )
            self.tmp.unlink()
            src = cog_tmp
        os.replace(src, self.final)
