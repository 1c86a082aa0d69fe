"""Ground size of a pixel from a transform and CRS: what areas in replies and ``--resolution`` read.

Projected CRSs give it through their linear unit; geographic ones at a latitude (the window's
centre when known), with the WGS84 lengths of a degree there. None when there is no CRS or its
units are unknown: callers then speak in pixels or refuse a resolution.
"""
from __future__ import annotations

import math
from typing import Any

from affine import Affine

__all__ = ["pixel_area_m2", "pixel_size_m"]


def pixel_area_m2(transform: Affine, crs: Any, centre_y: float | None = None) -> float | None:
    """Ground area of one pixel: from the CRS's linear unit, or at the window's latitude for degrees."""
    if crs is None:
        return None
    a = abs(transform.a * transform.e - transform.b * transform.d)
    try:
        if crs.is_geographic:
            lat = math.radians(centre_y if centre_y is not None else transform.f)
            return a * (111_320.0 * math.cos(lat)) * 110_574.0
        factor = float(crs.linear_units_factor[1])
    except Exception:  # an exotic CRS without units: speak in pixels
        return None
    return a * factor * factor


def pixel_size_m(transform: Affine, crs: Any) -> float | None:
    """Mean ground size of a pixel side in metres (None without a CRS or with unknown units)."""
    area = pixel_area_m2(transform, crs)
    return math.sqrt(area) if area else None
