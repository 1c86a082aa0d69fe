"""``DataArray.geopix`` / ``Dataset.geopix``: the engine for analysts in notebooks.

``segment`` returns a lazy, dask-backed ``(prompt, y, x)`` array with the input's
coordinates and CRS. Each output chunk is one task of :func:`geopix_tiles.core.blocks.compute_block`
over the global tile grid, so the result equals the CLI's raster for the same options
whatever the chunking, and building the graph reads no pixels (scene statistics, when the
model needs them, are themselves a task: the CLI's own for a file-backed array, the same
window plan for any other; see :func:`scene_statistics`).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import xarray as xr

from ..io.arrays import as_bands, scene_of, scene_statistics, valid_mask
from ..errors import InputError


def _block_task(window: np.ndarray, origin, grid, block, model, device, prompts, scaling, stats, nodata, batch_size,
                factor: float = 1.0, classes=None, flips: int = 1, presence_check: bool = True,
                mask_clouds: bool | str = "auto", cut_canopy: bool = False):
    from ..core.blocks import compute_block  # noqa: PLC0415
    from ..segmenters.registry import load_segmenter  # noqa: PLC0415

    window = np.asarray(window)
    valid = valid_mask(window, nodata)
    if valid is not None and np.issubdtype(window.dtype, np.floating):
        window = np.where(valid[None], window, 0)
    low, high = stats if stats is not None else (None, None)
    from ..segmenters.checked import with_presence_check  # noqa: PLC0415
    from ..segmenters.flipped import with_flips  # noqa: PLC0415

    seg = with_flips(with_presence_check(load_segmenter(model, device=device), presence_check), flips)
    if factor != 1.0:
        from ..segmenters.resampled import ResampledSegmenter  # noqa: PLC0415

        seg = ResampledSegmenter(seg, factor, classes)
    from ..segmenters.canopy import with_canopy_cut  # noqa: PLC0415
    from ..segmenters.cloud_masked import with_cloud_mask  # noqa: PLC0415

    seg = with_cloud_mask(with_canopy_cut(seg, cut_canopy), mask_clouds)
    if batch_size is None:
        from ..segmenters.protocol import default_batch_size  # noqa: PLC0415

        batch_size = default_batch_size(seg)
    from ..segmenters.protocol import pool_thread  # noqa: PLC0415

    with pool_thread(seg):
        probs, _ = compute_block(window, valid, origin, grid, block, seg, prompts, scaling=scaling, low=low, high=high,
                                 batch_size=batch_size)
    return probs


def segment_dataarray(obj: xr.DataArray, prompts: str | Sequence[str], model="spectral", *,
                      bands: str | Sequence[int] | None = None, band_roles: str | Mapping[str, int] | None = None,
                      tile: int | None = None, overlap: int | None = None, batch_size: int | None = None,
                      device: str = "auto", chunks: int | tuple[int, int] | None = None,
                      resolution: float | str | None = "auto", flips: int = 1,
                      presence_check: bool = True, mask_clouds: bool | str = "auto",
                      stretch: str = "auto", cut_canopy: bool | str = "auto") -> xr.DataArray:
    """Lazy per-prompt probabilities ``(prompt, y, x)``; see the module docstring.

    ``resolution`` as in :func:`geopix_tiles.segment`: the ground resolution the model is shown
    (``auto``: the model's working resolution, on scenes finer than it); the result stays on the
    array's grid. ``flips`` (1, 2 or 4), ``presence_check``, ``mask_clouds``, ``cut_canopy``, ``stretch`` and ``batch_size``
    (default 8 on a CPU, 64 on a GPU) as in :func:`geopix_tiles.segment`.
    """
    import dask  # noqa: PLC0415
    import dask.array as da  # noqa: PLC0415
    import rioxarray  # noqa: F401, PLC0415 - registers .rio

    from ..segmenters.registry import load_segmenter, model_key  # noqa: PLC0415
    from ..io.scene import prepare_scene, stretch_cap  # noqa: PLC0415
    from ..segmenters.protocol import default_overlap, roles_for  # noqa: PLC0415
    from ..core.tiling import TileGrid  # noqa: PLC0415
    from rasterio.windows import Window  # noqa: PLC0415

    from ..core.blocks import source_window  # noqa: PLC0415

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts or any(not str(p).strip() for p in prompts):
        raise InputError("a prompt is empty; pass text such as 'water'")
    stretch_cap(stretch)  # a bad value fails here, whatever the model's scaling
    arr = as_bands(obj)
    scene = scene_of(arr)
    key = model_key(model)
    from ..segmenters.checked import with_presence_check  # noqa: PLC0415
    from ..segmenters.flipped import check_flips, with_flips  # noqa: PLC0415
    from ..segmenters.resampled import resolve_resolution, shown_segmenter, shows_finer  # noqa: PLC0415

    resolve_resolution(resolution, scene.transform, scene.crs)  # a bad resolution fails before the model loads
    flips = check_flips(flips)
    base = load_segmenter(key, device=device)
    # as in segment: no tile check on a coarse scene shown finer
    presence_check = presence_check and not shows_finer(resolution, scene.transform, scene.crs, base, scene.shape)
    seg = with_flips(with_presence_check(base, presence_check), flips)
    # as in segment: the model sees each tile coarser, the result stays on this grid
    seg, overlap, _ = shown_segmenter(seg, resolution, scene.transform, scene.crs, scene.shape, overlap, prompts)
    from ..io.ground import pixel_size_m  # noqa: PLC0415
    from ..segmenters.canopy import CanopySegmenter, with_canopy_cut  # noqa: PLC0415
    from ..segmenters.cloud_masked import CloudMaskedSegmenter, with_cloud_mask  # noqa: PLC0415

    cut = with_canopy_cut(seg, cut_canopy, pixel_size_m(scene.transform, scene.crs))
    cut_canopy = isinstance(cut, CanopySegmenter)  # "auto" resolved once, as segment does
    masked = with_cloud_mask(cut, mask_clouds)
    masked.check_prompts(prompts)  # a model without clouds fails here, not in a task
    mask_clouds = isinstance(masked, CloudMaskedSegmenter)  # "auto" resolved once, as segment does: each task the same
    factor, classes = getattr(seg, "factor", 1.0), getattr(seg, "classes", None)  # rebuilt in each dask task
    chosen = prepare_scene(scene, roles_for(seg, prompts), bands, band_roles).band_indexes
    sel = arr.isel(band=[b - 1 for b in chosen])
    data = sel.data if isinstance(sel.data, da.Array) else da.from_array(np.asarray(sel.data), chunks=(-1, 1024, 1024))
    tile = int(tile or getattr(seg, "tile_size", 512) or 512)
    overlap = default_overlap(seg) if overlap is None else int(overlap)
    grid = TileGrid(scene.height, scene.width, tile, overlap)
    if chunks is not None:
        cy, cx = (chunks, chunks) if isinstance(chunks, int) else chunks
        ychunks = tuple(min(cy, scene.height - s) for s in range(0, scene.height, cy))
        xchunks = tuple(min(cx, scene.width - s) for s in range(0, scene.width, cx))
    else:
        ychunks, xchunks = data.chunks[1], data.chunks[2]
    scaling = getattr(seg, "scaling", "reflectance")
    nodata = scene.nodata
    stats = scene_statistics(arr, chosen, stretch) if scaling == "unit" else None
    task = dask.delayed(_block_task, pure=True)
    rows = []
    y0 = 0
    for h in ychunks:
        row = []
        x0 = 0
        for w in xchunks:
            block = Window(x0, y0, w, h)
            _, src = source_window(grid, block)
            (ya, yb), (xa, xb) = src.toranges()
            value = task(data[:, ya:yb, xa:xb], (ya, xa), grid, block, key, device, prompts, scaling, stats, nodata,
                         batch_size, factor, classes, flips, presence_check, mask_clouds, cut_canopy)
            row.append(da.from_delayed(value, shape=(len(prompts), h, w), dtype=np.float32))
            x0 += w
        rows.append(row)
        y0 += h
    result = da.block([rows]) if rows else da.zeros((len(prompts), 0, 0), np.float32)
    result = result[0] if result.ndim == 4 else result
    coords = {"prompt": prompts, "y": arr["y"], "x": arr["x"]}
    if "spatial_ref" in arr.coords:
        coords["spatial_ref"] = arr.coords["spatial_ref"]
    out = xr.DataArray(result, dims=("prompt", "y", "x"), coords=coords, name="probability",
                       attrs={"long_name": tuple(prompts), "model": str(key), "tile": tile, "overlap": overlap,
                              "flips": flips, "mask_clouds": int(bool(mask_clouds)),
                              "cut_canopy": int(bool(cut_canopy))})
    if scene.crs is not None:
        out = out.rio.write_crs(scene.crs)
    out = out.rio.write_transform(scene.transform)
    return out


@xr.register_dataarray_accessor("geopix")
class GeopixDataArrayAccessor:
    """``da.geopix.segment(...)``, ``probs.geopix.to_polygons(...)``."""

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    def segment(self, prompts: str | Sequence[str], model="spectral", **options) -> xr.DataArray:
        """Lazy per-prompt probabilities (dims ``prompt, y, x``); options as :func:`geopix_tiles.segment`."""
        return segment_dataarray(self._obj, prompts, model, **options)

    def to_polygons(self, threshold: float = 0.5, min_area: float | None = None, simplify: float | None = None):
        """Polygons of a ``(prompt, y, x)`` probability array, streamed strip by strip."""
        from ..outputs.polygons import probabilities_to_polygons  # noqa: PLC0415

        return probabilities_to_polygons(self._obj, threshold=threshold, min_area=min_area, simplify=simplify)

    def describe(self, regions, model="default", **options):
        """``regions`` (GeoDataFrame) plus ``category``/``description`` columns; see :mod:`geopix_tiles.answers.regions`."""
        from ..answers.regions import describe_regions  # noqa: PLC0415

        return describe_regions(regions, self._obj, model, **options)

    def chat(self, window=None, model="default", **options):
        """A :class:`~geopix_tiles.answers.conversation.Conversation` about ``window`` (a rasterio ``Window`` or a bbox)."""
        from ..answers.conversation import Conversation  # noqa: PLC0415

        return Conversation(self._obj, model, window=window, **options)

    def ask(self, question: str, window=None, model="default", **options):
        """One question about ``window`` (a rasterio ``Window`` or a bbox; default all): a ``Reply``."""
        return self.chat(window, model, **options).ask(question)


@xr.register_dataset_accessor("geopix")
class GeopixDatasetAccessor:
    """A Dataset of single-band variables (``red``, ``nir``, ...): variable names are band roles."""

    def __init__(self, obj: xr.Dataset) -> None:
        self._obj = obj

    def to_bands(self) -> xr.DataArray:
        names = [n for n, v in self._obj.data_vars.items() if {"y", "x"} <= set(v.dims)]
        if not names:
            raise InputError("dataset has no (y, x) variables; pass bands as variables named red, green, nir, ...")
        arr = self._obj[names].to_array("band").transpose("band", "y", "x")
        arr = arr.assign_coords(band=np.arange(1, len(names) + 1))
        arr.attrs["long_name"] = tuple(names)
        first = self._obj[names[0]]
        if first.rio.crs is not None:
            arr = arr.rio.write_crs(first.rio.crs)
        if first.rio.nodata is not None:
            arr = arr.rio.write_nodata(first.rio.nodata)
        return arr

    def segment(self, prompts: str | Sequence[str], model="spectral", **options) -> xr.DataArray:
        return segment_dataarray(self.to_bands(), prompts, model, **options)
