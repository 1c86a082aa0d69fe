"""Blending weights for overlapping tiles.

Each tile's prediction is weighted by a separable raised-cosine window that rises over the
overlap and is flat (1) in the middle, so neighbouring tiles hand over smoothly instead of
leaving a seam. On a side that lies on the raster border there is no neighbour to hand over
to, so the weight stays 1 there; otherwise border pixels would be scaled by a tiny weight and
amplify noise. The first quarter of the overlap next to an interior tile edge gets weight
0: a model's output is least reliable where its receptive field is cut by the tile edge,
and with the margin at least as wide as the receptive radius a translation-equivariant
model gives exactly the untiled result. On a regular stride the rising and falling ramps
sum to exactly one (sin^2 + cos^2), and every pixel keeps a strictly positive total weight
(the neighbour is flat where this tile is zero), so dividing the accumulated sum by the
accumulated weight is always defined.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .tiling import Tile, TileGrid


@lru_cache(maxsize=64)
def ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1-D weights for a tile of ``length``; ``at_start``/``at_end`` mark raster borders."""
    w = np.ones(length, dtype=np.float32)
    n = min(overlap, length // 2)
    if n > 0:
        margin = n // 4
        span = n - 2 * margin
        up = np.zeros(n, dtype=np.float64)
        up[n - margin:] = 1.0
        up[margin:n - margin] = np.sin(0.5 * np.pi * (np.arange(span, dtype=np.float64) + 0.5) / span) ** 2
        if not at_start:
            w[:n] = up
        if not at_end:
            w[length - n:] = up[::-1]
    w.flags.writeable = False
    return w


def tile_weights(grid: TileGrid, tile: Tile) -> np.ndarray:
    """2-D float32 weights ``[tile_height, tile_width]`` for ``tile`` within ``grid``."""
    return _weights2d(
        grid.tile_height, grid.tile_width, grid.overlap,
        tile.y == 0, tile.y + tile.height >= grid.height,
        tile.x == 0, tile.x + tile.width >= grid.width,
    )


@lru_cache(maxsize=64)
def _weights2d(h: int, w: int, overlap: int, top: bool, bottom: bool, left: bool, right: bool) -> np.ndarray:
    out = np.outer(ramp(h, overlap, top, bottom), ramp(w, overlap, left, right)).astype(np.float32)
    out.flags.writeable = False
    return out
