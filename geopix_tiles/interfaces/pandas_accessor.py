"""``GeoDataFrame.geopix``: describe polygons in words from a scene.

Registered on :class:`pandas.DataFrame` (GeoDataFrame inherits it) when ``geopix_tiles``
is imported; pandas is already loaded by xarray, and geopandas is imported only when a
method runs, so registration keeps ``import geopix_tiles`` light.
"""
from __future__ import annotations

import os
from typing import Any

import pandas as pd

from ..errors import InputError


@pd.api.extensions.register_dataframe_accessor("geopix")
class GeopixFrameAccessor:
    """``gdf.geopix.describe(scene, model=...)``."""

    def __init__(self, obj: pd.DataFrame) -> None:
        self._obj = obj

    def describe(self, scene: "str | os.PathLike | Any", model: Any = "default", **options: Any):
        """A copy with ``category``, ``confidence`` and ``description`` per polygon (one row out per row in).

        ``scene`` is a GeoTIFF path or a ``(band, y, x)`` DataArray; ``model`` is
        ``"default"``, a checkpoint folder or a loaded ``GeoPixModel``; ``options`` are
        ``batch_size``, ``context``, ``device``, ``bands``, ``band_roles`` (see
        :func:`geopix_tiles.answers.regions.describe_regions`). Rows, attributes, order and CRS are
        kept; polygons are reprojected to the scene only to cut their windows.
        """
        import geopandas as gpd  # noqa: PLC0415

        from ..answers.regions import describe_regions  # noqa: PLC0415

        if not isinstance(self._obj, gpd.GeoDataFrame):
            raise InputError("geopix.describe needs a GeoDataFrame (polygons with a CRS); "
                             "build one with geopandas.GeoDataFrame(df, geometry=..., crs=...)")
        return describe_regions(self._obj, scene, model, **options)

    def explore(self, scene: Any = None, **options: Any):
        """These polygons (and ``scene`` under them) on an interactive folium map."""
        from .explore import explore  # noqa: PLC0415

        return explore(scene, self._obj, **options)
