"""One output block from the global tile grid: the unit of work for dask.

A block (any window, aligned to nothing) is computed from every grid tile that touches it,
read from a window of the source that covers those tiles, and blended exactly as the strip
engine blends (same weights, same grid order of additions), so a dask array of blocks equals
the CLI's raster whatever its chunking. Tiles on block edges are computed by each block that
needs them: the price of independent tasks.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from rasterio.windows import Window

from ..segmenters.protocol import Segmenter
from .tile_ops import blend_weights, cut_tiles, predict, tile_is_empty
from .tiling import Tile, TileGrid


def source_window(grid: TileGrid, block: Window) -> tuple[list[Tile], Window]:
    """Tiles touching ``block`` and the source window they cover (rasterio Windows)."""
    tiles = grid.tiles_touching(block)
    ya = min(t.y for t in tiles)
    xa = min(t.x for t in tiles)
    return tiles, Window(xa, ya, max(t.x + t.width for t in tiles) - xa, max(t.y + t.height for t in tiles) - ya)


def compute_block(data: np.ndarray, valid: np.ndarray | None, origin: tuple[int, int], grid: TileGrid,
                  block: Window, segmenter: Segmenter, prompts: Sequence[str], *,
                  scaling: str = "reflectance", low=None, high=None, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Blended probabilities ``[P, block.height, block.width]`` and validity for the Window ``block``.

    ``data [C, h, w]`` is the source window whose top-left pixel is ``origin``; it must cover
    every tile touching the block (see :func:`source_window`).
    """
    tiles = [t for t in grid.tiles_touching(block) if not tile_is_empty(valid, origin, t)]
    acc = BlockBlend(grid, block, len(prompts))
    for start in range(0, len(tiles), max(1, batch_size)):
        batch = tiles[start:start + batch_size]
        pixels, vstack = cut_tiles(data, valid, origin, batch, scaling, low, high)
        probs = predict(segmenter, pixels, prompts)
        for i, t in enumerate(batch):
            acc.add(t, probs[i], None if vstack is None else vstack[i])
    return acc.result()


class BlockBlend:
    """Weighted sums of tile probabilities over one block, in the engine's weights and grid order.

    The one place a block (any window of the grid) is blended from the tiles that touch it:
    dask blocks and conversation windows both use it, so both equal the CLI's raster.
    """

    def __init__(self, grid: TileGrid, block: Window, prompts: int) -> None:
        self.grid, self.block = grid, block
        (y0, y1), (x0, x1) = self._ranges = block.toranges()
        self.sums = np.zeros((prompts, y1 - y0, x1 - x0), dtype=np.float32)
        self.weights = np.zeros((y1 - y0, x1 - x0), dtype=np.float32)

    def add(self, t: Tile, probs: np.ndarray, valid: np.ndarray | None = None) -> None:
        """Blend ``probs [P, th, tw]`` of tile ``t`` (``valid`` zeroes its weight where invalid)."""
        (y0, y1), (x0, x1) = self._ranges
        w = blend_weights(self.grid, t, valid)
        ys, ye = max(t.y, y0), min(t.y + t.height, y1)
        xs, xe = max(t.x, x0), min(t.x + t.width, x1)
        tw = w[ys - t.y:ye - t.y, xs - t.x:xe - t.x]
        self.sums[:, ys - y0:ye - y0, xs - x0:xe - x0] += probs[:, ys - t.y:ye - t.y, xs - t.x:xe - t.x] * tw
        self.weights[ys - y0:ye - y0, xs - x0:xe - x0] += tw

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Blended probabilities ``[P, h, w]`` and where any tile contributed."""
        ok = self.weights > 0
        out = np.zeros_like(self.sums)
        np.divide(self.sums, self.weights, out=out, where=ok)
        return out, ok
