"""Pixels as the model sees them: the engine's scene-wide scaling applied to a chip.

A leaf module (no imports from the rest of the training package), so chip records and labelled
scenes can both use it without importing each other.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from geopix_tiles.core.tile_ops import scale_tiles

__all__ = ["normalise"]


def normalise(raw: np.ndarray, low: Sequence[float], high: Sequence[float],
              valid: np.ndarray | None = None) -> np.ndarray:
    """The engine's ``unit`` scaling (the same function the engine calls), nodata -> 0.

    Sharing the function is what guarantees training sees tiles exactly as inference does.
    """
    x = np.asarray(raw)
    if np.issubdtype(x.dtype, np.floating):
        x = np.nan_to_num(x, nan=0.0)
    out = scale_tiles(x[None].astype(np.float32), "unit", low, high)[0]
    if valid is not None:
        out *= valid[None]
    return out
