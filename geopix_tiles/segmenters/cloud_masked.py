"""``mask_clouds``: what a cloud hides is not reported as the ground class under it.

A mask head trained on cloud-free ground paints ground classes under clouds it was never shown
them beneath (on the held-out Sentinel-2 chip, 93 % cloud, the default model calls 97 % of it
water). Optical remote sensing handles this with a cloud mask: pixels under a cloud are not
observations of the ground. Here each prompt's probability becomes the probability that its
class is *seen*: ``p(class) * seen(p(cloud))``, from the model's own cloud probability on the same
tile (one more prompt per call unless a prompt already asks for clouds, whose band is then left
as it is; :mod:`.occlusion` does the arithmetic). :func:`~.occlusion.seen_share` is 1 up to ``p(cloud)``
0.25 and falls linearly to 0 at 0.75: deaf to the diffuse low cloud probability a model spreads over
cloud-free ground (the default model: 0.17 on average over the NAIP sample, where a plain ``1 - p(cloud)``
took 6 % of its water and vegetation pixels away). This is the option for rasters and GeoPackages.

``"auto"`` (the default since 2026-12-06): on whenever the model segments clouds, off for a model
without the class (the spectral one). A user who asks for water over a scene rarely knows in advance
that it is cloudy, and the cost on cloud-free scenes was measured as nothing but one more prompt
(Dubai tile_7, xBD Joplin, the NAIP sample and UC Merced chips: masks within noise, MODEL_CARD.md);
``True`` insists (and refuses a model without clouds), ``False`` skips the extra prompt.
"""
from __future__ import annotations

from typing import Any

from .occlusion import (CLEAR_BELOW, HIDDEN_ABOVE, OccludedSegmenter, check_auto_flag, class_phrase, cover_phrase,
                        seen_share)

__all__ = ["CLEAR_BELOW", "HIDDEN_ABOVE", "CloudMaskedSegmenter", "check_mask_clouds", "cloud_phrase", "seen_share",
           "with_cloud_mask"]

CLOUD = "cloud"


def cloud_phrase(segmenter: Any) -> str | None:
    """The phrase ``segmenter``'s model segments clouds with (None: a model without the class)."""
    return class_phrase(segmenter, CLOUD)


def check_mask_clouds(value: Any) -> bool | str:
    """``value`` as ``True``, ``False`` or ``"auto"`` (``None`` means ``"auto"``); anything else is refused."""
    return check_auto_flag("mask_clouds", value)


def with_cloud_mask(segmenter: Any, mask_clouds: Any = "auto") -> Any:
    """``segmenter`` itself, or wrapped so that no prompt reports pixels under clouds.

    ``mask_clouds``: ``"auto"`` wraps it when its model segments clouds, ``True`` insists (and refuses a model
    without clouds), ``False`` never wraps; whether the result is a :class:`CloudMaskedSegmenter` is what a run does.
    """
    value = check_mask_clouds(mask_clouds)
    if value is False:
        return segmenter
    phrase = cover_phrase(segmenter, CLOUD, value, "--mask-clouds", "clouds")
    return segmenter if phrase is None else CloudMaskedSegmenter(segmenter, phrase)


class CloudMaskedSegmenter(OccludedSegmenter):
    """The inner segmenter's probabilities times :func:`seen_share` of ``p(cloud)`` for every prompt that is not a cloud prompt."""

    def __init__(self, inner: Any, phrase: str) -> None:
        super().__init__(inner, phrase, CLOUD)

    def __repr__(self) -> str:  # the resume journal fingerprints models by repr
        return f"CloudMaskedSegmenter({self.inner!r}, phrase={self.phrase!r})"
