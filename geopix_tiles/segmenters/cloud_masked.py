"""``mask_clouds``: what a cloud hides is not reported as the ground class under it.

A mask head trained on cloud-free ground paints ground classes under clouds it was never shown
them beneath (on the held-out Sentinel-2 chip, 93 % cloud, the default model calls 97 % of it
water). Optical remote sensing handles this with a cloud mask: pixels under a cloud are not
observations of the ground. Here each prompt's probability becomes the probability that its
class is *seen*: ``p(class) * seen(p(cloud))``, from the model's own cloud probability on the same
tile (one more prompt per call unless a prompt already asks for clouds, whose band is then left
as it is). :func:`seen_share` is 1 up to ``p(cloud)`` 0.25 and falls linearly to 0 at 0.75: smooth,
so tiles still blend without seams, centred on 0.5, where replies in words draw their cloud mask
(``View.seen``), and deaf to the diffuse low cloud probability a model spreads over cloud-free
ground (the default model: 0.17 on average over the NAIP sample, where a plain ``1 - p(cloud)``
took 6 % of its water and vegetation pixels away). This is the option for rasters and GeoPackages.

``"auto"`` (the default since 2026-12-06): on whenever the model segments clouds, off for a model
without the class (the spectral one). A user who asks for water over a scene rarely knows in advance
that it is cloudy, and the cost on cloud-free scenes was measured as nothing but one more prompt
(Dubai tile_7, xBD Joplin, the NAIP sample and UC Merced chips: masks within noise, MODEL_CARD.md);
``True`` insists (and refuses a model without clouds), ``False`` skips the extra prompt.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from .protocol import SegmenterWrapper

__all__ = ["CloudMaskedSegmenter", "check_mask_clouds", "cloud_phrase", "seen_share", "with_cloud_mask"]

CLOUD = "cloud"
#: ``p(cloud)`` up to which the ground counts as fully seen, and from which as hidden
CLEAR_BELOW, HIDDEN_ABOVE = 0.25, 0.75


def seen_share(cloud: np.ndarray) -> np.ndarray:
    """How much of the ground a pixel with cloud probability ``cloud`` shows (1 clear, 0 hidden)."""
    return np.clip((np.float32(HIDDEN_ABOVE) - cloud) / np.float32(HIDDEN_ABOVE - CLEAR_BELOW), 0.0, 1.0,
                   dtype=np.float32)


def cloud_phrase(segmenter: Any) -> str | None:
    """The phrase ``segmenter``'s model segments clouds with (None: a model without the class).

    The same phrase a reply's cloud mask is asked with (``model.dialogue.class_phrases``).
    """
    model = getattr(segmenter, "model", None)
    if getattr(getattr(model, "config", None), "concepts", None) is None:
        return None  # not a GeoPix model (the spectral segmenter)
    from ..model.dialogue import class_phrases  # noqa: PLC0415

    return dict(class_phrases(model)).get(CLOUD)


def check_mask_clouds(value: Any) -> bool | str:
    """``value`` as ``True``, ``False`` or ``"auto"`` (``None`` means ``"auto"``); anything else is refused."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return "auto"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InputError(f"mask_clouds must be True, False or 'auto', not {value!r}")


def with_cloud_mask(segmenter: Any, mask_clouds: Any = "auto") -> Any:
    """``segmenter`` itself, or wrapped so that no prompt reports pixels under clouds.

    ``mask_clouds``: ``"auto"`` wraps it when its model segments clouds, ``True`` insists (and refuses a model
    without clouds), ``False`` never wraps; whether the result is a :class:`CloudMaskedSegmenter` is what a run does.
    """
    value = check_mask_clouds(mask_clouds)
    if value is False:
        return segmenter
    phrase = cloud_phrase(segmenter)
    if phrase is None:
        if value == "auto":
            return segmenter
        raise InputError("--mask-clouds needs a model that segments clouds (e.g. --model default); "
                         "this model has no cloud class, so run without --mask-clouds")
    return CloudMaskedSegmenter(segmenter, phrase)


class CloudMaskedSegmenter(SegmenterWrapper):
    """The inner segmenter's probabilities times :func:`seen_share` of ``p(cloud)`` for every prompt that is not a cloud prompt."""

    def __init__(self, inner: Any, phrase: str) -> None:
        super().__init__(inner)
        self.phrase = phrase
        self._clouds: dict[tuple[str, ...], list[bool]] = {}

    def __repr__(self) -> str:  # the resume journal fingerprints models by repr
        return f"CloudMaskedSegmenter({self.inner!r}, phrase={self.phrase!r})"

    def cloud_prompts(self, prompts: Sequence[str]) -> list[bool]:
        """Which prompts ask for clouds themselves (they are not masked; the first one is the mask)."""
        key = tuple(prompts)
        if key not in self._clouds:
            from .resampled import prompt_classes  # noqa: PLC0415

            self._clouds[key] = [c == CLOUD for c in prompt_classes(self.inner, key)]
        return self._clouds[key]

    def check_prompts(self, prompts: Sequence[str]) -> None:
        self.inner.check_prompts(list(prompts))
        if not any(self.cloud_prompts(prompts)) and self.phrase not in prompts:
            self.inner.check_prompts([*prompts, self.phrase])

    def predict(self, tiles: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        prompts = list(prompts)
        is_cloud = self.cloud_prompts(prompts)
        if any(is_cloud):
            probs = np.array(self.inner.predict(tiles, prompts), dtype=np.float32)
            cloud = probs[:, is_cloud.index(True)].copy()
        else:
            both = np.asarray(self.inner.predict(tiles, [*prompts, self.phrase]), dtype=np.float32)
            probs, cloud = both[:, :-1].copy(), both[:, -1]
        seen = seen_share(cloud)
        for k, c in enumerate(is_cloud):
            if not c:
                probs[:, k] *= seen
        return probs
