"""Polygons from an in-memory or dask probability array, with the engine's vectorizer.

The array is pulled one row strip of chunks at a time, so a lazy scene-sized result is
vectorized without ever being materialised whole.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import InputError


def probabilities_to_polygons(probs: xr.DataArray, threshold: float = 0.5, min_area: float | None = None,
                              simplify: float | None = None):
    """``(prompt, y, x)`` probabilities -> GeoDataFrame with the CLI's columns."""
    import geopandas as gpd  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415
    import rioxarray  # noqa: F401, PLC0415

    from .vector_sink import PolygonSchema  # noqa: PLC0415
    from .vectorize import ClosedObjects, StripVectorizer  # noqa: PLC0415

    if "prompt" not in probs.dims:
        probs = probs.expand_dims(prompt=[str(probs.name or "mask")])
    probs = probs.transpose("prompt", "y", "x")
    if not 0 <= threshold <= 1:
        raise InputError(f"threshold {threshold} is out of range; use a value in 0..1")
    prompts = [str(p) for p in probs["prompt"].values.tolist()]
    h, w = probs.sizes["y"], probs.sizes["x"]
    schema = PolygonSchema(probs.rio.crs, probs.rio.transform(recalc=True), prompts, min_area, simplify)
    vecs = [StripVectorizer(k, w, h) for k in range(len(prompts))]
    data = probs.data
    steps = list(np.cumsum((0,) + tuple(data.chunks[1]))) if hasattr(data, "chunks") and data.chunks else [0, h]
    closed = ClosedObjects()
    for y0, y1 in zip(steps[:-1], steps[1:]):
        strip = np.asarray(probs.isel(y=slice(int(y0), int(y1))).values, dtype=np.float32)
        valid = np.isfinite(strip).all(axis=0)
        for k, vec in enumerate(vecs):
            p = np.where(valid, strip[k], 0)
            closed.extend(vec.add(int(y0), (p >= threshold) & valid, p))
    frame = schema.frame(closed) if len(closed) else schema.empty_frame()
    return gpd.GeoDataFrame(pd.DataFrame(frame), geometry="geometry", crs=schema.crs)
