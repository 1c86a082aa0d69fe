"""Where a referring phrase says its object is: a learned coarse map per named part of the tile.

Why: "the medium-sized building in the lower left" differs from "... in the upper right" by two
words. Read as a mean of token embeddings, or as one sentence embedding, the place is a small
part of the prompt's meaning, and the mask decoder of a short run (two chips, 400 steps) does
not learn to read it: the tiny preset painted every building, or the wrong ones, for such
phrases. Here the place named in the subject ("in the lower left", "at the top", "in the
north-east") picks one of nine learned ``G x G`` logit maps that is added to the target's mask;
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

__all__ = ["CELLS", "LocationPrior", "named_cell"]

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
_REGEX = [(re.compile(rf"\b(?:in|at|on|to(?:wards)?|near) the {re.escape(a)}\b"), i) for a, i in _PATTERNS]

#: Adam moves a weight by about the learning rate per step; the maps are read at this scale so a
#: few hundred steps reach logit-sized biases (at scale 1 they stayed within +-0.3 in 400 steps)
_SCALE = 8.0


def named_cell(text: str) -> int | None:
    """Index into :data:`CELLS` of the place the phrase's subject names, or None.

    >>> named_cell("the medium-sized building in the lower left, with roads to the east")
    6
    >>> named_cell("buildings") is None
    True
    """
    head = str(text).lower().split(", with ")[0]
    for pattern, index in _REGEX:
        if pattern.search(head):
            return index
    return None


class LocationPrior(nn.Module):
    """Nine learned ``grid x grid`` logit maps, one per :data:`CELLS` entry, zero at the start."""

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.grid = int(grid)
        self.maps = nn.Embedding(len(CELLS), self.grid * self.grid)
        nn.init.zeros_(self.maps.weight)

    def forward(self, texts: Sequence[str], size: tuple[int, int]) -> torch.Tensor | None:
        """``[N, H, W]`` logits to add to each text's mask, or None when no text names a place."""
        cells = [named_cell(t) for t in texts]
        named = [i for i, c in enumerate(cells) if c is not None]
        if not named:
            return None
        w = self.maps.weight
        ids = torch.tensor([cells[i] for i in named], device=w.device)
        grid = (_SCALE * self.maps(ids)).float().view(-1, 1, self.grid, self.grid)
        up = F.interpolate(grid, size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
        out = up.new_zeros((len(texts), *up.shape[1:]))  # places not named: exactly zero
        return out.index_copy(0, torch.tensor(named, device=up.device), up)
