"""Masks -> text over whole scenes: describe polygons (questions about windows: :mod:`.chat`).

The model sees tiles of ``tile_size`` pixels scaled scene-wide to [0, 1] (the engine's
``scaling="unit"``), so a region is described from a *context window* cut around it, not
from the whole scene and not at an arbitrary resolution:

* polygons are reprojected to the scene CRS;
* the window is the polygon's bounds padded by ``context`` x its size on every side, at
  least ``tile_size`` pixels, square (the crop is resized to a square tile, so a square
  window keeps the aspect ratio), shifted inward at the scene edges and clipped only when
  the scene is smaller than the window;
* pixels come from a windowed read that GDAL decimates to ``tile_size`` (overviews when
  the file has them), so a polygon the size of a county costs one tile of memory;
* the polygon is rasterized into the same ``tile_size`` grid as the region mask.

Three columns per polygon:

* ``category`` and ``confidence``: :meth:`GeoPixModel.classify_regions` scores every class
  name as the answer to the model's trained region question ("What is in region1
  <mask><pos>? Answer briefly.") and keeps the most likely one with its softmax share;
* ``description``: one sentence written from pixels, not decoded: the class, the polygon's
  own area, and the class the model segments around it ("A building of about 450 m² next to
  a road."). The tiny LLM's free captions were template fragments; these are true of the
  polygon and of the model's masks.

Polygons are batched (``batch_size`` crops per model call). Everything torch-related is
imported lazily.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
from affine import Affine

from ..errors import InputError
from ..segmenters.registry import load_answer_model

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    import xarray as xr

#: Padding on each side of a polygon, as a fraction of its larger extent.
DEFAULT_CONTEXT = 0.5


# --------------------------------------------------------------------------- model
def model_tile_size(model: Any) -> int:
    return int(getattr(getattr(model, "config", None), "tile_size", 0) or 512)


# --------------------------------------------------------------------------- windows
def context_window(bounds_px: tuple[float, float, float, float], height: int, width: int, tile: int,
                   context: float = DEFAULT_CONTEXT) -> tuple[int, int, int, int] | None:
    """Square pixel window ``(row0, col0, rows, cols)`` around ``(col0, row0, col1, row1)`` bounds.

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

    row0, rows = place(cy, height)
    col0, cols = place(cx, width)
    return row0, col0, rows, cols


def _pixel_bounds(geom, transform: Affine) -> tuple[float, float, float, float]:
    """Pixel-space bounds of a geometry (exact for rotated transforms too: all four corners)."""
    minx, miny, maxx, maxy = geom.bounds
    inv = ~transform
    cols, rows = zip(*(inv @ (x, y) for x, y in ((minx, miny), (minx, maxy), (maxx, miny), (maxx, maxy))))
    return min(cols), min(rows), max(cols), max(rows)


def crop_transform(transform: Affine, row0: int, col0: int, rows: int, cols: int, out_h: int, out_w: int) -> Affine:
    """Georeference of a ``rows x cols`` window resampled to ``out_h x out_w`` pixels."""
    return transform @ Affine.translation(col0, row0) @ Affine.scale(cols / out_w, rows / out_h)


def region_mask(geom, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    """The polygon rasterized on the crop grid; slivers thinner than a pixel keep the pixels they touch."""
    from rasterio.features import rasterize  # noqa: PLC0415

    mask = rasterize([(geom, 1)], out_shape=shape, transform=transform, fill=0, dtype="uint8").astype(bool)
    if not mask.any():
        mask = rasterize([(geom, 1)], out_shape=shape, transform=transform, fill=0, dtype="uint8",
                         all_touched=True).astype(bool)
    return mask


# --------------------------------------------------------------------------- pixel sources
class PixelSource:
    """RGB crops of a scene, resampled and scaled scene-wide to [0, 1] for the model.

    ``read(row0, col0, rows, cols, out_h, out_w) -> float32 [3, out_h, out_w]`` (zero where
    the scene is nodata). Two implementations: a GeoTIFF read window by window through GDAL,
    and an in-memory or dask DataArray.
    """

    height: int
    width: int
    crs: Any
    transform: Affine

    def read(self, row0: int, col0: int, rows: int, cols: int, out_h: int, out_w: int) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "PixelSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _rgb_roles() -> tuple[str, ...]:
    return ("red", "green", "blue")


class FilePixelSource(PixelSource):
    """Windowed, decimated reads of a GeoTIFF with the engine's scene-wide statistics."""

    def __init__(self, path: str | os.PathLike, bands: Any = None, band_roles: Any = None,
                 allow_no_georef: bool = False) -> None:
        import rasterio  # noqa: PLC0415

        from ..io.scene import compute_statistics, open_scene, parse_band_roles, parse_bands, resolve_bands, select_bands  # noqa: PLC0415

        scene = open_scene(path, allow_no_georef=allow_no_georef)
        chosen = resolve_bands(scene, _rgb_roles(), parse_bands(bands), parse_band_roles(band_roles))
        select_bands(scene, chosen)
        compute_statistics(scene)
        self.scene = scene
        self.height, self.width = scene.height, scene.width
        self.crs, self.transform = scene.crs, scene.transform
        self._src = rasterio.open(scene.path)

    def read(self, row0: int, col0: int, rows: int, cols: int, out_h: int, out_w: int) -> np.ndarray:
        from rasterio.enums import Resampling  # noqa: PLC0415
        from rasterio.errors import RasterioError  # noqa: PLC0415
        from rasterio.windows import Window  # noqa: PLC0415

        from ..errors import ReadError  # noqa: PLC0415

        idx = list(self.scene.band_indexes)
        window = Window(col0, row0, cols, rows)
        shape = (len(idx), out_h, out_w)
        try:
            raw = self._src.read(idx, window=window, out_shape=shape, resampling=Resampling.bilinear)
            valid = None
            if self.scene.has_mask:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    masks = self._src.read_masks(idx, window=window, out_shape=shape)
                valid = np.all(masks > 0, axis=0)
                if np.issubdtype(raw.dtype, np.floating):
                    valid &= np.all(np.isfinite(raw), axis=0)
        except RasterioError as exc:
            raise ReadError(f"reading window rows {row0}..{row0 + rows}, cols {col0}..{col0 + cols} of "
                            f"'{self.scene.path}' failed ({' '.join(str(exc).split())[:160]}); the file is corrupt") from None
        return _finish(raw, valid, self.scene.low, self.scene.high)

    def close(self) -> None:
        self._src.close()


class ArrayPixelSource(PixelSource):
    """Crops of a ``(band, y, x)`` DataArray (numpy or dask), scaled with the engine's scene statistics."""

    def __init__(self, obj: "xr.DataArray", bands: Any = None, band_roles: Any = None) -> None:
        import rioxarray  # noqa: F401, PLC0415

        from ..io.scene import parse_band_roles, parse_bands, resolve_bands  # noqa: PLC0415
        from ..io.arrays import as_bands, scene_of, scene_statistics  # noqa: PLC0415

        arr = as_bands(obj)
        scene = scene_of(arr)
        if scene.crs is None:
            raise InputError("the array has no CRS; set one with .rio.write_crs(...) so regions can be placed on it")
        chosen = resolve_bands(scene, _rgb_roles(), parse_bands(bands), parse_band_roles(band_roles))
        self.arr = arr.isel(band=[b - 1 for b in chosen])
        self.nodata = scene.nodata
        self.height, self.width = scene.height, scene.width
        self.crs, self.transform = scene.crs, scene.transform
        self.low, self.high = scene_statistics(arr, chosen).compute()  # the same numbers as segment's

    def read(self, row0: int, col0: int, rows: int, cols: int, out_h: int, out_w: int) -> np.ndarray:
        from scipy.ndimage import zoom  # noqa: PLC0415

        from ..io.arrays import valid_mask  # noqa: PLC0415

        step = max(1, min(rows // out_h, cols // out_w))  # cheap decimation before interpolation
        raw = np.asarray(self.arr.data[:, row0:row0 + rows:step, col0:col0 + cols:step])
        valid = valid_mask(raw, self.nodata)
        data = raw.astype(np.float32)
        if valid is not None:
            data[:, ~valid] = 0
        factors = (1, out_h / data.shape[1], out_w / data.shape[2])
        data = zoom(data, factors, order=1, grid_mode=True, mode="nearest")[:, :out_h, :out_w]
        if valid is not None:
            valid = zoom(valid.astype(np.uint8), factors[1:], order=0, grid_mode=True, mode="nearest")[:out_h, :out_w] > 0
        return _finish(data, valid, self.low, self.high)


def _finish(raw: np.ndarray, valid: np.ndarray | None, low, high) -> np.ndarray:
    """Scene-wide unit stretch exactly as the engine scales tiles; zero where invalid."""
    from ..core.tile_ops import scale_tiles  # noqa: PLC0415

    pixels = scale_tiles(raw[None].astype(np.float32), "unit", low, high)[0]
    if valid is not None:
        pixels[:, ~valid] = 0.0
    return np.nan_to_num(pixels, copy=False, nan=0.0)


def open_pixels(scene: "str | os.PathLike | xr.DataArray | PixelSource", bands: Any = None,
                band_roles: Any = None) -> PixelSource:
    if isinstance(scene, PixelSource):
        return scene
    if isinstance(scene, (str, os.PathLike)):
        return FilePixelSource(scene, bands, band_roles)
    import xarray as xr  # noqa: PLC0415

    if isinstance(scene, xr.DataArray):
        return ArrayPixelSource(scene, bands, band_roles)
    raise InputError(f"scene of type {type(scene).__name__} is not supported; pass a GeoTIFF path or a DataArray")


# --------------------------------------------------------------------------- describe
@dataclass
class RegionCrop:
    """One polygon prepared for the model."""

    row: int
    image: np.ndarray  # float32 [3, T, T]
    mask: np.ndarray  # bool [T, T]
    transform: Affine
    area_m2: float | None = None  # of the polygon itself, when the scene CRS is projected


def _check_regions(regions: Any) -> "gpd.GeoDataFrame":
    import geopandas as gpd  # noqa: PLC0415

    if not isinstance(regions, gpd.GeoDataFrame):
        raise InputError(f"regions must be a GeoDataFrame, got {type(regions).__name__}")
    if not len(regions):
        raise InputError("the regions are empty; pass at least one polygon")
    if regions.crs is None:
        raise InputError("the regions have no CRS; set it (e.g. gdf.set_crs('EPSG:4326')) so they can be placed "
                         "on the scene")
    return regions


def iter_crops(regions: "gpd.GeoDataFrame", pixels: PixelSource, tile: int,
               context: float = DEFAULT_CONTEXT) -> Iterator[RegionCrop | int]:
    """A :class:`RegionCrop` per polygon that overlaps the scene, else the row number alone."""
    geoms = regions.geometry
    if pixels.crs is not None and regions.crs is not None and not regions.crs.equals(pixels.crs):
        geoms = geoms.to_crs(pixels.crs)
    for i, geom in enumerate(geoms):
        if geom is None or geom.is_empty:
            yield i
            continue
        win = context_window(_pixel_bounds(geom, pixels.transform), pixels.height, pixels.width, tile, context)
        if win is None:
            yield i
            continue
        row0, col0, rows, cols = win
        t = crop_transform(pixels.transform, row0, col0, rows, cols, tile, tile)
        mask = region_mask(geom, t, (tile, tile))
        if not mask.any():
            yield i
            continue
        yield RegionCrop(i, pixels.read(row0, col0, rows, cols, tile, tile), mask, t, _area_m2(geom, pixels.crs))


def _area_m2(geom, crs: Any) -> float | None:
    try:
        if crs is None or crs.is_geographic:
            return None
        return float(geom.area) * float(crs.linear_units_factor[1]) ** 2
    except Exception:  # a CRS without linear units
        return None


#: how a region of each default class is named in a sentence
_NOUNS = {"building": "a building", "road": "a stretch of road", "water": "a water body",
          "vegetation": "an area of vegetation", "land": "an area of bare land", "cloud": "a cloud"}
#: how a neighbouring class is named after "next to" / "surrounded by"
_NEIGHBOURS = {"building": "buildings", "road": "a road", "water": "water", "vegetation": "vegetation",
               "land": "bare land", "cloud": "clouds"}


def _noun(category: str) -> str:
    from ..model.answer import article  # noqa: PLC0415

    return _NOUNS.get(category) or f"{article(category)} {category}"


def region_sentence(category: str, area_m2: float | None, pixels: int, context: str | None,
                    surrounded: bool = False) -> str:
    """One sentence about a region: "A building of about 450 m² next to a road."."""
    from ..model.answer import area_phrase  # noqa: PLC0415

    text = f"{_noun(category)} of {area_phrase(area_m2, pixels)}"
    if context:
        text += f" {'surrounded by' if surrounded else 'next to'} {_NEIGHBOURS.get(context, context)}"
    return text[0].upper() + text[1:] + "."


def _context(mask: np.ndarray, category: str, class_masks: dict[str, np.ndarray], ring_px: int) -> tuple[str | None, bool]:
    """The other class that covers most of a ring around the region (None below a third of it)."""
    from scipy import ndimage  # noqa: PLC0415

    ring = ndimage.binary_dilation(mask, iterations=max(1, ring_px)) & ~mask
    if not ring.any():
        return None, False
    shares = {c: float(m[ring].mean()) for c, m in class_masks.items() if c != category}
    if not shares:
        return None, False
    best = max(shares, key=shares.get)
    if shares[best] < 1 / 3:
        return None, False
    return best, shares[best] >= 0.75


def describe_batch(model: Any, crops: Sequence[RegionCrop], crs: Any = None) -> list[tuple[str, float, str]]:
    """``(category, confidence, sentence)`` for each crop: class by the LLM's scores, words from the masks."""
    import torch  # noqa: PLC0415

    from .conversation import pixel_area_m2  # noqa: PLC0415

    images = torch.from_numpy(np.stack([c.image for c in crops])).to(model.device)
    masks = torch.from_numpy(np.stack([c.mask for c in crops])[:, None]).to(model.device)
    classes = model.class_names()
    with torch.no_grad():  # one tower pass per batch serves both the class scores and the context masks
        enc = model.encode_images(images)
        names, confs = model.classify_regions(images, masks, encoding=enc)
        seg = (model.segment_encoded(enc, classes)[0] > 0).cpu().numpy()
    out = []
    for k, crop in enumerate(crops):
        cat, conf = names[k][0], confs[k][0]
        px_area = pixel_area_m2(crop.transform, crs)
        ring = 8 if not px_area else max(2, int(round(10.0 / px_area ** 0.5)))  # ~10 m around the region
        context, surrounded = _context(crop.mask, cat, dict(zip(classes, seg[k])), ring)
        area = crop.area_m2 if crop.area_m2 is not None else (px_area * int(crop.mask.sum()) if px_area else None)
        out.append((cat, float(conf), region_sentence(cat, area, int(crop.mask.sum()), context, surrounded)))
    return out


def describe_regions(regions: "gpd.GeoDataFrame", scene: "str | os.PathLike | xr.DataArray", model: Any = "default",
                     *, batch_size: int = 8, context: float = DEFAULT_CONTEXT, device: str = "auto",
                     bands: Any = None, band_roles: Any = None) -> "gpd.GeoDataFrame":
    """A copy of ``regions`` (same rows, attributes, order and CRS) plus ``category``, ``confidence``, ``description``.

    ``category`` is one of the model's classes (the LLM's likelihood of each class name as the
    answer to its region question), ``confidence`` the softmax share of that class, and
    ``description`` one sentence with the polygon's area and the class that surrounds it.

    Polygons that do not overlap the scene (or are empty) get empty values and one warning;
    if none overlaps, :class:`InputError` is raised, since the user most likely passed the
    wrong file or CRS.
    """
    regions = _check_regions(regions)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size {batch_size!r} must be a whole number >= 1")
    if not context >= 0:
        raise InputError(f"context {context!r} must be >= 0 (a fraction of the polygon size)")
    categories: list[str | None] = [None] * len(regions)
    confidences: list[float] = [float("nan")] * len(regions)
    descriptions: list[str | None] = [None] * len(regions)
    outside: list[int] = []
    with open_pixels(scene, bands, band_roles) as pixels:  # the scene is checked before the model loads
        net = load_answer_model(model, device)
        tile = model_tile_size(net)
        batch: list[RegionCrop] = []

        def flush() -> None:
            for crop, (cat, conf, desc) in zip(batch, describe_batch(net, batch, pixels.crs)):
                categories[crop.row], confidences[crop.row], descriptions[crop.row] = cat, conf, desc
            batch.clear()

        for item in iter_crops(regions, pixels, tile, context):
            if isinstance(item, int):
                outside.append(item)
                continue
            batch.append(item)
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    if len(outside) == len(regions):
        raise InputError(f"none of the {len(regions)} region(s) overlaps the scene; check that the regions and the "
                         "scene cover the same place (and that the regions' CRS is right)")
    if outside:
        warnings.warn(f"{len(outside)} of {len(regions)} region(s) are empty or outside the scene; their category and "
                      "description are left empty", stacklevel=2)
    out = regions.copy()
    out["category"] = categories
    out["confidence"] = confidences
    out["description"] = descriptions
    return out
