"""The global tile grid.

There is exactly one tile grid per scene, independent of how the scene is later chunked
(strips in the CLI, dask blocks in notebooks or on a cluster), so every code path sees the
same tiles and produces the same pixels. The last row and column are shifted inward so
every tile is full size and no padding ever reaches the model.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass
from functools import cached_property

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from rasterio.windows import Window


def axis_starts(length: int, tile: int, overlap: int) -> tuple[int, ...]:
    """Tile offsets along one axis: regular stride, last one shifted inward to the edge."""
    if length <= tile:
        return (0,)
    stride = tile - overlap
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return tuple(starts)


@dataclass(frozen=True)
class Tile:
    """One tile: its row/column index in the grid and its pixel window."""

    row: int
    col: int
    y: int
    x: int
    height: int
    width: int

    @property
    def window(self) -> "Window":
        """The tile's pixels as a rasterio :class:`~rasterio.windows.Window`."""
        from rasterio.windows import Window  # noqa: PLC0415 - rasterio only when a window is asked for

        return Window(self.x, self.y, self.width, self.height)


@dataclass(frozen=True)
class Panel:
    """A vertical band of output columns ``[x0, x1)`` and the grid columns whose tiles touch it.

    ``[xa, xb)`` is the source window those tiles cover. Processing a wide scene panel by
    panel bounds memory by the panel width instead of the scene width; tiles straddling a
    panel edge are computed by both panels (the price of flat memory).
    """

    index: int
    x0: int
    x1: int
    cols: tuple[int, ...]
    xa: int
    xb: int


@dataclass(frozen=True)
class TileGrid:
    """Tiles covering a ``height x width`` raster with ``overlap`` pixels shared by neighbours.

    Scenes smaller than a tile get one tile clipped to the scene, so all tiles of a grid
    share one shape and can be batched.
    """

    height: int
    width: int
    tile: int
    overlap: int

    def __post_init__(self) -> None:
        if self.tile <= 0 or self.overlap < 0:
            raise InputError(f"tile size {self.tile} and overlap {self.overlap} must be positive; pass e.g. --tile 512 --overlap 64")
        if self.tile <= 2 * self.overlap:
            raise InputError(
                f"tile size {self.tile} must be larger than twice the overlap {self.overlap}; "
                f"use a larger --tile or a smaller --overlap (e.g. --overlap {max(0, self.tile // 8)})"
            )
        if self.height <= 0 or self.width <= 0:
            raise InputError(f"raster of {self.height} x {self.width} pixels has nothing to tile")

    @property
    def tile_height(self) -> int:
        return min(self.tile, self.height)

    @property
    def tile_width(self) -> int:
        return min(self.tile, self.width)

    @cached_property
    def row_starts(self) -> tuple[int, ...]:
        return axis_starts(self.height, self.tile, self.overlap)

    @cached_property
    def col_starts(self) -> tuple[int, ...]:
        return axis_starts(self.width, self.tile, self.overlap)

    @property
    def n_rows(self) -> int:
        return len(self.row_starts)

    @property
    def n_cols(self) -> int:
        return len(self.col_starts)

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def tile_at(self, row: int, col: int) -> Tile:
        return Tile(row, col, self.row_starts[row], self.col_starts[col], self.tile_height, self.tile_width)

    def row_tiles(self, row: int) -> list[Tile]:
        return [self.tile_at(row, c) for c in range(self.n_cols)]

    def __iter__(self):
        for r in range(self.n_rows):
            yield from self.row_tiles(r)

    def final_row(self, row: int) -> int:
        """First raster row that tiles after grid row ``row`` can still touch.

        Rows above it are final once grid row ``row`` is accumulated, so they can be
        flushed; it is what bounds the strip accumulator.
        """
        return self.row_starts[row + 1] if row + 1 < self.n_rows else self.height

    def exclusive(self, tile: Tile) -> tuple[int, int, int, int]:
        """Tile-local ``(y0, y1, x0, x1)`` of the pixels no other tile covers (maybe empty).

        Blending weights are exactly 1 there (ramps live inside the overlaps), so the
        engine can copy instead of multiply-add: bit-identical, and much cheaper.
        """
        return (*self._exclusive_span(self.row_starts, tile.row, self.tile_height),
                *self._exclusive_span(self.col_starts, tile.col, self.tile_width))

    @staticmethod
    def _exclusive_span(starts: tuple[int, ...], i: int, size: int) -> tuple[int, int]:
        lo = max(0, starts[i - 1] + size - starts[i]) if i > 0 else 0
        hi = min(size, starts[i + 1] - starts[i]) if i + 1 < len(starts) else size
        return lo, max(lo, hi)

    def panels(self, width: int | None) -> list[Panel]:
        """Split the columns into panels ``width`` wide (one panel when ``width`` is None or wider)."""
        width = self.width if not width or width >= self.width else int(width)
        out = []
        for i, x0 in enumerate(range(0, self.width, width)):
            x1 = min(self.width, x0 + width)
            cols = tuple(c for c, x in enumerate(self.col_starts) if x < x1 and x + self.tile_width > x0)
            xa = self.col_starts[cols[0]]
            xb = self.col_starts[cols[-1]] + self.tile_width
            out.append(Panel(i, x0, x1, cols, xa, xb))
        return out

    def tiles_touching(self, window: "Window") -> list[Tile]:
        """All tiles that intersect ``window`` (a rasterio Window), in grid order."""
        (y0, y1), (x0, x1) = window.toranges()
        th, tw = self.tile_height, self.tile_width
        rows = [r for r, y in enumerate(self.row_starts) if y < y1 and y + th > y0]
        cols = [c for c, x in enumerate(self.col_starts) if x < x1 and x + tw > x0]
        return [self.tile_at(r, c) for r in rows for c in cols]
