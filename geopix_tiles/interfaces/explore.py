"""Interactive web maps: the scene as a decimated image overlay, polygons coloured per prompt.

A folium (Leaflet) map for notebooks and for sharing results as one HTML file: the scene is
read at most ``max_pixels`` per side with the same 2-98 % stretch as ``overlay``, warped to
Web Mercator (Leaflet's grid, so the image lines up exactly) and embedded as a PNG; polygons are
reprojected to WGS 84 and drawn per prompt (the same colours as ``overlay``) with their
attributes in popups. folium is an optional dependency (``pip install folium``).
"""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import folium
    import geopandas as gpd

__all__ = ["explore", "save_html"]


def _folium():
    try:
        import folium  # noqa: PLC0415
    except ImportError:
        raise InputError("interactive maps need folium; pip install folium (or 'geopix-tiles[maps]')") from None
    return folium


def _overlay_png(scene: Any, max_pixels: int) -> tuple[str, list[list[float]]]:
    """The scene as a Web Mercator RGBA PNG (data URL) and its ``[[south, west], [north, east]]`` bounds."""
    import matplotlib.image  # noqa: PLC0415
    from affine import Affine  # noqa: PLC0415
    from rasterio.crs import CRS  # noqa: PLC0415
    from rasterio.warp import Resampling, calculate_default_transform, reproject  # noqa: PLC0415

    from .plot import _scene_raster, stretch  # noqa: PLC0415

    raster, _ = _scene_raster(scene, max_pixels)
    if raster.crs is None:
        raise InputError("the scene has no CRS, so it cannot be placed on a web map; georeference it first")
    rgb = stretch(raster.data, raster.valid)  # [h, w, C] in [0, 1]
    if rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    h, w = rgb.shape[:2]
    left, right, bottom, top = raster.extent
    src_t = Affine((right - left) / w, 0, left, 0, -(top - bottom) / h, top)
    alpha = np.ones((h, w), np.float32) if raster.valid is None else raster.valid.astype(np.float32)
    src = np.concatenate([np.moveaxis(rgb, -1, 0)[:3], alpha[None]]).astype(np.float32)
    dst_crs = CRS.from_epsg(3857)  # Leaflet's own grid: the PNG lines up exactly when stretched to its bounds
    dst_t, dw, dh = calculate_default_transform(raster.crs, dst_crs, w, h, left, bottom, right, top)
    dst = np.zeros((4, dh, dw), np.float32)
    reproject(src, dst, src_transform=src_t, src_crs=raster.crs, dst_transform=dst_t, dst_crs=dst_crs,
              resampling=Resampling.bilinear)
    buf = io.BytesIO()
    matplotlib.image.imsave(buf, np.clip(np.moveaxis(dst, 0, -1), 0, 1), format="png")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    from rasterio.warp import transform as warp_points  # noqa: PLC0415

    x0, y0 = dst_t @ (0, 0)
    x1, y1 = dst_t @ (dw, dh)
    (west, east), (north, south) = warp_points(dst_crs, CRS.from_epsg(4326), [x0, x1], [y0, y1])
    return url, [[south, west], [north, east]]


def explore(scene: Any = None, polygons: "gpd.GeoDataFrame | None" = None, *, max_pixels: int = 1024,
            colors: "Sequence[str] | dict[str, str] | None" = None, by: str | None = None,
            tiles: str | None = "OpenStreetMap", m: "folium.Map | None" = None) -> "folium.Map":
    """A folium map of ``scene`` (GeoTIFF path or DataArray) and/or ``polygons``.

    ``by`` is the column that colours polygons (default ``prompt``, else ``category``); popups
    show every other non-geometry column. ``tiles=None`` leaves out the basemap (offline use).
    """
    folium = _folium()
    if scene is None and polygons is None:
        raise InputError("give a scene, polygons or both to explore")
    bounds: list[list[float]] | None = None
    layers = []
    if scene is not None:
        url, bounds = _overlay_png(scene, max_pixels)
        layers.append(folium.raster_layers.ImageOverlay(url, bounds=bounds, name="scene", opacity=1.0,
                                                        interactive=False))
    if polygons is not None:
        frame = polygons
        if frame.crs is None:
            raise InputError("the polygons have no CRS; set it (gdf.set_crs(...)) to draw them on a map")
        frame = frame.to_crs(4326)
        key = by or ("prompt" if "prompt" in frame.columns else "category" if "category" in frame.columns else None)
        from .plot import prompt_colours  # noqa: PLC0415

        groups = list(dict.fromkeys(frame[key].astype(str))) if key else ["polygons"]
        palette = prompt_colours(groups, colors)
        fields = [c for c in frame.columns if c != frame.geometry.name]
        for name in groups:
            part = frame[frame[key].astype(str) == name] if key else frame
            colour = palette[name]
            layers.append(folium.GeoJson(
                part.to_json(drop_id=True), name=str(name),
                style_function=lambda _f, c=colour: {"color": c, "fillColor": c, "weight": 1.5, "fillOpacity": 0.35},
                popup=folium.GeoJsonPopup(fields=fields) if fields and len(part) else None))
        if bounds is None and len(frame):
            minx, miny, maxx, maxy = frame.total_bounds
            bounds = [[miny, minx], [maxy, maxx]]
    if m is None:
        m = folium.Map(tiles=tiles, control_scale=True)
    for layer in layers:
        layer.add_to(m)
    if len(layers) > 1:
        folium.LayerControl().add_to(m)
    if bounds is not None:
        m.fit_bounds(bounds)
    return m


def save_html(m: "folium.Map", path: str | os.PathLike) -> Path:
    """Write the map as one self-contained HTML file (temporary name, then renamed into place)."""
    from ..io.atomic import replacing  # noqa: PLC0415

    with replacing(path) as tmp:
        m.save(str(tmp))
    return Path(path)
