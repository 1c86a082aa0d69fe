"""``cut_canopy``: what tree and grass cover hides is not reported as a building or water.

Seen from above, a crown over a roof or a pond is vegetation; the map of what is seen shows it so.
The default model paints "buildings" as blobs that swallow house, yard and the street trees around
them on suburban scenes it never trained on (xBD Joplin, MODEL_CARD "Known failure modes"), and
water over dark turf and shaded lawns (Dubai tile_7), while painting the same pixels as vegetation
with more confidence. Each building and water probability becomes the probability that it is *seen*:
``p(class) * seen(p(vegetation))`` (:mod:`.occlusion`), from the model's own vegetation probability
on the same tile (one more prompt per call unless a prompt already asks for vegetation, whose band
is then left as it is). Roads and bare land are left as they are (a road under a street tree is
still mapped as a road by every road dataset), and so are clouds (the cloud mask goes the other way).

Only on scenes of :data:`CANOPY_MAX_PIXEL_M` or finer: a crown (5-15 m across) is an object there, while
in a 10-30 m pixel "vegetation" is a share of a mixed pixel, and cutting it took real shore water away
(NAIP 2020 averaged to 10 / 15 / 30 m: water IoU -0.04 / -0.05 / -0.14; at 5 m +0.004).
``"auto"`` (the default): on whenever the model segments vegetation and the scene's pixels are that fine
(or of unknown size), off otherwise (the spectral model); ``True`` insists (and refuses a model without
vegetation); ``False`` skips the extra prompt. Measured in ``benchmarks/results/canopy.md``.
"""
from __future__ import annotations

from typing import Any

from .occlusion import OccludedSegmenter, check_auto_flag, cover_phrase

__all__ = ["CANOPY", "CANOPY_MAX_PIXEL_M", "HIDDEN_BY_CANOPY", "CanopySegmenter", "check_cut_canopy", "with_canopy_cut"]

CANOPY = "vegetation"
#: the classes a crown hides from above
HIDDEN_BY_CANOPY = ("building", "water")
#: the coarsest pixels (m) on which ``"auto"`` cuts: crowns are resolved objects at 5 m (NAIP), mixed pixels at 10 m
CANOPY_MAX_PIXEL_M = 6.0


def check_cut_canopy(value: Any) -> bool | str:
    """``value`` as ``True``, ``False`` or ``"auto"`` (``None`` means ``"auto"``); anything else is refused."""
    return check_auto_flag("cut_canopy", value)


def with_canopy_cut(segmenter: Any, cut_canopy: Any = "auto", pixel_m: float | None = None) -> Any:
    """``segmenter`` itself, or wrapped so that no building or water prompt reports pixels under vegetation.

    ``cut_canopy``: ``"auto"`` wraps it when its model segments vegetation and ``pixel_m`` (the scene's
    pixel size in metres; None: unknown) is at most :data:`CANOPY_MAX_PIXEL_M`, ``True`` insists (and
    refuses a model without the class), ``False`` never wraps; whether the result is a
    :class:`CanopySegmenter` is what a run does.
    """
    value = check_cut_canopy(cut_canopy)
    if value is False or (value == "auto" and pixel_m is not None and pixel_m > CANOPY_MAX_PIXEL_M):
        return segmenter
    phrase = cover_phrase(segmenter, CANOPY, value, "--cut-canopy", "vegetation")
    return segmenter if phrase is None else CanopySegmenter(segmenter, phrase)


class CanopySegmenter(OccludedSegmenter):
    """The inner segmenter's building and water probabilities times the share of the pixel vegetation leaves seen."""

    def __init__(self, inner: Any, phrase: str) -> None:
        super().__init__(inner, phrase, CANOPY, HIDDEN_BY_CANOPY)

    def __repr__(self) -> str:  # the resume journal fingerprints models by repr
        return f"CanopySegmenter({self.inner!r}, phrase={self.phrase!r})"
