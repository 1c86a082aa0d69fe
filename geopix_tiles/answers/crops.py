"""Where a polygon is read from: a square context window around it, the crop's grid and mask.

The model sees tiles of ``tile_size`` pixels, so a region is described from a *context
window* cut around it (see :mod:`.regions` for why square, padded, at least one tile, and
shifted inward at the edges), given as a rasterio :class:`~rasterio.windows.Window` and read
by a :class:`~.pixels.PixelSource` into a ``tile x tile`` crop with its own transform.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
from affine import Affine

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    from rasterio.windows import Window

if TYPE_CHECKING:  # pragma: no cover
    from .pixels import PixelSource

__all__ = ["DEFAULT_CONTEXT", "context_window", "pixel_bounds", "crop_transform", "region_mask", "RegionCrop",
           "check_regions", "iter_crops", "area_m2"]

#: Padding on each side of a polygon, as a fraction of its larger extent.
DEFAULT_CONTEXT = 0.5


def context_window(bounds_px: tuple[float, float, float, float], height: int, width: int, tile: int,
                   context: float = DEFAULT_CONTEXT) -> Window | None:
    """Square pixel :class:`~rasterio.windows.Window` around ``(col0, row0, col1, row1)`` bounds.

    ``None`` when the bounds do not overlap the raster. See the module docstring for why
    the window is square, padded and at least one tile.
    """
    c0, r0, c1, r1 = bounds_px
    if c1 <= 0 or r1 <= 0 or c0 >= width or r0 >= height:
        return None
    extent = max(c1 - c0, r1 - r0, 1.0)
    side = int(math.ceil(max(extent * (1.0 + 2.0 * context), tile)))
    cy, cx = (r0 + r1) / 2.0, (c0 + c1) / 2.0

    def place(centre: float, size: int) -> tuple[int, int]:
        n = min(side, size)
        start = int(round(centre - n / 2.0))
        return max(0, min(start, size - n)), n

    from rasterio.windows import Window  # noqa: PLC0415 - rasterio only when pixels are read

    row0, rows = place(cy, height)
    col0, cols = place(cx, width)
    return Window(col0, row0, cols, rows)


def pixel_bounds(geom, transform: Affine) -> tuple[float, float, float, float]:
    """Pixel-space bounds of a geometry (exact for rotated transforms too: all four corners)."""
    minx, miny, maxx, maxy = geom.bounds
    inv = ~transform
    cols, rows = zip(*(inv @ (x, y) for x, y in ((minx, miny), (minx, maxy), (maxx, miny), (maxx, maxy))))
    return min(cols), min(rows), max(cols), max(rows)


def crop_transform(transform: Affine, window: Window, out_shape: tuple[int, int]) -> Affine:
    """Georeference of ``window`` read (resampled) into ``out_shape = (rows, cols)`` pixels."""
    from rasterio import windows  # noqa: PLC0415

    return windows.transform(window, transform) @ Affine.scale(window.width / out_shape[1],
                                                               window.height / out_shape[0])


def region_mask(geom, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """The polygon rasterized on the crop grid; slivers thinner than a pixel keep the pixels they touch."""
    from rasterio.features import rasterize  # noqa: PLC0415

    mask = rasterize([(geom, 1)], out_shape=shape, transform=transform, fill=0, dtype="uint8").astype(bool)
    if not mask.any():
        mask = rasterize([(geom, 1)], out_shape=shape, transform=transform, fill=0, dtype="uint8",
                         all_touched=True).astype(bool)
    return mask


@dataclass
class RegionCrop:
    """One polygon prepared for the model."""

    row: int
    image: np.ndarray  # float32 [3, T, T]
    mask: np.ndarray  # bool [T, T]
    transform: Affine
    area_m2: float | None = None  # of the polygon itself, when the scene CRS is projected
    valid: np.ndarray | None = None  # bool [T, T]: pixels the scene has data for (None: all)


def check_regions(regions: Any, require_crs: bool = True) -> "gpd.GeoDataFrame":
    """``regions`` checked; ``require_crs=False`` accepts polygons without a CRS (pixel coordinates of a
    scene without one, ``--allow-no-georef``)."""
    import geopandas as gpd  # noqa: PLC0415

    if not isinstance(regions, gpd.GeoDataFrame):
        raise InputError(f"regions must be a GeoDataFrame, got {type(regions).__name__}")
    if not len(regions):
        raise InputError("the regions are empty; pass at least one polygon")
    if regions.crs is None and require_crs:
        raise InputError("the regions have no CRS; set it (e.g. gdf.set_crs('EPSG:4326')) so they can be placed "
                         "on the scene")
    return regions


def iter_crops(regions: "gpd.GeoDataFrame", pixels: "PixelSource", tile: int,
               context: float = DEFAULT_CONTEXT, min_side: int | None = None) -> Iterator[RegionCrop | int]:
    """A :class:`RegionCrop` per polygon that overlaps the scene, else the row number alone.

    ``min_side`` (pixels of the scene, default ``tile``) is the smallest context window: a
    model with a coarser working resolution than the scene gets at least that much ground
    in each ``tile`` px crop.
    """
    geoms = regions.geometry
    if pixels.crs is not None and regions.crs is not None and not regions.crs.equals(pixels.crs):
        geoms = geoms.to_crs(pixels.crs)
    for i, geom in enumerate(geoms):
        if geom is None or geom.is_empty:
            yield i
            continue
        win = context_window(pixel_bounds(geom, pixels.transform), pixels.height, pixels.width, min_side or tile,
                             context)
        if win is None:
            yield i
            continue
        t = crop_transform(pixels.transform, win, (tile, tile))
        mask = region_mask(geom, t, (tile, tile))
        if not mask.any():
            yield i
            continue
        image, valid = pixels.read_masked(win, (tile, tile))
        if valid is not None:  # a region is described by the pixels the scene has data for
            mask &= valid
            if not mask.any():
                yield i
                continue
        yield RegionCrop(i, image, mask, t, area_m2(geom, pixels.crs), valid)


def area_m2(geom, crs: Any) -> float | None:
    try:
        if crs is None or crs.is_geographic:
            return None
        return float(geom.area) * float(crs.linear_units_factor[1]) ** 2
    except Exception:  # a CRS without linear units
        return None


#: how a region of each default class is named in a sentence
