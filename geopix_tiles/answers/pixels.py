"""RGB pixels of a scene (a GeoTIFF or a DataArray) for the answer paths, as the engine scales them.

Windowed, decimated reads (GDAL overviews when the file has them), the engine's band roles
and scene-wide 2-98 % statistics, nodata set to zero: a crop here is what ``segment`` feeds
the model for the same pixels.
"""
from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import xarray as xr
    from rasterio.windows import Window

__all__ = ["PixelSource", "FilePixelSource", "ArrayPixelSource", "finish", "open_pixels"]


class PixelSource:
    """RGB crops of a scene, resampled and scaled scene-wide to [0, 1] for the model.

    ``read(window, (out_h, out_w)) -> float32 [3, out_h, out_w]`` for a rasterio
    :class:`~rasterio.windows.Window` (zero where the scene is nodata). Two implementations: a GeoTIFF read window by window through GDAL,
    and an in-memory or dask DataArray.
    """

    height: int
    width: int
    crs: Any
    transform: Affine

    def read(self, window: Window, out_shape: tuple[int, int]) -> np.ndarray:
        return self.read_masked(window, out_shape)[0]

    def read_masked(self, window: Window, out_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`read` and the valid-data mask ``[out_h, out_w]`` (None when every pixel is data).

        Replies need it: the zeros written into nodata look like deep water to the model, and
        a share of the view must not count pixels the scene has no data for.
        """
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "PixelSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: the least block cache a read gets (MB), however narrow its window
MIN_READ_CACHE_MB = 16


def _rgb_roles() -> tuple[str, ...]:
    return ("red", "green", "blue")


class FilePixelSource(PixelSource):
    """Windowed, decimated reads of a GeoTIFF with the engine's scene-wide statistics."""

    def __init__(self, path: str | os.PathLike, bands: Any = None, band_roles: Any = None,
                 allow_no_georef: bool = False, stretch: str = "auto") -> None:
        import rasterio  # noqa: PLC0415

        from ..io.scene import prepare_scene  # noqa: PLC0415

        scene = prepare_scene(path, _rgb_roles(), bands, band_roles, allow_no_georef=allow_no_georef, statistics=True,
                              stretch=stretch)
        self.scene = scene
        self.height, self.width = scene.height, scene.width
        self.crs, self.transform = scene.crs, scene.transform
        self._src = rasterio.open(scene.path)

    def read_masked(self, window: Window, out_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        from rasterio.enums import Resampling  # noqa: PLC0415
        from rasterio.errors import RasterioError  # noqa: PLC0415

        from ..errors import ReadError  # noqa: PLC0415
        from ..io.gdal_cache import block_cache, block_row_mb  # noqa: PLC0415

        idx = list(self.scene.band_indexes)
        shape = (len(idx), *out_shape)
        try:
            # GDAL's default cache (5 % of RAM) kept 1.2 GB of blocks after a whole-scene read of the 20k
            # NAIP mosaic (ask peaked at 1.9 GB); two rows of blocks are all a read needs (0.9 GB, same time)
            with block_cache(max(MIN_READ_CACHE_MB, block_row_mb(self._src, window, len(idx)))):
                raw = self._src.read(idx, window=window, out_shape=shape, resampling=Resampling.bilinear)
                valid = None
                if self.scene.has_mask:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        masks = self._src.read_masks(idx, window=window, out_shape=shape)
                    valid = np.all(masks > 0, axis=0)
                if np.issubdtype(raw.dtype, np.floating):
                    valid &= np.all(np.isfinite(raw), axis=0)
        except RasterioError as exc:
            (r0, r1), (c0, c1) = window.toranges()
            raise ReadError(f"reading window rows {r0}..{r1}, cols {c0}..{c1} of "
                            f"'{self.scene.path}' failed ({' '.join(str(exc).split())[:160]}); the file is corrupt") from None
        return finish(raw, valid, self.scene.low, self.scene.high), valid

    def close(self) -> None:
        self._src.close()


class ArrayPixelSource(PixelSource):
    """Crops of a ``(band, y, x)`` DataArray (numpy or dask), scaled with the engine's scene statistics."""

    def __init__(self, obj: "xr.DataArray", bands: Any = None, band_roles: Any = None, stretch: str = "auto") -> None:
        import rioxarray  # noqa: F401, PLC0415

        from ..io.scene import prepare_scene  # noqa: PLC0415
        from ..io.arrays import as_bands, scene_of, scene_statistics  # noqa: PLC0415

        arr = as_bands(obj)
        scene = scene_of(arr)
        if scene.crs is None:
            raise InputError("the array has no CRS; set one with .rio.write_crs(...) so regions can be placed on it")
        chosen = prepare_scene(scene, _rgb_roles(), bands, band_roles).band_indexes
        self.arr = arr.isel(band=[b - 1 for b in chosen])
        self.nodata = scene.nodata
        self.height, self.width = scene.height, scene.width
        self.crs, self.transform = scene.crs, scene.transform
        self.low, self.high = scene_statistics(arr, chosen, stretch).compute()  # the same numbers as segment's

    def read_masked(self, window: Window, out_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
        from scipy.ndimage import zoom  # noqa: PLC0415

        from ..io.arrays import valid_mask  # noqa: PLC0415

        (row0, row1), (col0, col1) = window.toranges()
        out_h, out_w = out_shape
        step = max(1, min((row1 - row0) // out_h, (col1 - col0) // out_w))  # cheap decimation before interpolation
        raw = np.asarray(self.arr.data[:, row0:row1:step, col0:col1:step])
        valid = valid_mask(raw, self.nodata)
        data = raw.astype(np.float32)
        if valid is not None:
            data[:, ~valid] = 0
        factors = (1, out_h / data.shape[1], out_w / data.shape[2])
        data = zoom(data, factors, order=1, grid_mode=True, mode="nearest")[:, :out_h, :out_w]
        if valid is not None:
            valid = zoom(valid.astype(np.uint8), factors[1:], order=0, grid_mode=True, mode="nearest")[:out_h, :out_w] > 0
        return finish(data, valid, self.low, self.high), valid


def finish(raw: np.ndarray, valid: np.ndarray | None, low, high) -> np.ndarray:
    """Scene-wide unit stretch exactly as the engine scales tiles; zero where invalid."""
    from ..core.tile_ops import scale_tiles  # noqa: PLC0415

    pixels = scale_tiles(raw[None].astype(np.float32), "unit", low, high)[0]
    if valid is not None:
        pixels[:, ~valid] = 0.0
    return np.nan_to_num(pixels, copy=False, nan=0.0)


def open_pixels(scene: "str | os.PathLike | xr.DataArray | PixelSource", bands: Any = None,
                band_roles: Any = None, allow_no_georef: bool = False, stretch: str = "auto") -> PixelSource:
    """``allow_no_georef``: a file without CRS or transform (a plain JPEG or PNG chip) is read in pixel
    coordinates, as ``segment --allow-no-georef`` does; replies then give no areas in square metres.
    ``stretch``: as ``segment``'s (``auto``: a pale, flat scene stays pale; ``full``: the plain 2-98 %)."""
    if isinstance(scene, PixelSource):
        return scene
    if isinstance(scene, (str, os.PathLike)):
        return FilePixelSource(scene, bands, band_roles, allow_no_georef=allow_no_georef, stretch=stretch)
    import xarray as xr  # noqa: PLC0415

    if isinstance(scene, xr.DataArray):
        return ArrayPixelSource(scene, bands, band_roles, stretch)
    raise InputError(f"scene of type {type(scene).__name__} is not supported; pass a GeoTIFF path or a DataArray")
