"""A scene read at another ground resolution: a GDAL VRT over the file, resampled on read.

A learned model sees objects at the sizes it was trained on. The default checkpoint learned
from ~0.5-5 m imagery, so on 0.3 m imagery it finds only the brightest parts of roofs (xBD
Joplin, 0.3 m: building IoU 0.09-0.22 at native resolution, 0.24-0.34 read at 0.6 m;
``benchmarks/resolution.py``). Reading the scene through a VRT that is ``resolution`` metres
per pixel lets every part of the engine (tiling, statistics, nodata masks, outputs) work on
that grid unchanged; the outputs are then on that grid too, with the same bounds and CRS.

GDAL does the resampling window by window (``average`` when the grid is coarser, so each
output pixel is the mean of the pixels it covers; ``bilinear`` when finer), from overviews
when the file has them.
"""
from __future__ import annotations

import math
from pathlib import Path
from xml.sax.saxutils import escape

from affine import Affine

from ..errors import InputError
from .ground import pixel_size_m
from .vrt import GDAL_TYPES, cached_vrt

__all__ = ["check_resolution", "resampled_vrt", "resolve_resolution", "working_resolution"]


def check_resolution(resolution) -> None:
    if not isinstance(resolution, (int, float)) or isinstance(resolution, bool) or not resolution > 0 \
            or not math.isfinite(resolution):
        raise InputError(f"--resolution {resolution!r} must be a positive number of metres per pixel (e.g. 0.9), "
                         "'auto' or 'native'")


def working_resolution(model) -> tuple[float, float] | None:
    """``(finer_than, read_at)`` in metres that a model (or its segmenter) declares, else None.

    A checkpoint states it in ``config.extra["working_resolution_m"]``: scenes whose pixels are
    finer than ``finer_than`` are read at ``read_at`` when the resolution is ``"auto"``.
    """
    config = getattr(getattr(model, "model", model), "config", None)
    value = (getattr(config, "extra", None) or {}).get("working_resolution_m") if config is not None else None
    if not value:
        return None
    finer_than, read_at = (float(v) for v in value)
    return finer_than, read_at


def _tile_size(model) -> int | None:
    size = getattr(model, "tile_size", None) or getattr(getattr(getattr(model, "model", model), "config", None),
                                                         "tile_size", None)
    return int(size) if size else None


def resolve_resolution(resolution, transform: Affine, crs, model, shape: tuple[int, int] | None = None) -> float | None:
    """The metres per pixel to read a scene at, or None for its own grid.

    ``resolution`` is a number, ``"native"`` (or None) or ``"auto"``: the model's
    :func:`working_resolution` when the scene is finer than it likes (but never so coarse that
    the scene's shorter side falls below one model tile), else native.
    """
    if resolution is None or (isinstance(resolution, str) and resolution.strip().lower() == "native"):
        return None
    if isinstance(resolution, str) and resolution.strip().lower() == "auto":
        working = working_resolution(model)
        native = pixel_size_m(transform, crs) if working else None
        if working is None or native is None:
            return None
        finer_than, read_at = working
        if native >= finer_than:
            return None  # coarse enough already
        tile = _tile_size(model)
        if shape is not None and tile and min(shape) * native / read_at < tile:
            # a small scene read that coarse would be less than one tile, which the model has never seen
            # (a 40 m forest at 0.1 m became 44 px and empty): read it as coarse as still fills a tile
            read_at = native * min(shape) / tile
            if read_at < native * 1.05:
                return None
        return read_at
    if isinstance(resolution, str):
        try:
            resolution = float(resolution)
        except ValueError:
            pass
    check_resolution(resolution)
    return float(resolution)


def resampled_vrt(scene, resolution: float) -> str:
    """Path of a VRT of ``scene`` (an opened :class:`~geopix_tiles.io.scene.Scene`) at ``resolution`` m per pixel."""
    from rasterio.enums import MaskFlags  # noqa: PLC0415

    check_resolution(resolution)
    native = pixel_size_m(scene.transform, scene.crs)
    if native is None:
        raise InputError(f"--resolution needs a scene with a CRS in known units; '{scene.name}' has "
                         f"{'no CRS' if scene.crs is None else 'a CRS without linear units'} (drop --resolution)")
    factor = native / float(resolution)  # < 1: a coarser grid
    width = max(1, int(round(scene.width * factor)))
    height = max(1, int(round(scene.height * factor)))
    if width < 16 or height < 16:
        raise InputError(f"--resolution {resolution} m makes '{scene.name}' {width} x {height} px (it is "
                         f"{native:.3g} m per pixel); pass a finer resolution")
    t = scene.transform
    sx, sy = scene.width / width, scene.height / height
    grid = Affine(t.a * sx, t.b * sy, t.c, t.d * sx, t.e * sy, t.f)
    method = "average" if factor < 1 else "bilinear"
    gdt = GDAL_TYPES.get(scene.dtype, "Float32")
    src = escape(str(scene.path))

    def source(band: str, how: str) -> str:
        return (f'<SimpleSource resampling="{how}"><SourceFilename relativeToVRT="0">{src}</SourceFilename>'
                f"<SourceBand>{band}</SourceBand>"
                f'<SrcRect xOff="0" yOff="0" xSize="{scene.width}" ySize="{scene.height}"/>'
                f'<DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/></SimpleSource>')

    xml = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
           f"<SRS>{escape(scene.crs.to_wkt())}</SRS>",
           f"<GeoTransform>{', '.join(repr(v) for v in grid.to_gdal())}</GeoTransform>"]
    flags = scene.extra.get("flags") or []
    per_dataset = any(MaskFlags.per_dataset in f and MaskFlags.nodata not in f for f in flags)
    if per_dataset:  # an internal mask (not a nodata value): carried as the VRT's own mask, never averaged
        xml.append(f'<MaskBand><VRTRasterBand dataType="Byte">{source("mask,1", "nearest")}</VRTRasterBand></MaskBand>')
    colours = scene.extra.get("colorinterp") or ()
    for i in range(1, scene.count + 1):
        desc = scene.descriptions[i - 1] if i - 1 < len(scene.descriptions) else None
        colour = colours[i - 1].name.capitalize() if i - 1 < len(colours) else None
        xml.append(f'<VRTRasterBand dataType="{gdt}" band="{i}">'
                   + (f"<Description>{escape(desc)}</Description>" if desc else "")
                   + (f"<ColorInterp>{colour}</ColorInterp>" if colour and colour != "Undefined" else "")
                   + (f"<NoDataValue>{scene.nodata!r}</NoDataValue>" if scene.nodata is not None else "")
                   + source(str(i), method) + "</VRTRasterBand>")
    xml.append("</VRTDataset>")
    return cached_vrt("\n".join(xml), "resample", f"{Path(str(scene.path)).stem[:60]}-{resolution:g}m")
