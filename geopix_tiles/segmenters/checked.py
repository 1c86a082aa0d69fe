"""``presence_check=False``: a learned model's masks without the presence check's tile veto.

The default model's segmenter drops a class from a tile when its presence check says the pixels
under the mask do not look like the class (:func:`geopix_tiles.model.presence_check.veto_tiles`).
This wrapper asks it not to, for users who want every pixel the mask head paints (and for
measuring what the veto does). Other segmenters have no such check and are returned as they are.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .protocol import SegmenterWrapper

__all__ = ["UncheckedSegmenter", "with_presence_check"]


def with_presence_check(segmenter: Any, enabled: bool) -> Any:
    """``segmenter`` as it is, or (``enabled=False`` on a model with a tile check) without the check."""
    if enabled or not getattr(segmenter, "tile_check", False):
        return segmenter
    return UncheckedSegmenter(segmenter)


class UncheckedSegmenter(SegmenterWrapper):
    """The inner GeoPix segmenter with its tile check off for this run only (the cached model is shared)."""

    def __repr__(self) -> str:  # the resume journal fingerprints models by repr
        return f"UncheckedSegmenter({self.inner!r})"

    def predict(self, tiles: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        return self.inner.predict(tiles, prompts, check=False)
