"""DataArrays as scenes: bands, band roles, validity and scene statistics of an xarray object.

Why a module of its own: the accessor (``DataArray.geopix``), region description, chat and
plotting all read pixels from a DataArray the way the engine reads a file, and must agree
with it (same band descriptions and colour interpretation, same validity, the CLI's own
statistics for a file-backed array). One place for that keeps them from drifting apart and
keeps the accessor and the region path from importing each other.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import xarray as xr

from ..errors import InputError

__all__ = ["descriptions", "as_bands", "scene_of", "colorinterp", "valid_mask", "scene_statistics"]


def descriptions(arr: xr.DataArray) -> tuple[str | None, ...]:
    names = arr.attrs.get("long_name")
    if isinstance(names, (tuple, list)) and len(names) == arr.sizes["band"]:
        return tuple(None if n is None else str(n) for n in names)
    values = arr["band"].values if "band" in arr.coords else []
    if len(values) and all(isinstance(v, str) for v in values.tolist()):
        return tuple(values.tolist())
    return (None,) * arr.sizes["band"]


def as_bands(obj: xr.DataArray) -> xr.DataArray:
    if "band" not in obj.dims:
        if obj.ndim != 2:
            raise InputError(f"array has dims {obj.dims}; pass (band, y, x) or (y, x)")
        obj = obj.expand_dims(band=[1])
    missing = {"y", "x"} - set(obj.dims)
    if missing:
        raise InputError(f"array has dims {obj.dims}; it needs y and x (rename them, e.g. .rename(lat='y', lon='x'))")
    return obj.transpose("band", "y", "x")


def scene_of(arr: xr.DataArray):
    """A :class:`Scene` describing an in-memory or dask array (for band-role resolution)."""
    from .scene import Scene  # noqa: PLC0415

    rio = arr.rio
    return Scene(path=None, width=arr.sizes["x"], height=arr.sizes["y"], count=arr.sizes["band"],
                 dtype=str(arr.dtype), crs=rio.crs, transform=rio.transform(recalc=True),
                 nodata=rio.nodata, descriptions=descriptions(arr), block_height=256,
                 extra={"colorinterp": colorinterp(arr)})


def colorinterp(arr: xr.DataArray) -> tuple:
    """The GDAL colour interpretation of the bands of the file the array was opened from.

    rioxarray keeps band descriptions but not colour interpretation, so an RGB GeoTIFF whose
    bands are only tagged red/green/blue (rasterio's ``RGB.byte.tif``) would lose its band
    roles in a notebook while the CLI finds them. The band coordinate maps a subset or
    reordering of the file's bands back to their tags; anything else gives no tags.
    """
    source = arr.encoding.get("source")
    if not isinstance(source, str) or not source:
        return ()
    try:
        import rasterio  # noqa: PLC0415

        with rasterio.open(source) as src:
            tags = tuple(src.colorinterp)
    except Exception:  # a source that moved or is not a raster: no tags, as before
        return ()
    bands = arr["band"].values.tolist() if "band" in arr.coords else []
    if len(bands) != arr.sizes["band"] or not all(isinstance(b, int) and 1 <= b <= len(tags) for b in bands):
        return ()
    return tuple(tags[b - 1] for b in bands)


def valid_mask(data: np.ndarray, nodata) -> np.ndarray | None:
    """Pixels valid in every band of ``data [C, H, W]`` (not nodata, finite), or None if all are."""
    valid = None
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        valid = np.all(data != nodata, axis=0)
    if np.issubdtype(data.dtype, np.floating):
        finite = np.all(np.isfinite(data), axis=0)
        valid = finite if valid is None else valid & finite
    return valid


def _file_source(arr: xr.DataArray) -> str | None:
    """The GeoTIFF ``arr`` was opened from, when it still is that file's grid (else None).

    Then the scene statistics are the CLI's own (:func:`geopix_tiles.io.scene.compute_statistics`:
    overviews when the file has them, GDAL's masks for validity), not an estimate from the array.
    """
    source = arr.encoding.get("source")
    if not isinstance(source, str) or not source:
        return None
    try:
        import rasterio  # noqa: PLC0415

        with rasterio.open(source) as src:
            same = (src.width == arr.sizes["x"] and src.height == arr.sizes["y"]
                    and src.transform.almost_equals(arr.rio.transform(recalc=True)))
            count = src.count
    except Exception:  # moved, remote or not a raster: estimate from the array
        return None
    bands = arr["band"].values.tolist() if "band" in arr.coords else []
    if not same or not all(isinstance(b, int) and 1 <= b <= count for b in bands):
        return None
    return source


def _file_stats(source: str, bands: tuple[int, ...], cap: float | None) -> tuple[np.ndarray, np.ndarray]:
    from .scene import compute_statistics, open_scene, select_bands  # noqa: PLC0415

    scene = compute_statistics(select_bands(open_scene(source, allow_no_georef=True), bands), max_low_share=cap)
    return scene.low, scene.high


def _array_stats(pieces: Sequence[np.ndarray], nodata, cap: float | None) -> tuple[np.ndarray, np.ndarray]:
    from .scene import percentile_stats  # noqa: PLC0415

    samples = []
    for piece in pieces:
        piece = np.asarray(piece)
        valid = valid_mask(piece, nodata)
        samples.append(piece[:, valid] if valid is not None else piece.reshape(piece.shape[0], -1))
    return percentile_stats(samples, pieces[0].shape[0] if len(pieces) else 0, max_low_share=cap)


def scene_statistics(arr: xr.DataArray, chosen: Sequence[int], stretch: str = "auto"):
    """Delayed ``(low, high)`` of the bands ``chosen`` (1-based in ``arr``): the one statistics path.

    A file-backed array gets exactly the CLI's statistics; any other array is sampled on the
    same window plan (:func:`geopix_tiles.io.scene.statistics_windows`). Building it reads no pixels.
    """
    import dask  # noqa: PLC0415

    from .scene import statistics_windows, stretch_cap  # noqa: PLC0415

    cap = stretch_cap(stretch)
    source = _file_source(arr)
    if source is not None:
        bands = tuple(int(arr["band"].values[b - 1]) for b in chosen)
        return dask.delayed(_file_stats, pure=True)(source, bands, cap)
    sel = arr.isel(band=[b - 1 for b in chosen]).data
    pieces = [sel[:, w.row_off:w.row_off + w.height, w.col_off:w.col_off + w.width]
              for w in statistics_windows(arr.sizes["y"], arr.sizes["x"])]
    return dask.delayed(_array_stats, pure=True)(pieces, arr.rio.nodata, cap)
