"""Masks -> text over whole scenes: describe polygons, ask free-form questions.

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

Two answers per polygon, both from the model's own trained prompts:

* ``category``: :meth:`GeoPixModel.describe` - its prompt ("What is in region1 <mask><pos>?
  Answer briefly.") is the region-classification template whose training answer is the
  bare class name (``training/instruct.py``), so its output *is* the class;
* ``description``: the region-caption template "Give a short description of region1
  <mask><pos>." (answers are trained as ``region1: <caption>.``; the prefix is stripped).

Polygons are batched (``batch_size`` crops per model call); the image encoding of a batch is
shared by both prompts. Everything torch-related is imported lazily.
"""
from __future__ import annotations

import math
import os
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
from affine import Affine

from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    import xarray as xr

#: Padding on each side of a polygon, as a fraction of its larger extent.
DEFAULT_CONTEXT = 0.5
#: The region-caption template the model is trained with (first training template).
CAPTION_QUESTION = "Give a short description of region1 {region}."
_REGION_PREFIX = re.compile(r"^\s*region\s*\d+\s*:\s*", re.IGNORECASE)


# --------------------------------------------------------------------------- model
_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def load_region_model(model: Any = "default", device: str = "auto") -> Any:
    """A GeoPix model for the region/chat paths from ``"default"``, a checkpoint folder or an object.

    Objects that already have ``describe``/``chat`` (a loaded ``GeoPixModel``) are used as
    they are. Loaded checkpoints are cached per folder and modification time, so notebook
    loops do not reload them.
    """
    if not isinstance(model, (str, Path)):
        if callable(getattr(model, "describe", None)) or callable(getattr(model, "chat", None)):
            return model
        raise InputError(f"model {type(model).__name__} cannot describe regions; pass a GeoPixModel, "
                         "'default' or a checkpoint folder")
    name = str(model).strip()
    if name.lower() == "spectral":
        raise InputError("the spectral model only segments; describing regions and asking questions needs a GeoPix "
                         "checkpoint: pass --model default or a checkpoint folder")
    try:
        from .model import GeoPixModel  # noqa: PLC0415 - torch only when a learned model is asked for
        from .model.segmenter import resolve_device  # noqa: PLC0415
    except ImportError as exc:
        raise InputError(f"describing regions needs the 'model' extra ({exc}); "
                         "install it with pip install 'geopix-tiles[model]'") from None
    dev = str(resolve_device(device))
    weights = Path(name) / "model.safetensors"
    stamp = weights.stat().st_mtime_ns if weights.is_file() else 0
    key = (str(Path(name).resolve()) if name != "default" else name, stamp, dev)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS.clear()  # one checkpoint at a time: models can be large
            _MODELS[key] = GeoPixModel.from_pretrained(name, device=dev).eval()
        return _MODELS[key]


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

    def __init__(self, path: str | os.PathLike, bands: Any = None, band_roles: Any = None) -> None:
        import rasterio  # noqa: PLC0415

        from .scene import compute_statistics, open_scene, parse_band_roles, parse_bands, resolve_bands, select_bands  # noqa: PLC0415

        scene = open_scene(path)
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

        from .errors import ReadError  # noqa: PLC0415

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
    """Crops of a ``(band, y, x)`` DataArray (numpy or dask), statistics from a decimated sample."""

    def __init__(self, obj: "xr.DataArray", bands: Any = None, band_roles: Any = None) -> None:
        import rioxarray  # noqa: F401, PLC0415

        from .scene import parse_band_roles, parse_bands, resolve_bands  # noqa: PLC0415
        from .xarray_accessor import _as_bands, _scene_of, _stats_task  # noqa: PLC0415

        arr = _as_bands(obj)
        scene = _scene_of(arr)
        if scene.crs is None:
            raise InputError("the array has no CRS; set one with .rio.write_crs(...) so regions can be placed on it")
        chosen = resolve_bands(scene, _rgb_roles(), parse_bands(bands), parse_band_roles(band_roles))
        self.arr = arr.isel(band=[b - 1 for b in chosen])
        self.nodata = scene.nodata
        self.height, self.width = scene.height, scene.width
        self.crs, self.transform = scene.crs, scene.transform
        step = max(1, int(np.ceil(max(self.height, self.width) / 1024)))
        sample = np.asarray(self.arr.data[:, ::step, ::step])
        self.low, self.high = _stats_task(sample, self.nodata)

    def read(self, row0: int, col0: int, rows: int, cols: int, out_h: int, out_w: int) -> np.ndarray:
        from scipy.ndimage import zoom  # noqa: PLC0415

        from .xarray_accessor import valid_mask  # noqa: PLC0415

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
    from .tile_ops import scale_tiles  # noqa: PLC0415

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
        yield RegionCrop(i, pixels.read(row0, col0, rows, cols, tile, tile), mask, t)


def _clean(text: str) -> str:
    return _REGION_PREFIX.sub("", " ".join(str(text).split())).strip().rstrip(".").strip()


def _captions(model: Any, images, masks) -> list[str]:
    """Batched greedy answers to :data:`CAPTION_QUESTION`, one region per image."""
    import torch  # noqa: PLC0415

    from .model.generation import greedy_decode  # noqa: PLC0415
    from .model.tokenizer import MASK_TOKEN, POS_TOKEN  # noqa: PLC0415

    proc = model.processor
    question = CAPTION_QUESTION.format(region=f"{MASK_TOKEN}{POS_TOKEN}")
    with torch.no_grad():
        enc = model.encode_images(images)
        row = proc.prefix_ids() + proc.question_ids(question)
        ids = torch.tensor([row], device=model.device).expand(images.shape[0], -1)
        embeds = model.embed_inputs(enc, ids, [m for m in masks])
        attn = torch.ones(ids.shape, dtype=torch.long, device=model.device)
        tokens, _ = greedy_decode(model.llm, embeds, attn, None, model.config.max_new_tokens, proc.ids.eos)
    return [model.tokenizer.decode(t, skip_special_tokens=True) for t in tokens]


def describe_batch(model: Any, crops: Sequence[RegionCrop]) -> list[tuple[str, str]]:
    """``(category, description)`` for each crop, in one model call per prompt."""
    import torch  # noqa: PLC0415

    images = torch.from_numpy(np.stack([c.image for c in crops])).to(model.device)
    masks = torch.from_numpy(np.stack([c.mask for c in crops])[:, None]).to(model.device)
    categories = [_clean(r[0]) if r else "" for r in model.describe(images, masks)]
    captions = [_clean(t) for t in _captions(model, images, masks)]
    return list(zip(categories, captions))


def describe_regions(regions: "gpd.GeoDataFrame", scene: "str | os.PathLike | xr.DataArray", model: Any = "default",
                     *, batch_size: int = 8, context: float = DEFAULT_CONTEXT, device: str = "auto",
                     bands: Any = None, band_roles: Any = None) -> "gpd.GeoDataFrame":
    """A copy of ``regions`` (same rows, attributes, order and CRS) plus ``category`` and ``description``.

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
    descriptions: list[str | None] = [None] * len(regions)
    outside: list[int] = []
    with open_pixels(scene, bands, band_roles) as pixels:  # the scene is checked before the model loads
        net = load_region_model(model, device)
        tile = model_tile_size(net)
        batch: list[RegionCrop] = []

        def flush() -> None:
            for crop, (cat, desc) in zip(batch, describe_batch(net, batch)):
                categories[crop.row], descriptions[crop.row] = cat, desc
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
    out["description"] = descriptions
    return out


# --------------------------------------------------------------------------- ask
@dataclass
class Answer:
    """A reply to :func:`ask_scene`: text, georeferenced masks and where the model looked."""

    question: str
    text: str
    masks: "gpd.GeoDataFrame"  # one row per emitted mask (polygon parts dissolved), scene CRS
    bounds: tuple[float, float, float, float]  # the window the model saw, scene CRS
    transform: Affine  # of the model's input grid

    def __str__(self) -> str:
        return self.text


def parse_bbox(value: "str | Sequence[float] | None") -> tuple[float, float, float, float] | None:
    """``"minx,miny,maxx,maxy"`` or a 4-sequence -> floats (validated)."""
    if value is None or value == "":
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        box = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        raise InputError(f"bbox '{value}' is not four numbers; write minx,miny,maxx,maxy in the scene CRS") from None
    if len(box) != 4 or not all(math.isfinite(v) for v in box):
        raise InputError(f"bbox '{value}' is not four finite numbers; write minx,miny,maxx,maxy in the scene CRS")
    if box[0] >= box[2] or box[1] >= box[3]:
        raise InputError(f"bbox '{value}' is empty: minx must be < maxx and miny < maxy")
    return box  # type: ignore[return-value]


def bbox_window(bbox: tuple[float, float, float, float] | None, pixels: PixelSource) -> tuple[int, int, int, int]:
    """Pixel window ``(row0, col0, rows, cols)`` of a CRS bbox, clipped to the scene."""
    if bbox is None:
        return 0, 0, pixels.height, pixels.width
    from shapely.geometry import box  # noqa: PLC0415

    c0, r0, c1, r1 = _pixel_bounds(box(*bbox), pixels.transform)
    c0, r0 = max(0, int(math.floor(c0))), max(0, int(math.floor(r0)))
    c1, r1 = min(pixels.width, int(math.ceil(c1))), min(pixels.height, int(math.ceil(r1)))
    if c1 <= c0 or r1 <= r0:
        raise InputError(f"bbox {','.join(f'{v:g}' for v in bbox)} does not overlap the scene; give it in the scene "
                         "CRS, inside the scene's bounds")
    return r0, c0, r1 - r0, c1 - c0


def masks_to_polygons(masks: np.ndarray, transform: Affine, crs: Any, question: str, text: str) -> "gpd.GeoDataFrame":
    """Boolean ``[M, h, w]`` masks -> one (multi)polygon per mask, georeferenced by ``transform``."""
    import geopandas as gpd  # noqa: PLC0415
    from rasterio.features import shapes  # noqa: PLC0415
    from shapely.geometry import shape  # noqa: PLC0415
    from shapely.ops import unary_union  # noqa: PLC0415

    ids, geoms = [], []
    for k, m in enumerate(np.asarray(masks, dtype=bool), start=1):
        if not m.any():
            continue
        parts = [shape(g) for g, v in shapes(m.astype(np.uint8), mask=m, transform=transform) if v == 1]
        ids.append(k)
        geoms.append(unary_union(parts))
    return gpd.GeoDataFrame({"mask": np.asarray(ids, dtype=np.int64), "question": [question] * len(ids),
                             "answer": [text] * len(ids)}, geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)


def ask_scene(scene: "str | os.PathLike | xr.DataArray", question: str, model: Any = "default", *,
              bbox: "str | Sequence[float] | None" = None, device: str = "auto", bands: Any = None,
              band_roles: Any = None) -> Answer:
    """Ask one free-form question about ``bbox`` of the scene (the whole scene by default).

    The window is resampled so that its longer side is the model's tile size (aspect kept),
    as one image; the reply's masks are mapped back through that grid's transform, so they
    land on the scene in its CRS whatever the resampling.
    """
    if not isinstance(question, str) or not question.strip():
        raise InputError("the question is empty; ask something such as 'where is the water?'")
    box = parse_bbox(bbox)
    with open_pixels(scene, bands, band_roles) as pixels:
        row0, col0, rows, cols = bbox_window(box, pixels)
        net = load_region_model(model, device)
        tile = model_tile_size(net)
        scale = tile / max(rows, cols)
        out_h, out_w = max(1, int(round(rows * scale))), max(1, int(round(cols * scale)))
        image = pixels.read(row0, col0, rows, cols, out_h, out_w)
        t = crop_transform(pixels.transform, row0, col0, rows, cols, out_h, out_w)
        crs = pixels.crs
    import torch  # noqa: PLC0415

    device_of = getattr(net, "device", "cpu")
    reply = net.chat(torch.from_numpy(image).to(device_of), question.strip())
    masks = reply.masks.detach().cpu().numpy() if hasattr(reply.masks, "detach") else np.asarray(reply.masks)
    if masks.ndim != 3 or (len(masks) and masks.shape[1:] != (out_h, out_w)):
        raise RuntimeError(f"model returned masks of shape {masks.shape}, expected [M, {out_h}, {out_w}]")
    text = " ".join(str(reply.text).split())
    frame = masks_to_polygons(masks, t, crs, question.strip(), text)
    left, top = t @ (0, 0)
    right, bottom = t @ (out_w, out_h)
    bounds = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    return Answer(question.strip(), text, frame, bounds, t)


def write_gpkg_atomic(frame: "gpd.GeoDataFrame", out: str | os.PathLike, layer: str | None = None,
                      geometry_type: str | None = None, promote_to_multi: bool | None = None) -> Path:
    """Write ``frame`` to a temporary GeoPackage next to ``out`` and rename it into place."""
    import pyogrio  # noqa: PLC0415

    from .errors import OutputError  # noqa: PLC0415

    out = Path(out)
    tmp = out.with_name(f".{out.name}.partial.gpkg")
    try:
        if tmp.exists():
            tmp.unlink()
        kwargs: dict[str, Any] = {"layer": layer or out.stem, "driver": "GPKG"}
        if geometry_type:
            kwargs["geometry_type"] = geometry_type
        if promote_to_multi is not None:
            kwargs["promote_to_multi"] = promote_to_multi
        pyogrio.write_dataframe(frame, tmp, **kwargs)
        os.replace(tmp, out)
    except BaseException as exc:
        if tmp.exists():
            tmp.unlink()
        if isinstance(exc, OSError) or type(exc).__module__.startswith("pyogrio"):
            raise OutputError(f"writing '{out}' failed ({' '.join(str(exc).split())[:160]}); check free space and "
                              "permissions of the output folder") from exc
        raise
    return out
