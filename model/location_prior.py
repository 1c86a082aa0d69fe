"""Where a referring phrase says its object is: a learned coarse map per named part of the tile.

Why: "the medium-sized building in the lower left" differs from "... in the upper right" by two
words. Read as a mean of token embeddings, or as one sentence embedding, the place is a small
part of the prompt's meaning, and the mask decoder of a short run (two chips, 400 steps) does
not learn to read it: the tiny preset painted every building, or the wrong ones, for such
phrases. Here the place named in the subject ("in the lower left", "at the top", "in the
north-east") picks one of nine learned ``G x G`` logit maps (a shallower set for objects called
large) that is added to the target's mask;
a prompt that names no place ("buildings", "the roofs near the road") gets exactly zero, so
class prompts cannot pick up the layout of the training chips.

Place words in a context clause (", with roads to the east") describe a neighbour, not the
object, and are not read.
"""
from __future__ import annotations

import re
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["CELLS", "EXTENTS", "LocationPrior", "named_place", "place_named_alone", "place_word_span", "places_named",
           "starting_maps"]

#: the nine parts of a tile a phrase can name, row by row (the referring templates' words)
CELLS = ("upper left", "top", "upper right", "left", "center", "right", "lower left", "bottom", "lower right")

_SYNONYMS = {
    "upper left": ("top left", "top-left", "upper-left", "north-west", "northwest", "north west"),
    "upper right": ("top right", "top-right", "upper-right", "north-east", "northeast", "north east"),
    "lower left": ("bottom left", "bottom-left", "lower-left", "south-west", "southwest", "south west"),
    "lower right": ("bottom right", "bottom-right", "lower-right", "south-east", "southeast", "south east"),
    "top": ("north", "upper part", "top edge"),
    "bottom": ("south", "lower part", "bottom edge"),
    "left": ("west", "left side", "left edge"),
    "right": ("east", "right side", "right edge"),
    "center": ("centre", "middle"),
}
# two-word names first, so that "lower left" is not read as "left"
_PATTERNS = sorted(((alias, CELLS.index(cell)) for cell in CELLS for alias in (cell, *_SYNONYMS[cell])),
                   key=lambda a: -len(a[0]))
_REGEX = [(re.compile(rf"\b(?:in|at|on|of|to(?:wards)?|near) (?:the )?{re.escape(a)}\b"), i) for a, i in _PATTERNS]

#: Adam moves a weight by about the learning rate per step; the maps are read at this scale so
#: that training can reshape them by whole logits (a cell is named in ~1 % of a short run's steps)
_SCALE = 8.0
#: starting maps, per extent: logits far from the named part (0 inside it) and the distance
#: (share of the tile side) over which they ramp. Objects named "in the lower left" have their
#: centre there; a large one ("the large road at the center") reaches far beyond, so its map
#: starts shallow and wide.
_START = {"compact": (6.0, 1.0 / 6.0), "large": (2.0, 1.0 / 3.0)}
EXTENTS = tuple(_START)
_LARGE = re.compile(r"\b(?:large|big|huge|vast|extensive|wide|long|major)\b")


def named_place(text: str) -> tuple[int, str] | None:
    """``(index into CELLS, extent)`` of the place the phrase's subject names, or None.

    >>> named_place("the medium-sized building in the lower left, with roads to the east")
    (6, 'compact')
    >>> named_place("a large road at the center")
    (4, 'large')
    >>> named_place("buildings") is None
    True
    """
    head = str(text).lower().split(", with ")[0]
    for pattern, index in _REGEX:
        if pattern.search(head):
            return index, ("large" if _LARGE.search(head) else "compact")
    return None


#: words before a place a question names; "of" for "How much of the north is water?"
_PREPOSITIONS = ("in", "at", "on", "to", "towards", "near", "of")


def place_word_span(words: list[str] | tuple[str, ...]) -> tuple[int, int] | None:
    """``(start, end)`` of the place's own words ("upper right" in "the vehicle on the upper right") in
    ``words`` (lower-case, hyphens kept), or None: the words a question names a place with, which are never
    what it asks about.

    >>> place_word_span("can you segment the vehicle on the upper right".split())
    (7, 9)
    >>> place_word_span("is there water in the north-east".split())
    (5, 6)
    >>> place_word_span("how much of the north is water".split())
    (4, 5)
    >>> place_word_span("the right buildings".split()) is None
    True
    """
    words = [str(w).lower() for w in words]
    for _, i, end in _place_names(words):
        before = words[i - 1]
        if before in _PREPOSITIONS or (before == "the" and i >= 2 and words[i - 2] in _PREPOSITIONS):
            return i, end
    return None


def _place_names(words: list[str]):
    """``(index into CELLS, start, end)`` of every place name in ``words`` after the first word, longest names
    first ("lower left" before "left")."""
    for alias, index in _PATTERNS:
        toks = alias.split()
        n = len(toks)
        for i in range(1, len(words) - n + 1):
            if words[i:i + n] == toks:
                yield index, i, i + n


_PLACE_NOUNS = ("part", "corner", "side", "quarter", "half", "edge", "third")


def place_named_alone(words: list[str] | tuple[str, ...]) -> tuple[int, tuple[int, int]] | None:
    """``(index into CELLS, (start, end))`` of a place a question names as its own subject, without a
    preposition ("describe the north-west", "the northwest corner of the image"), or None.

    :func:`place_word_span` reads only places after "in"/"at"/...; a caption request names the part
    itself, and its words were then read as an unknown thing ("I have not learned to recognise north-west").
    The span covers a following "part"/"corner"/... too. Not for referring prompts: there a bare place
    word may be part of an object's name ("the north road").

    >>> place_named_alone("describe the north-west".split())
    (0, (2, 3))
    >>> place_named_alone("describe the northwest corner of the image".split())
    (0, (2, 4))
    >>> place_named_alone("describe the north road".split()) is None
    True
    >>> place_named_alone("is the south mostly vegetation".split())
    (7, (2, 3))
    """
    words = [str(w).lower() for w in words]
    for index, i, end in _place_names(words):
        if words[i - 1] not in ("the", "its", "image's", "scene's", "view's"):
            continue
        if end < len(words) and words[end] in _PLACE_NOUNS:
            end += 1
        if end == len(words) or words[end] in ("of", "please", "mostly", "mainly", "largely", "predominantly"):
            return index, (i, end)
    return None


def places_named(words: list[str] | tuple[str, ...]) -> list[tuple[int, int, int]]:
    """``(index into CELLS, start, end)`` of every place name in ``words``, in word order, none inside another
    ("the north-east" is one place, not also "east"): the two places of "more water in the north or the south?".

    >>> places_named("is there more water in the north or in the south-east".split())
    [(1, 6, 7), (8, 10, 11)]
    """
    words = [str(w).lower() for w in words]
    taken: list[tuple[int, int, int]] = []
    for index, i, end in _place_names(words):  # longest names first
        if all(end <= a or i >= b for _, a, b in taken):
            taken.append((index, i, end))
    return sorted(taken, key=lambda t: t[1])


def starting_maps(grid: int) -> torch.Tensor:
    """``[2 * 9, grid * grid]`` logits, per extent and cell: 0 over the named third, lower away from it.

    Why start from the words' geometry rather than zero: the referring templates (and replies'
    ``location_phrase``) name the third of the tile that holds an object's centre, so that is
    what the words mean; a short run only has to refine it (from zero, 400 steps on two chips
    moved the maps by about one logit, too little to silence the wrong buildings).
    """
    centres = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
    maps = []
    for depth, ramp in _START.values():
        for index in range(len(CELLS)):
            r, c = divmod(index, 3)
            dy = (r / 3 - centres).clamp(min=0) + (centres - (r + 1) / 3).clamp(min=0)
            dx = (c / 3 - centres).clamp(min=0) + (centres - (c + 1) / 3).clamp(min=0)
            d = torch.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)
            maps.append(-depth * (d / ramp).clamp(max=1.0))
    return torch.stack(maps).view(len(maps), grid * grid)


class LocationPrior(nn.Module):
    """Learned ``grid x grid`` logit maps, one per extent and :data:`CELLS` entry (start: :func:`starting_maps`)."""

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.grid = int(grid)
        self.maps = nn.Embedding(len(EXTENTS) * len(CELLS), self.grid * self.grid)
        with torch.no_grad():
            self.maps.weight.copy_(starting_maps(self.grid) / _SCALE)

    def forward(self, texts: Sequence[str], size: tuple[int, int]) -> torch.Tensor | None:
        """``[N, H, W]`` logits to add to each text's mask, or None when no text names a place."""
        places = [named_place(t) for t in texts]
        named = [i for i, p in enumerate(places) if p is not None]
        if not named:
            return None
        w = self.maps.weight
        rows = [EXTENTS.index(places[i][1]) * len(CELLS) + places[i][0] for i in named]
        grid = (_SCALE * self.maps(torch.tensor(rows, device=w.device))).float().view(-1, 1, self.grid, self.grid)
        up = F.interpolate(grid, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
        out = up.new_zeros((len(texts), *up.shape[1:]))  # places not named: exactly zero
        return out.index_copy(0, torch.tensor(named, device=up.device), up)
