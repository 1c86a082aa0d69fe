"""Test-time flips: the model's probabilities averaged over mirrored views of each tile.

A network's errors are partly orientation-specific (a shadow edge, a roof ridge at one angle), so
the mean of its answers on a tile and on the tile mirrored is steadier than either, for the price
of one model pass per view. On scenes it was not trained on the default model gains a little:
Dubai tile_7 mean IoU 0.575 -> 0.579 (2 views) -> 0.582 (4) with the tile check (0.560 -> 0.566
without), xBD Joplin buildings 0.300 -> 0.313 -> 0.318 (``benchmarks/flips.py``,
``benchmarks/results/flips.md``). Off by default (``flips=1``):
4 views cost 4 times the model's time, and the engine's speed is the product's other promise.

Views: 1 the tile; 2 + mirrored left-right; 4 + mirrored top-bottom + both (a half turn).
Mirrors keep any tile shape and every pixel's neighbourhood, so the engine's blending, nodata and
outputs are unchanged; a per-pixel model (``spectral``) gives the same values with any number.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from .protocol import SegmenterWrapper

__all__ = ["FLIPS", "FlipAveragedSegmenter", "check_flips", "with_flips"]

#: views per ``flips`` value: the array axes mirrored for each (tiles are ``[B, C, H, W]``)
FLIPS = {1: ((),), 2: ((), (-1,)), 4: ((), (-1,), (-2,), (-2, -1))}


def check_flips(flips: Any) -> int:
    """``flips`` as an int, or an :class:`InputError` naming the values there are."""
    if isinstance(flips, bool) or not isinstance(flips, (int, np.integer)) or int(flips) not in FLIPS:
        raise InputError(f"--flips {flips!r} must be 1 (off), 2 (+ mirrored left-right) or 4 "
                         "(+ mirrored top-bottom and both)")
    return int(flips)


def with_flips(segmenter: Any, flips: int) -> Any:
    """``segmenter`` itself for 1 view, else wrapped to average ``flips`` views."""
    flips = check_flips(flips)
    return segmenter if flips == 1 else FlipAveragedSegmenter(segmenter, flips)


class FlipAveragedSegmenter(SegmenterWrapper):
    """The inner segmenter's mean probability over :data:`FLIPS` ``[flips]`` mirrored views of each tile."""

    def __init__(self, inner: Any, flips: int) -> None:
        super().__init__(inner)
        self.flips = check_flips(flips)

    def __repr__(self) -> str:  # the resume journal fingerprints models by repr
        return f"FlipAveragedSegmenter({self.inner!r}, flips={self.flips})"

    def predict(self, tiles: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        total = None
        for axes in FLIPS[self.flips]:
            view = np.ascontiguousarray(np.flip(tiles, axes)) if axes else tiles
            probs = np.asarray(self.inner.predict(view, list(prompts)), dtype=np.float32)
            probs = np.flip(probs, axes) if axes else probs
            if total is None:
                total = probs.copy()
            else:
                total += probs
        total /= np.float32(self.flips)
        return total
