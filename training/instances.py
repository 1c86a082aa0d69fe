"""Instance masks from the two kinds of labels remote-sensing data comes with.

Vector labels (building footprints, xBD polygons) give one instance per polygon; semantic
rasters (land-cover masks, cloud masks) only give classes, so instances are their
connected components. Both are cut to a window so that a scene of any size yields
window-sized masks and never a full-scene array per object.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .records import Instance

__all__ = ["instances_from_polygons", "instances_from_class_raster", "repair_geometry"]


def repair_geometry(geom: Any) -> tuple[Any | None, str | None]:
    """Return ``(valid_geometry_or_None, problem)``; ``problem`` explains a repair or a drop.

    Self-intersecting rings (bow-ties) are common in hand-digitised labels; shapely's
    ``make_valid`` splits them into valid parts. Non-areal leftovers are dropped, because
    only polygons rasterise to masks.
    """
    import shapely
    from shapely.geometry import MultiPolygon, Polygon

    if geom is None or geom.is_empty:
        return None, "empty geometry"
    problem = None
    if not geom.is_valid:
        reason = shapely.is_valid_reason(geom)
        geom = shapely.make_valid(geom)
        problem = f"repaired invalid geometry ({reason})"
    if geom.geom_type == "GeometryCollection":
        polys = [g for g in geom.geoms if isinstance(g, (Polygon, MultiPolygon)) and not g.is_empty]
        if not polys:
            return None, "no polygonal part after repair"
        geom = shapely.union_all(polys)
    if not isinstance(geom, (Polygon, MultiPolygon)):
        return None, f"not a polygon ({geom.geom_type})"
    if geom.is_empty or geom.area <= 0:
        return None, "zero-area polygon"
    return geom, problem


def instances_from_polygons(
    geoms: Sequence[Any],
    categories: Sequence[str],
    out_shape: tuple[int, int],
    transform: Any,
    extras: Sequence[Mapping[str, Any]] | None = None,
    min_pixels: int = 1,
    all_touched: bool = False,
) -> list[Instance]:
    """Rasterise each polygon (already in the raster CRS) into a window of ``out_shape``.

    ``transform`` maps window pixels to CRS coordinates (for pixel-space polygons use the
    window offset as a translation). Polygons that cover fewer than ``min_pixels`` pixels of
    the window are skipped: they are outside it or too small to supervise.
    """
    from rasterio import features
    from rasterio.windows import Window, bounds as window_bounds
    import shapely

    h, w = out_shape
    left, bottom, right, top = window_bounds(Window(0, 0, w, h), transform)
    box = shapely.box(min(left, right), min(bottom, top), max(left, right), max(bottom, top))
    out: list[Instance] = []
    for idx, (g, cat) in enumerate(zip(geoms, categories)):
        if g is None or g.is_empty or not g.intersects(box):
            continue
        mask = features.rasterize([(g, 1)], out_shape=(h, w), transform=transform, fill=0,
                                  all_touched=all_touched, dtype="uint8")
        if int(mask.sum()) < min_pixels:
            continue
        extra = dict(extras[idx]) if extras is not None else {}
        description = str(extra.pop("description", ""))
        out.append(Instance.from_mask(cat, mask, description=description, **extra))
    return out


def instances_from_class_raster(
    classes: np.ndarray,
    class_names: Mapping[int, str],
    ignore: Iterable[int] = (),
    min_pixels: int = 16,
    connectivity: int = 8,
    stuff: Iterable[str] = (),
) -> list[Instance]:
    """Connected components of each class in a window of class ids.

    ``stuff`` classes (land, sea, cloud: amorphous regions rather than countable objects)
    become one instance per class in the window, the way COCO treats stuff; everything else
    is split into components of at least ``min_pixels`` pixels.
    """
    from scipy import ndimage

    ignore = set(int(v) for v in ignore)
    stuff = set(stuff)
    structure = np.ones((3, 3), bool) if connectivity == 8 else None
    out: list[Instance] = []
    for value, name in sorted(class_names.items()):
        if int(value) in ignore:
            continue
        binary = classes == value
        if not binary.any():
            continue
        if name in stuff:
            if int(binary.sum()) >= min_pixels:
                out.append(Instance.from_mask(name, binary.astype(np.uint8)))
            continue
        labels, n = ndimage.label(binary, structure=structure)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        slices = ndimage.find_objects(labels)
        for comp, sl in enumerate(slices, start=1):
            if sl is None or sizes[comp] < min_pixels:
                continue
            mask = np.zeros(classes.shape, dtype=np.uint8)
            mask[sl] = labels[sl] == comp
            out.append(Instance.from_mask(name, mask))
    return out
