"""Quick-look maps: a scene with segmentation masks or polygons on top.

``overlay`` is for checking results in notebooks and reports, not for cartography. It reads
at most ``max_pixels`` per side (GDAL decimates through overviews when the file has them),
so it is safe on scenes of any size; the stretch is 2-98 % per band (what the engine uses for
the model, so what you see is close to what the model saw); masks are drawn as translucent
colours per prompt with outlines, a legend and a scale bar in CRS units. Works with the Agg
backend (no display needed).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    import matplotlib.axes
    import xarray as xr

#: Colours per prompt, in order (colour-blind friendly "tab10" minus grey).
PALETTE = ("#1f77b4", "#2ca02c", "#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
#: Prompts that read better in their natural colour (water blue, vegetation green, ...).
NATURAL = {"water": "#1f77b4", "open water": "#1f77b4", "vegetation": "#2ca02c", "trees": "#2ca02c",
           "buildings": "#d62728", "built-up": "#d62728", "urban": "#d62728", "bare soil": "#8c564b",
           "burned area": "#ff7f0e", "snow": "#17becf", "ice": "#17becf"}


__all__ = ["Raster", "prompt_colours", "stretch", "add_scale_bar", "overlay", "explore"]


def prompt_colours(names: Sequence[str], colors: "Sequence[str] | dict[str, str] | None" = None) -> dict[str, str]:
    """A colour per prompt: ``colors`` (a mapping, or a list in prompt order) wins, then natural
    colours for well-known prompts, then unused palette colours in order."""
    if colors is not None and not isinstance(colors, dict):
        return {n: list(colors)[k % len(colors)] for k, n in enumerate(names)}
    chosen = dict(colors or {})
    for n in names:
        if n not in chosen and str(n).strip().lower() in NATURAL and NATURAL[str(n).strip().lower()] not in chosen.values():
            chosen[n] = NATURAL[str(n).strip().lower()]
    free = [c for c in PALETTE if c not in chosen.values()] or list(PALETTE)
    for n in names:
        if n not in chosen:
            chosen[n] = free.pop(0) if free else PALETTE[len(chosen) % len(PALETTE)]
    return chosen


@dataclass
class Raster:
    """A decimated raster ready to draw: data ``[C, h, w]``, validity, extent and CRS."""

    data: np.ndarray
    valid: np.ndarray | None
    extent: tuple[float, float, float, float]  # left, right, bottom, top (matplotlib order)
    crs: Any
    names: tuple[str | None, ...]
    nodata: float | None = None


def _out_shape(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    f = max(1.0, max(height, width) / float(max_pixels))
    return max(1, int(round(height / f))), max(1, int(round(width / f)))


def _extent(transform, width: int, height: int) -> tuple[float, float, float, float]:
    left, top = transform @ (0, 0)
    right, bottom = transform @ (width, height)
    return min(left, right), max(left, right), min(top, bottom), max(top, bottom)


def _read_file(path: str | os.PathLike, max_pixels: int, bands: Sequence[int] | None = None,
               mask_reads: bool = True) -> Raster:
    import rasterio  # noqa: PLC0415
    from rasterio.enums import Resampling  # noqa: PLC0415
    from rasterio.errors import RasterioIOError  # noqa: PLC0415

    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise InputError(f"'{path}' is not a raster GDAL can open ({' '.join(str(exc).split())[:160]})") from None
    with src:
        idx = list(bands or range(1, src.count + 1))
        h, w = _out_shape(src.height, src.width, max_pixels)
        data = src.read(idx, out_shape=(len(idx), h, w), resampling=Resampling.nearest)
        valid = None
        if mask_reads:
            masks = src.read_masks(idx, out_shape=(len(idx), h, w))
            valid = np.all(masks > 0, axis=0)
        return Raster(data, valid, _extent(src.transform, src.width, src.height), src.crs,
                      tuple(src.descriptions[i - 1] for i in idx), src.nodata)


def _read_array(arr: "xr.DataArray", max_pixels: int, band_dim: str = "band") -> Raster:
    import rioxarray  # noqa: F401, PLC0415

    if band_dim not in arr.dims:
        arr = arr.expand_dims({band_dim: [1]})
    arr = arr.transpose(band_dim, "y", "x")
    height, width = arr.sizes["y"], arr.sizes["x"]
    step = max(1, int(math.ceil(max(height, width) / float(max_pixels))))
    data = np.asarray(arr.isel(y=slice(None, None, step), x=slice(None, None, step)).values)
    transform = arr.rio.transform(recalc=True)
    names = tuple(str(v) for v in arr[band_dim].values.tolist()) if band_dim in arr.coords else (None,) * data.shape[0]
    long_name = arr.attrs.get("long_name")
    if band_dim == "band" and isinstance(long_name, (tuple, list)) and len(long_name) == data.shape[0]:
        names = tuple(long_name)
    from ..io.arrays import valid_mask  # noqa: PLC0415

    nodata = arr.rio.nodata
    valid = valid_mask(data, nodata)
    return Raster(data, valid, _extent(transform, width, height), arr.rio.crs, names, nodata)


def _rgb_bands(names: Sequence[str | None], count: int, colorinterp: Sequence[Any] = ()) -> list[int]:
    """0-based band order for display: red/green/blue by description or colour interpretation, else first 3."""
    from ..io.scene import ROLE_ALIASES  # noqa: PLC0415

    found: dict[str, int] = {}
    for i, n in enumerate(names):
        for role in ("red", "green", "blue"):
            if n is not None and str(n).strip().lower() in ROLE_ALIASES[role] and role not in found:
                found[role] = i
    for i, ci in enumerate(colorinterp):
        role = getattr(ci, "name", str(ci))
        if role in ("red", "green", "blue") and role not in found:
            found[role] = i
    if len(found) == 3:
        return [found["red"], found["green"], found["blue"]]
    return [0, 1, 2] if count >= 3 else [0]


def stretch(data: np.ndarray, valid: np.ndarray | None = None, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Per-band ``low``-``high`` percentile stretch of ``[C, h, w]`` to float [0, 1] ``[h, w, C]``."""
    out = np.zeros(data.shape[1:] + (data.shape[0],), np.float32)
    for c in range(data.shape[0]):
        band = data[c].astype(np.float64)
        sample = band[valid] if valid is not None else band.ravel()
        sample = sample[np.isfinite(sample)]
        if sample.size == 0:
            continue
        lo, hi = np.percentile(sample, [low, high])
        hi = hi if hi > lo else lo + 1.0
        out[..., c] = np.clip((band - lo) / (hi - lo), 0.0, 1.0)
    return np.nan_to_num(out)


def _scene_raster(scene: Any, max_pixels: int) -> tuple[Raster, list[int]]:
    import xarray as xr  # noqa: PLC0415

    if isinstance(scene, (str, os.PathLike)):
        import rasterio  # noqa: PLC0415

        if not os.path.exists(scene) and not str(scene).startswith("/vsi"):
            raise InputError(f"scene '{scene}' does not exist; check the path")
        try:
            with rasterio.open(scene) as src:
                names, count, ci = src.descriptions, src.count, src.colorinterp
        except rasterio.errors.RasterioIOError as exc:
            raise InputError(f"'{scene}' is not a raster GDAL can open ({' '.join(str(exc).split())[:160]})") from None
        order = _rgb_bands(names, count, ci)
        return _read_file(scene, max_pixels, [i + 1 for i in order]), order
    if isinstance(scene, xr.DataArray):
        from ..io.arrays import as_bands, descriptions  # noqa: PLC0415

        arr = as_bands(scene)
        order = _rgb_bands(descriptions(arr), arr.sizes["band"])
        return _read_array(arr.isel(band=order), max_pixels), order
    raise InputError(f"scene of type {type(scene).__name__} is not supported; pass a GeoTIFF path or a DataArray")


def _mask_layers(masks: Any, max_pixels: int, threshold: float
                 ) -> tuple[list[str], list[np.ndarray], Raster | None, "gpd.GeoDataFrame | None"]:
    """``(prompts, boolean masks on the image grid, raster, frame)``: raster masks or a polygon frame."""
    import geopandas as gpd  # noqa: PLC0415
    import xarray as xr  # noqa: PLC0415

    if isinstance(masks, gpd.GeoDataFrame):
        return [], [], None, masks
    if isinstance(masks, (str, os.PathLike)):
        if str(masks).lower().endswith((".gpkg", ".geojson", ".json", ".shp", ".fgb")):
            return [], [], None, gpd.read_file(masks)
        if not os.path.exists(masks):
            raise InputError(f"masks '{masks}' do not exist; pass a GeoTIFF of probabilities or a GeoPackage")
        r = _read_file(masks, max_pixels, mask_reads=False)
        names = [n or f"band {i + 1}" for i, n in enumerate(r.names)]
        if r.data.dtype == np.uint8 and r.nodata == 255:  # the engine's --threshold raster: 0/1, nodata 255
            layers = [band == 1 for band in r.data]
        else:  # probabilities: uint8 x 255 from the engine, or floats in [0, 1]
            prob = r.data.astype(np.float32) / (255.0 if r.data.dtype == np.uint8 else 1.0)
            layers = [np.nan_to_num(p) >= threshold for p in prob]
        return names, layers, r, None
    if isinstance(masks, xr.DataArray):
        arr = masks if "prompt" in masks.dims else masks.expand_dims(prompt=[str(masks.name or "mask")])
        r = _read_array(arr, max_pixels, band_dim="prompt")
        names = [str(n) for n in r.names]
        return names, [np.nan_to_num(p.astype(np.float32)) >= threshold for p in r.data], r, None
    raise InputError(f"masks of type {type(masks).__name__} are not supported; pass a (prompt, y, x) DataArray, "
                     "a GeoTIFF path or a GeoDataFrame")


def _nice_length(span: float) -> float:
    """A 1/2/5 x 10^k length near a fifth of ``span``."""
    target = max(span / 5.0, 1e-12)
    base = 10 ** math.floor(math.log10(target))
    return min((m * base for m in (1, 2, 5, 10)), key=lambda v: abs(v - target))


def add_scale_bar(ax: "matplotlib.axes.Axes", extent: tuple[float, float, float, float], crs: Any = None,
                  color: str = "white") -> float:
    """Draw a scale bar in CRS units in the lower left; return its length."""
    left, right, bottom, top = extent
    length = _nice_length(right - left)
    unit = "units"
    if crs is not None:
        try:
            unit = "°" if crs.is_geographic else (crs.linear_units or "units")
        except AttributeError:
            pass
    unit = {"metre": "m", "meter": "m", "metres": "m", "meters": "m", "US survey foot": "ft", "foot": "ft"}.get(unit, unit)
    x0 = left + 0.05 * (right - left)
    y0 = bottom + 0.06 * (top - bottom)
    ax.plot([x0, x0 + length], [y0, y0], color=color, linewidth=3, solid_capstyle="butt", zorder=5)
    ax.plot([x0, x0 + length], [y0, y0], color="black", linewidth=0.8, zorder=6)
    label = f"{length:g} {unit}" if unit != "m" or length < 1000 else f"{length / 1000:g} km"
    ax.text(x0 + length / 2, y0 + 0.015 * (top - bottom), label, color=color, ha="center", va="bottom",
            fontsize=8, zorder=6)
    return length


def overlay(scene: "str | os.PathLike | xr.DataArray", masks: Any = None, ax: "matplotlib.axes.Axes | None" = None,
            prompts: Sequence[str] | None = None, alpha: float = 0.45, *, threshold: float = 0.5,
            max_pixels: int = 1024, colors: "Sequence[str] | dict[str, str] | None" = None, outline: bool = True,
            scale_bar: bool = True, legend: bool = True, title: str | None = None) -> "matplotlib.axes.Axes":
    """Draw ``scene`` with ``masks`` on top and return the Axes.

    ``scene``: GeoTIFF path or ``(band, y, x)`` DataArray; RGB comes from band descriptions
    or colour interpretation (red/green/blue), else the first three bands; one band is grey.
    ``masks``: a ``(prompt, y, x)`` probability DataArray or GeoTIFF (thresholded at
    ``threshold``; the engine's 0/1 rasters with nodata 255 too), or a GeoDataFrame whose
    polygons are grouped by ``prompt`` (else ``category``) and reprojected to the scene CRS.
    ``prompts`` selects and orders what is drawn; ``colors`` is a list (prompt order) or a
    ``{prompt: colour}`` mapping (default: water blue, vegetation green, ..., then a
    colour-blind-friendly palette). One legend entry per prompt drawn.
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.colors import to_rgba  # noqa: PLC0415
    from matplotlib.patches import Patch  # noqa: PLC0415

    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha {alpha} must be in 0..1")
    if max_pixels < 16:
        raise InputError(f"max_pixels {max_pixels} is too small; use at least 16")
    raster, _ = _scene_raster(scene, max_pixels)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 7 * raster.data.shape[1] / max(1, raster.data.shape[2])))
    rgb = stretch(raster.data, raster.valid)
    if rgb.shape[-1] == 1:
        ax.imshow(rgb[..., 0], cmap="gray", vmin=0, vmax=1, extent=raster.extent, interpolation="nearest")
    else:
        rgba = np.concatenate([rgb, np.ones(rgb.shape[:2] + (1,), np.float32)], axis=-1)
        if raster.valid is not None:
            rgba[..., 3] = raster.valid
        ax.imshow(rgba, extent=raster.extent, interpolation="nearest")
    handles = []
    if masks is not None:
        names, layers, mraster, frame = _mask_layers(masks, max_pixels, threshold)
        if frame is not None:
            handles = _draw_frame(ax, frame, raster.crs, prompts, colors, alpha, outline)
        else:
            order = list(prompts) if prompts is not None else names
            unknown = [p for p in order if p not in names]
            if unknown:
                raise InputError(f"prompt(s) {', '.join(map(str, unknown))} are not in the masks ({', '.join(names)})")
            palette = prompt_colours(order, colors)
            for name in order:
                layer = layers[names.index(name)]
                colour = palette[name]
                img = np.zeros(layer.shape + (4,), np.float32)
                img[layer] = to_rgba(colour, alpha)
                ax.imshow(img, extent=mraster.extent, interpolation="nearest")
                if outline and layer.any() and 0 < layer.sum() < layer.size:
                    left, right, bottom, top = mraster.extent
                    h, w = layer.shape
                    xs = left + (np.arange(w) + 0.5) * (right - left) / w
                    ys = top - (np.arange(h) + 0.5) * (top - bottom) / h
                    ax.contour(xs, ys, layer.astype(np.float32), levels=[0.5], colors=[colour], linewidths=0.8)
                handles.append(Patch(facecolor=to_rgba(colour, alpha), edgecolor=colour, label=str(name)))
    left, right, bottom, top = raster.extent
    ax.set_xlim(left, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    if scale_bar and raster.crs is not None:
        add_scale_bar(ax, raster.extent, raster.crs)
    if legend and handles:
        ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.8)
    if title:
        ax.set_title(title)
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=7)
    return ax


def _draw_frame(ax, frame: "gpd.GeoDataFrame", crs: Any, prompts: Sequence[str] | None, colors: Any,
                alpha: float, outline: bool) -> list:
    from matplotlib.colors import to_rgba  # noqa: PLC0415
    from matplotlib.patches import Patch  # noqa: PLC0415

    if crs is not None and frame.crs is not None and not frame.crs.equals(crs):
        frame = frame.to_crs(crs)
    column = next((c for c in ("prompt", "category") if c in frame.columns), None)
    groups = [str(v) for v in dict.fromkeys(frame[column].astype(str))] if column else ["regions"]
    order = list(prompts) if prompts is not None else groups
    palette = prompt_colours(order, colors)
    handles = []
    for name in order:
        part = frame[frame[column].astype(str) == name] if column else frame
        colour = palette[name]
        if len(part):
            part.plot(ax=ax, facecolor=to_rgba(colour, alpha), edgecolor=colour if outline else "none",
                      linewidth=0.8 if outline else 0)
        handles.append(Patch(facecolor=to_rgba(colour, alpha), edgecolor=colour, label=name))
    return handles


def explore(scene: Any = None, polygons: "gpd.GeoDataFrame | None" = None, **options: Any):
    """An interactive folium map of a scene and/or polygons; see :func:`geopix_tiles.interfaces.explore.explore`."""
    from .explore import explore as _explore  # noqa: PLC0415

    return _explore(scene, polygons, **options)
