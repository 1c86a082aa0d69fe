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

import os
import warnings
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import InputError
from ..segmenters.registry import load_answer_model
from .crops import DEFAULT_CONTEXT, RegionCrop, check_regions, iter_crops
from .pixels import open_pixels

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd
    import xarray as xr


# --------------------------------------------------------------------------- model
def model_tile_size(model: Any) -> int:
    return int(getattr(getattr(model, "config", None), "tile_size", 0) or 512)


# --------------------------------------------------------------------------- describe
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


def _context(mask: np.ndarray, category: str, class_masks: dict[str, np.ndarray], ring_px: int,
             valid: np.ndarray | None = None) -> tuple[str | None, bool]:
    """The other class that covers most of a ring around the region (None below a third of it).

    Only pixels with data count (``valid``): a nodata collar is neither water nor "nothing".
    """
    from scipy import ndimage  # noqa: PLC0415

    ring = ndimage.binary_dilation(mask, iterations=max(1, ring_px)) & ~mask
    if valid is not None:
        ring &= valid
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

    from ..io.ground import pixel_area_m2  # noqa: PLC0415

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
        context, surrounded = _context(crop.mask, cat, dict(zip(classes, seg[k])), ring, crop.valid)
        area = crop.area_m2 if crop.area_m2 is not None else (px_area * int(crop.mask.sum()) if px_area else None)
        out.append((cat, float(conf), region_sentence(cat, area, int(crop.mask.sum()), context, surrounded)))
    return out


def describe_regions(regions: "gpd.GeoDataFrame", scene: "str | os.PathLike | xr.DataArray", model: Any = "default",
                     *, batch_size: int = 8, context: float = DEFAULT_CONTEXT, device: str = "auto",
                     bands: Any = None, band_roles: Any = None,
                     resolution: float | str | None = "auto", allow_no_georef: bool = False,
                     stretch: str = "auto") -> "gpd.GeoDataFrame":
    """A copy of ``regions`` (same rows, attributes, order and CRS) plus ``category``, ``confidence``, ``description``.

    ``category`` is one of the model's classes (the LLM's likelihood of each class name as the
    answer to its region question), ``confidence`` the softmax share of that class, and
    ``description`` one sentence with the polygon's area and the class that surrounds it.

    ``resolution`` as in :func:`geopix_tiles.segment`: each crop then covers at least one model
    tile at that ground resolution (``auto``: the model's working resolution on finer scenes).
    ``allow_no_georef=True`` accepts a scene without CRS or transform; ``regions`` are then in its pixel
    coordinates (as ``segment --allow-no-georef`` writes them) and descriptions give no square metres.

    Polygons that do not overlap the scene (or are empty) get empty values and one warning;
    if none overlaps, :class:`InputError` is raised, since the user most likely passed the
    wrong file or CRS.
    """
    regions = check_regions(regions, require_crs=not allow_no_georef)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch size {batch_size!r} must be a whole number >= 1")
    if not context >= 0:
        raise InputError(f"context {context!r} must be >= 0 (a fraction of the polygon size)")
    categories: list[str | None] = [None] * len(regions)
    confidences: list[float] = [float("nan")] * len(regions)
    descriptions: list[str | None] = [None] * len(regions)
    outside: list[int] = []
    with open_pixels(scene, bands, band_roles, allow_no_georef, stretch) as pixels:  # checked before the model loads
        if regions.crs is None and pixels.crs is not None:
            raise InputError("the regions have no CRS but the scene has one; set the regions' CRS "
                             "(e.g. gdf.set_crs(...)) so they can be placed on the scene")
        from .conversation import _model_factor  # noqa: PLC0415

        _model_factor(pixels, resolution, None)  # a bad resolution fails before the model loads
        net = load_answer_model(model, device)
        tile = model_tile_size(net)
        # the crop covers at least a tile at the working resolution (``resolution`` as in segment)
        # (only when every class is shown coarser: a region's class is read from one crop for all classes)
        from ..io.ground import pixel_size_m  # noqa: PLC0415
        from ..segmenters.resampled import coarse_caveat, coarse_limit, shown_classes  # noqa: PLC0415

        factor = _model_factor(pixels, resolution, net) if shown_classes(resolution, net) is None else 1.0
        min_side = int(round(tile * factor))
        batch: list[RegionCrop] = []
        # a class seen coarser than it was learned at (buildings of a 5 m scene) is flagged as chat replies are
        scene_m = pixel_size_m(pixels.transform, pixels.crs)
        seen_m = None if scene_m is None else scene_m * factor

        def flush() -> None:
            for crop, (cat, conf, desc) in zip(batch, describe_batch(net, batch, pixels.crs)):
                limit = coarse_limit(net, cat, seen_m)
                if limit is not None:
                    desc += f" (A rough guess: {coarse_caveat(cat, limit, seen_m, 'scene')}.)"
                categories[crop.row], confidences[crop.row], descriptions[crop.row] = cat, conf, desc
            batch.clear()

        for item in iter_crops(regions, pixels, tile, context, min_side):
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
        warnings.warn(f"{len(outside)} of {len(regions)} region(s) are empty, outside the scene or over nodata only; "
                      "their category and description are left empty", stacklevel=2)
    out = regions.copy()
    out["category"] = categories
    out["confidence"] = confidences
    out["description"] = descriptions
    return out
