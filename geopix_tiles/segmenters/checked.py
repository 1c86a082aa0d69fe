"""The presence check's tile veto in a run: off (``presence_check=False``), or on and counted.

The default model's segmenter drops a class from a tile when its presence check says the pixels
under the mask do not look like the class (:func:`geopix_tiles.model.presence_check.veto_tiles`).
Off, for users who want every pixel the mask head paints (and for measuring what the veto does).
On, the run counts what was cut per prompt, so a scene with tile-shaped gaps says why and how to
keep them (``segment``'s summary). Other segmenters have no such check and are returned as they are.
"""
from __future__ import annotations

import threading
from typing import Any, Sequence

import numpy as np

from .protocol import SegmenterWrapper

__all__ = ["TalliedCheck", "UncheckedSegmenter", "with_presence_check"]


def with_presence_check(segmenter: Any, enabled: bool) -> Any:
    """``segmenter`` without the check (``enabled=False``), or with it and its cuts counted for this run."""
    if not getattr(segmenter, "tile_check", False):
        return segmenter
    return TalliedCheck(segmenter) if enabled else UncheckedSegmenter(segmenter)


class TalliedCheck(SegmenterWrapper):
    """The inner GeoPix segmenter as it is, counting per prompt the model tiles the check cut it from.

    One per run (the cached model is shared between runs); the engine's model threads call it side by
    side, hence the lock. Tiles a run predicts twice (both panels of a panel seam, every mirrored view)
    are counted each time they are judged. Runs whose tiles are predicted on dask workers count there.
    """

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        #: prompt -> [tiles it was cut from, tiles judged]
        self.cuts: dict[str, list[int]] = {}

    def __repr__(self) -> str:  # counting changes no output: a run resumes across it
        return repr(self.inner)

    def predict(self, tiles: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        verdicts: list = []
        probs = self.inner.predict(tiles, prompts, doubts_out=verdicts)
        cut = verdicts[0].sum(0) if verdicts else np.zeros(len(prompts), dtype=int)  # none when there is no check
        with self._lock:
            for prompt, n in zip(prompts, cut.tolist()):
                tally = self.cuts.setdefault(prompt, [0, 0])
                tally[0] += int(n)
                tally[1] += len(tiles)
        return probs


class UncheckedSegmenter(SegmenterWrapper):
    """The inner GeoPix segmenter with its tile check off for this run only (the cached model is shared)."""

    def __repr__(self) -> str:  # the resume journal fingerprints models by repr
        return f"UncheckedSegmenter({self.inner!r})"

    def predict(self, tiles: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        return self.inner.predict(tiles, prompts, check=False)
