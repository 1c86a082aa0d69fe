"""What one class hides from above is not reported as the classes under it.

An aerial or satellite pixel shows one surface: the top of whatever is there. A mask head that
paints a class wherever it *might* be paints it under what covers it too (ground classes under
clouds, roofs and ponds under tree crowns), and a map of what is seen should not. The covering
class's own probability on the same tile, from the same model call, decides how much of each
pixel is seen: :func:`seen_share` of it multiplies every hidden class's probability. Clouds
(:mod:`.cloud_masked`) hide every other class; tree and grass cover (:mod:`.canopy`) hides
buildings and water.
"""
from __future__ import annotations

from typing import Any, Collection, Sequence

import numpy as np

from ..errors import InputError
from .protocol import SegmenterWrapper

__all__ = ["CLEAR_BELOW", "HIDDEN_ABOVE", "OccludedSegmenter", "check_auto_flag", "class_phrase", "cover_phrase",
           "seen_share"]

#: the cover's probability up to which the pixel counts as fully seen, and from which as hidden
CLEAR_BELOW, HIDDEN_ABOVE = 0.25, 0.75


def seen_share(cover: np.ndarray) -> np.ndarray:
    """How much of what lies beneath a pixel with cover probability ``cover`` shows (1 clear, 0 hidden).

    1 up to 0.25 and linear to 0 at 0.75: smooth, so tiles still blend without seams, centred on
    0.5, where masks and replies in words draw the cover, and deaf to the diffuse low probability
    a model spreads over uncovered ground.
    """
    return np.clip((np.float32(HIDDEN_ABOVE) - cover) / np.float32(HIDDEN_ABOVE - CLEAR_BELOW), 0.0, 1.0,
                   dtype=np.float32)


def class_phrase(segmenter: Any, name: str) -> str | None:
    """The phrase ``segmenter``'s model segments class ``name`` with (None: not a GeoPix model, or no such class).

    The same phrase a reply's mask of that class is asked with (``model.dialogue.class_phrases``).
    """
    model = getattr(segmenter, "model", None)
    if getattr(getattr(model, "config", None), "concepts", None) is None:
        return None  # not a GeoPix model (the spectral segmenter)
    from ..model.dialogue import class_phrases  # noqa: PLC0415

    return dict(class_phrases(model)).get(name)


def cover_phrase(segmenter: Any, cover: str, value: bool | str, flag: str, what: str) -> str | None:
    """The phrase to ask for class ``cover`` with, or None when the resolved ``value`` does not wrap ``segmenter``.

    ``"auto"`` on a model without the class does not wrap; ``True`` there is refused with one line that names
    the option (``flag``) and what the model lacks (``what``, e.g. "clouds").
    """
    phrase = class_phrase(segmenter, cover)
    if phrase is None and value is True:
        raise InputError(f"{flag} needs a model that segments {what} (e.g. --model default); "
                         f"this model has no {cover} class, so run without {flag}")
    return phrase


def check_auto_flag(option: str, value: Any) -> bool | str:
    """``value`` as ``True``, ``False`` or ``"auto"`` (``None`` means ``"auto"``); anything else is refused."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return "auto"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InputError(f"{option} must be True, False or 'auto', not {value!r}")


class OccludedSegmenter(SegmenterWrapper):
    """The inner segmenter's probabilities times :func:`seen_share` of the cover class's for every hidden prompt.

    ``cover``: the class that hides (its first prompt among the caller's is the cover's mask, or
    ``phrase`` is asked as one more prompt of the same call); ``hides``: the classes it hides
    (``None``: every class but itself, and prompts the model cannot place in a class).
    """

    def __init__(self, inner: Any, phrase: str, cover: str, hides: Collection[str] | None = None) -> None:
        super().__init__(inner)
        self.phrase = phrase
        self.cover = cover
        self.hides = None if hides is None else frozenset(hides)
        self._classes: dict[tuple[str, ...], list[str | None]] = {}

    def prompt_classes(self, prompts: Sequence[str]) -> list[str | None]:
        key = tuple(prompts)
        if key not in self._classes:
            from .resampled import prompt_classes  # noqa: PLC0415

            self._classes[key] = prompt_classes(self.inner, key)
        return self._classes[key]

    def cover_prompts(self, prompts: Sequence[str]) -> list[bool]:
        """Which prompts ask for the cover class itself (they are not masked; the first one is the mask)."""
        return [c == self.cover for c in self.prompt_classes(prompts)]

    def hidden_prompts(self, prompts: Sequence[str]) -> list[bool]:
        """Which prompts the cover hides."""
        return [c != self.cover and (self.hides is None or c in self.hides) for c in self.prompt_classes(prompts)]

    def check_prompts(self, prompts: Sequence[str]) -> None:
        self.inner.check_prompts(list(prompts))
        if not any(self.cover_prompts(prompts)) and self.phrase not in prompts:
            self.inner.check_prompts([*prompts, self.phrase])

    def predict(self, tiles: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        prompts = list(prompts)
        hidden = self.hidden_prompts(prompts)
        if not any(hidden):
            return self.inner.predict(tiles, prompts)
        is_cover = self.cover_prompts(prompts)
        if any(is_cover):
            probs = np.array(self.inner.predict(tiles, prompts), dtype=np.float32)
            cover = probs[:, is_cover.index(True)].copy()
        else:
            both = np.asarray(self.inner.predict(tiles, [*prompts, self.phrase]), dtype=np.float32)
            probs, cover = both[:, :-1].copy(), both[:, -1]
        seen = seen_share(cover)
        for k, h in enumerate(hidden):
            if h:
                probs[:, k] *= seen
        return probs
