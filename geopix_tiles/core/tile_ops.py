"""Per-tile operations shared by every execution path.

The strip engine (CLI), the block function (xarray accessor) and the distributed runner all
cut tiles, scale them, call the segmenter and blend with these few functions, and add tile
contributions to each pixel in grid order, so every path yields bit-identical pixels.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .blending import tile_weights
from ..segmenters.protocol import Segmenter
from .tiling import Tile, TileGrid


def scale_tiles(raw: np.ndarray, scaling: str, low: np.ndarray | None = None, high: np.ndarray | None = None) -> np.ndarray:
    """Native-dtype ``[B, C, h, w]`` -> float32 as the segmenter asked (see ``Segmenter.scaling``).

    A float32 input is scaled in place.
    """
    out = raw if raw.dtype == np.float32 else raw.astype(np.float32)
    if scaling == "unit":
        lo = np.asarray(low, dtype=np.float32).reshape(1, -1, 1, 1)
        span = (np.asarray(high, dtype=np.float32) - np.asarray(low, dtype=np.float32)).reshape(1, -1, 1, 1)
        out -= lo
        out /= span
        np.clip(out, 0.0, 1.0, out=out)
    return out


def cut_tiles(data: np.ndarray, valid: np.ndarray | None, origin: tuple[int, int], tiles: Sequence[Tile],
              scaling: str, low=None, high=None, raw: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Stack ``tiles`` out of a window ``data [C, h, w]`` whose top-left pixel is ``origin``.

    Returns scaled float32 ``[B, C, th, tw]`` (zero where invalid) and the validity ``[B, th, tw]``.
    ``raw``: a source narrower than float32 stays in its own dtype, unscaled (:func:`finish_tiles` makes the
    same float32 later): a queue of batches waiting on a slow writer then holds 1-2 bytes a pixel, not 4.
    """
    oy, ox = origin
    if not tiles:
        return np.zeros((0, data.shape[0], 0, 0), np.float32), None
    dtype = data.dtype if raw and data.dtype.itemsize < 4 else np.float32
    pixels = np.empty((len(tiles), data.shape[0], tiles[0].height, tiles[0].width), dtype=dtype)
    for i, t in enumerate(tiles):  # cut and cast in one pass
        np.copyto(pixels[i], data[:, t.y - oy:t.y - oy + t.height, t.x - ox:t.x - ox + t.width], casting="unsafe")
    vstack = None
    if valid is not None:
        vstack = np.stack([valid[t.y - oy:t.y - oy + t.height, t.x - ox:t.x - ox + t.width] for t in tiles])
    if dtype != np.float32:
        return pixels, vstack
    return finish_tiles(pixels, vstack, scaling, low, high), vstack


def finish_tiles(pixels: np.ndarray, vstack: np.ndarray | None, scaling: str, low=None, high=None) -> np.ndarray:
    """Tiles cut by :func:`cut_tiles` (``raw`` or not) as the segmenter takes them: scaled float32, zero where invalid.

    The same operations in the same order whether a batch was scaled when it was cut or later, so
    the pixels are bit-identical either way.
    """
    pixels = scale_tiles(pixels, scaling, low, high)
    if vstack is not None:
        pixels *= vstack[:, None]
    return pixels


def tile_is_empty(valid: np.ndarray | None, origin: tuple[int, int], tile: Tile) -> bool:
    """True when every pixel of ``tile`` is nodata (it is then never sent to the model)."""
    if valid is None:
        return False
    oy, ox = origin
    return not valid[tile.y - oy:tile.y - oy + tile.height, tile.x - ox:tile.x - ox + tile.width].any()


def predict(segmenter: Segmenter, pixels: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
    """Call the segmenter and hold it to the contract (shape, dtype)."""
    probs = np.asarray(segmenter.predict(pixels, list(prompts)), dtype=np.float32)
    expected = (pixels.shape[0], len(prompts), pixels.shape[2], pixels.shape[3])
    if probs.shape != expected:
        raise RuntimeError(f"segmenter {type(segmenter).__name__} returned {probs.shape}, expected {expected}")
    return probs


def blend_weights(grid: TileGrid, tile: Tile, valid: np.ndarray | None) -> np.ndarray:
    w = tile_weights(grid, tile)
    return w if valid is None else w * valid
