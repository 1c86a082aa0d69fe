"""A bound on GDAL's raster block cache, in megabytes, for the reads and writes inside it.

Why this exists: ``rasterio.Env(GDAL_CACHEMAX=64)`` does not mean 64 MB. GDAL reads the
environment variable as megabytes below 100,000, but rasterio's ``Env`` passes the value to
``GDALSetCacheMax64``, which takes bytes: from 2026-12-02 to 12-06 ``segment`` ran with a 64-byte
cache, so every block a tile window touched was decompressed again for each window (and a
decimated whole-scene read in ``ask``, bounded the same way, took 106 s instead of 5 on a 5k
scene). GDAL's own default, 5 % of RAM, is the opposite failure: a whole-scene read of a 20k
mosaic kept 1.2 GB of blocks. See rasterio issue 2336.
"""
from __future__ import annotations

import numpy as np
import rasterio
from rasterio.enums import Interleaving

__all__ = ["DEFAULT_BLOCK_CACHE_MB", "block_cache", "block_row_mb"]

#: ``segment``'s bound (its main process and its dask workers): the engine reads and writes whole rows of blocks,
#: so 4 MB ran as fast as 64 MB on the 5k mosaic, and 64 MB cost 30-65 MB more peak RSS
DEFAULT_BLOCK_CACHE_MB = 4.0


def block_cache(mb: float) -> rasterio.Env:
    """A ``rasterio.Env`` whose GDAL block cache holds at most ``mb`` megabytes (MiB).

    The bound is process-wide while the context is open (GDAL has one cache) and the previous
    value comes back on exit.
    """
    if mb is None or mb <= 0:
        raise ValueError(f"a GDAL block cache of {mb!r} MB cannot hold a block; give a positive size such as 64")
    return rasterio.Env(GDAL_CACHEMAX=max(1, int(mb * (1 << 20))))


def block_row_mb(src: "rasterio.io.DatasetReader", window: "rasterio.windows.Window", bands: int) -> float:
    """Megabytes of two rows of the file's blocks across ``window``, for ``bands`` bands read.

    A decimated read (``out_shape`` smaller than the window) walks the output row by row, and
    each row of source blocks serves many output rows: with a cache smaller than that row GDAL
    decodes every block again for each of them (the 106 s above); with it, once. Two rows: a
    window seldom starts on a block edge, and the mask's blocks come on top.
    """
    bh, bw = src.block_shapes[0]
    blocks_across = -(-int(window.width) // max(1, bw)) + 1
    itemsize = max(np.dtype(dt).itemsize for dt in src.dtypes)
    # a pixel-interleaved block holds every band of the file, read or not
    per_block = bh * bw * itemsize * (src.count if src.interleaving == Interleaving.pixel else bands)
    return 2 * blocks_across * per_block / (1 << 20)
