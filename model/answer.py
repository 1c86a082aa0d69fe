"""Replies written from the masks the model predicted, so their numbers are true of those masks.

A 2-layer LLM trained on a CPU cannot count forty buildings or measure a lake; asked to
write "there are 12 buildings" it writes whatever number its templates held most often.
So the words of a reply are composed here from the reply's own masks: a count is the number
of connected components the reply returns, an area is their pixel count times the pixel
area, a location is where their mass lies. Anyone can recompute each number from the masks
(the tests do).

Everything is numpy/scipy on boolean masks in the model's input grid; ``pixel_area_m2`` (from
the window's transform) turns pixels into square metres when the caller knows it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["MaskFacts", "mask_facts", "min_object_pixels", "part_sizes", "parts_within", "sizeable_pixels", "area_in",
           "round_sig", "min_size_phrase", "masked_logits", "present",
           "location_phrase", "area_phrase",
           "share_phrase", "is_plural", "near_components", "join_words", "article"]

#: objects smaller than this (m²) are not counted: single speckle pixels are not buildings
MIN_OBJECT_M2 = 4.0
#: a class is "present" when it covers at least this share of the view (and MIN_PRESENT_PIXELS)
MIN_PRESENT_SHARE = 0.0025
MIN_PRESENT_PIXELS = 16
#: a part of a cover class (water, vegetation, ...) at least this large is named on its own in a count
#: ("6 of them are 0.1 ha or larger"): a pond or a wood, where 4 m² specks of water are not lakes
SIZEABLE_M2 = 1_000.0
#: the same without a pixel size: a share of the view
SIZEABLE_SHARE = 0.01

_CELLS = (("north-west", "north", "north-east"), ("west", "centre", "east"), ("south-west", "south", "south-east"))


@dataclass(frozen=True)
class MaskFacts:
    """What a reply may say about one mask; every field is computed from the mask itself."""

    pixels: int
    share: float  # of the view's pixels
    area_m2: float | None
    count: int  # connected components of at least min_object_pixels
    location: str  # "in the north-east", "across the whole view", "" when empty

    @property
    def present(self) -> bool:
        return present(self.pixels, self.share)


def present(pixels: int, share: float) -> bool:
    """The presence rule shared by replies and by the presence score of ``evaluate``."""
    return pixels >= MIN_PRESENT_PIXELS and share >= MIN_PRESENT_SHARE


def min_object_pixels(pixel_area_m2: float | None) -> int:
    if not pixel_area_m2:
        return 4
    return max(4, int(math.ceil(MIN_OBJECT_M2 / pixel_area_m2)))


def _components(mask: np.ndarray, min_pixels: int) -> tuple[np.ndarray, int]:
    from scipy import ndimage

    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return labels, 0
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= min_pixels) + 1
    return labels, int(keep.size)


def part_sizes(mask: np.ndarray, min_pixels: int = 1) -> np.ndarray:
    """Pixel counts of the connected parts of ``mask`` (the connectivity counts use) of at least
    ``min_pixels``, largest first."""
    labels, n = _components(np.asarray(mask, dtype=bool), 1)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    sizes = np.bincount(labels.ravel())[1:]
    return np.sort(sizes[sizes >= max(1, int(min_pixels))])[::-1]


def parts_within(mask: np.ndarray, low_pixels: float = 0, high_pixels: float = math.inf) -> np.ndarray:
    """The connected parts of ``mask`` of at least ``low_pixels`` and under ``high_pixels`` pixels:
    "the lakes larger than 10 ha" (counts, areas and locations then follow the parts kept)."""
    labels, n = _components(np.asarray(mask, dtype=bool), 1)
    if n == 0:
        return np.zeros(np.shape(mask), dtype=bool)
    sizes = np.bincount(labels.ravel())
    keep = (sizes >= low_pixels) & (sizes < high_pixels)
    keep[0] = False
    return keep[labels]


def sizeable_pixels(pixel_area_m2: float | None, view_pixels: int) -> int:
    """The smallest part of a cover class a count names on its own (:data:`SIZEABLE_M2`)."""
    if pixel_area_m2:
        return max(1, int(math.ceil(SIZEABLE_M2 / pixel_area_m2)))
    return max(1, int(math.ceil(SIZEABLE_SHARE * view_pixels)))


def min_size_phrase(pixel_area_m2: float | None) -> str:
    """The smallest part a count counts: 4 m², but never under 4 pixels (36 ha on a 300 m scene)."""
    if pixel_area_m2:
        pixels = min_object_pixels(pixel_area_m2)
        return area_phrase(pixels * pixel_area_m2, pixels).removeprefix("about ")
    return f"{min_object_pixels(None)} pixels"


def largest_part(mask: np.ndarray) -> np.ndarray:
    """The largest connected part of ``mask`` (the connectivity counts use): "the largest lake"."""
    labels, n = _components(np.asarray(mask, dtype=bool), 1)
    if n == 0:
        return np.zeros(np.shape(mask), dtype=bool)
    return labels == int(np.bincount(labels.ravel())[1:].argmax()) + 1


def smallest_part(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """The smallest connected part of ``mask`` that a count would count (``min_pixels`` or more): "the smallest
    lake" is the least of the lakes a reply counts, not a stray pixel."""
    labels, n = _components(np.asarray(mask, dtype=bool), 1)
    sizes = np.bincount(labels.ravel())[1:] if n else np.zeros(0, int)
    keep = np.flatnonzero(sizes >= min_pixels)
    if keep.size == 0:
        return np.zeros(np.shape(mask), dtype=bool)
    return labels == int(keep[sizes[keep].argmin()]) + 1


def mask_facts(mask: np.ndarray, pixel_area_m2: float | None = None, valid: np.ndarray | None = None) -> MaskFacts:
    """Facts of ``mask``; with ``valid`` (pixels the scene has data for) its share is of those pixels."""
    mask = np.asarray(mask, dtype=bool)
    pixels = int(mask.sum())
    share = share_of(mask, valid)
    _, count = _components(mask, min_object_pixels(pixel_area_m2))
    area = pixels * pixel_area_m2 if pixel_area_m2 else None
    return MaskFacts(pixels, share, area, count, location_phrase(mask))


def share_of(mask: np.ndarray, valid: np.ndarray | None = None) -> float:
    """The share of the view ``mask`` covers; with ``valid``, of the pixels the scene has data for."""
    mask = np.asarray(mask, dtype=bool)
    return int(mask.sum()) / max(1, mask.size if valid is None else int(np.count_nonzero(valid)))


def location_phrase(mask: np.ndarray) -> str:
    """Where a mask's pixels lie in a 3 x 3 grid of the view (north up for north-up grids)."""
    mask = np.asarray(mask, dtype=bool)
    total = int(mask.sum())
    if total == 0:
        return ""
    h, w = mask.shape
    rows = np.array_split(np.arange(h), 3)
    cols = np.array_split(np.arange(w), 3)
    cells = np.array([[mask[r[0]:r[-1] + 1, c[0]:c[-1] + 1].sum() for c in cols] for r in rows], float) / total
    if (cells >= 0.05).sum() >= 7:
        return "across the whole view"
    yy, xx = np.nonzero(mask)
    r = min(2, int(3 * yy.mean() / h))
    c = min(2, int(3 * xx.mean() / w))
    if cells[r, c] < 0.25 and (cells >= 0.05).sum() >= 4:
        return f"spread over the view, mostly {_at(_CELLS[r][c])}"
    return _at(_CELLS[r][c])


def place_region(cell: int, shape: tuple[int, int]) -> np.ndarray:
    """The part of a view a question's place names, on the same 3 x 3 grid as :func:`location_phrase`.

    ``cell`` indexes the grid row by row (``location_prior.CELLS``). A corner ("north-east")
    is its ninth; a side ("north", "west") is the whole third along that side, which is what
    "the water in the north" means; the centre is the middle ninth.
    """
    h, w = shape
    rows = np.array_split(np.arange(h), 3)
    cols = np.array_split(np.arange(w), 3)
    r, c = divmod(int(cell), 3)
    take_rows = [0, 1, 2] if (r == 1 and c != 1) else [r]
    take_cols = [0, 1, 2] if (c == 1 and r != 1) else [c]
    out = np.zeros((h, w), dtype=bool)
    for i in take_rows:
        for j in take_cols:
            out[rows[i][0]:rows[i][-1] + 1, cols[j][0]:cols[j][-1] + 1] = True
    return out


def place_words(cell: int) -> str:
    """The reply's words for a grid cell: "in the north-east", "in the centre"."""
    r, c = divmod(int(cell), 3)
    return _at(_CELLS[r][c])


def place_noun(cell: int) -> str:
    """A grid cell as a noun: "the north-east", "the centre" (what a share is "of")."""
    return place_words(cell).removeprefix("in ")


def _at(cell: str) -> str:
    return "in the centre" if cell == "centre" else f"in the {cell}"


def area_phrase(area_m2: float | None, pixels: int) -> str:
    if area_m2 is None:
        return f"{pixels:,} pixels"
    if area_m2 < 1:  # a few pixels of 0.3 m: "about 0 m²" read as nothing at all
        return "less than 1 m²"
    if area_m2 < 10_000:
        v = round_sig(area_m2)
        return f"about {v:,.0f} m²"
    if area_m2 < 1_000_000:
        return f"about {area_m2 / 10_000:.1f} ha"
    km2 = area_m2 / 1_000_000
    if km2 < 10:
        return f"about {km2:.2f} km²"
    if km2 < 100:
        return f"about {km2:.1f} km²"
    return f"about {round_sig(km2, 3):,.0f} km²"  # "about 21,500 km²", not "21454.14"


#: units a question may ask an area in ("How much water is there in hectares?"): square metres per unit
AREA_UNITS = {"m²": 1.0, "ha": 1e4, "km²": 1e6, "acres": 4046.8564224, "sq ft": 0.09290304, "sq mi": 2589988.110336}


def area_in(area_m2: float, unit: str) -> str:
    """ "about 422 ha", "about 1,040 acres": an area in the unit a question asked for (two significant figures
    at least, whole numbers from 100 on)."""
    v = area_m2 / AREA_UNITS[unit]
    text = f"{round_sig(v, 3):,.0f}" if v >= 100 else f"{round_sig(v, 2):,.3g}" if v > 0 else "0"
    return f"about {text} {unit}"


def round_sig(x: float, digits: int = 2) -> float:
    """``x`` to ``digits`` significant figures (``round_sig(21_454.14, 3) == 21_500``)."""
    if x <= 0:
        return 0.0
    return round(x, -int(math.floor(math.log10(x))) + digits - 1)


def share_phrase(share: float) -> str:
    pct = 100.0 * share
    if pct >= 10:
        return f"{pct:.0f} %"
    if pct >= 1:
        return f"{pct:.1f} %"
    if 0 < pct < 0.005:  # "about 0.00 % of the view (6 pixels)" read as nothing
        return "less than 0.01 %"
    return f"{pct:.2f} %"


def masked_logits(mask: np.ndarray, logit: np.ndarray) -> np.ndarray:
    """The logits a reply returns with ``mask``: its pixels keep theirs, every other pixel is pushed below 0, so
    that ``logits > 0`` is the mask the words measured."""
    return np.where(mask, logit, np.minimum(logit, -1e-3)).astype(np.float32)


def about(amount: str) -> str:
    """ "about 25 %", but "less than 0.01 %" as it is."""
    return amount if amount.startswith("less than") else f"about {amount}"


def is_plural(phrase: str) -> bool:
    last = phrase.split()[-1].lower() if phrase.split() else ""
    return last.endswith("s") and not last.endswith(("ss", "us", "is"))


def article(word: str) -> str:
    """ "a" or "an" before ``word`` (by its first letter: good enough for class and scene names)."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def join_words(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def near_components(mask: np.ndarray, other: np.ndarray, distance_px: int) -> np.ndarray:
    """The connected parts of ``mask`` that come within ``distance_px`` of ``other``."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    other = np.asarray(other, dtype=bool)
    if not mask.any() or not other.any():
        return np.zeros_like(mask)
    grown = ndimage.binary_dilation(other, structure=np.ones((3, 3), bool), iterations=max(1, int(distance_px)))
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    touching = np.unique(labels[grown & mask])
    touching = touching[touching > 0]
    return np.isin(labels, touching)
