"""The reader's validity mask equals GDAL's own for every kind of mask, whichever way it is computed.

For integer nodata and 8-bit alpha the reader derives the mask from the pixels it already
decoded (GDAL's mask read decodes every block again); everything else asks GDAL.
"""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from conftest import UTM, UTM_TRANSFORM
from geopix_tiles.io.scene import SceneReader, _alpha_band, _integer_nodata, open_scene, select_bands


def _write(path, data, nodata=None, alpha=False, photometric=None):
    c, h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=c, dtype=data.dtype.name, crs=UTM,
                   transform=UTM_TRANSFORM, tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    if nodata is not None:
        profile["nodata"] = nodata
    if photometric:
        profile["photometric"] = photometric
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if alpha:
            dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    return path


def _read_all(path, bands=(1, 2, 3)):
    scene = select_bands(open_scene(path), bands)
    reader = SceneReader(scene)
    out = np.empty((len(bands), scene.height, scene.width), scene.dtype)
    valid = np.empty((scene.height, scene.width), bool)
    reader.read_rows_into(0, scene.height, out, valid)
    reader.close()
    with rasterio.open(path) as src:
        pixels = src.read(list(bands))
        gdal_valid = np.all(src.read_masks(list(bands)) > 0, axis=0)
        paths = (_integer_nodata(src, list(bands), pixels.dtype), _alpha_band(src, list(bands), pixels.dtype))
    if np.issubdtype(pixels.dtype, np.floating):
        gdal_valid &= np.all(np.isfinite(pixels), axis=0)
        pixels = np.where(gdal_valid, pixels, 0)
    return out, valid, pixels, gdal_valid, paths


def _rgb(dtype, h=150, w=170, seed=0):
    rng = np.random.default_rng(seed)
    hi = 250 if np.dtype(dtype).itemsize == 1 else 4000
    return rng.integers(1, hi, (3, h, w)).astype(dtype)


def test_rgba_alpha_comes_from_the_same_read(tmp_path):
    data = _rgb(np.uint8)
    alpha = np.full(data.shape[1:], 255, np.uint8)
    alpha[:40, :] = 0  # a collar
    alpha[100:120, 30:90] = 7  # partly transparent is still data (GDAL: mask > 0)
    path = _write(tmp_path / "rgba.tif", np.concatenate([data, alpha[None]]), alpha=True)
    out, valid, pixels, gdal_valid, (nodata, alpha_band) = _read_all(path)
    assert alpha_band == 4 and nodata is None
    np.testing.assert_array_equal(out, pixels)
    np.testing.assert_array_equal(valid, gdal_valid)
    assert not valid[:40].any() and valid[40:].all()


@pytest.mark.parametrize("dtype,nodata", [(np.uint8, 0), (np.uint16, 65535), (np.int16, -32768)])
def test_integer_nodata_from_the_pixels(tmp_path, dtype, nodata):
    data = _rgb(dtype)
    data[:, :20, :] = nodata  # all bands nodata
    data[1, 60:70, 10:50] = nodata  # one band nodata: the pixel is not valid (GDAL's per-band masks ANDed)
    path = _write(tmp_path / "nd.tif", data, nodata=nodata)
    out, valid, pixels, gdal_valid, (values, alpha_band) = _read_all(path)
    assert values == [nodata] * 3 and alpha_band is None
    np.testing.assert_array_equal(out, pixels)
    np.testing.assert_array_equal(valid, gdal_valid)
    assert (~valid).sum() == 20 * 170 + 10 * 40


def test_masks_gdal_computes_differently_are_asked_of_gdal(tmp_path):
    # a float scene with a nodata value and NaNs: GDAL's rule (and NaN) decides
    data = _rgb(np.float32)
    data[:, :10] = -9999.0
    data[2, 50:60, 50:60] = np.nan
    path = _write(tmp_path / "f.tif", data, nodata=-9999.0)
    out, valid, pixels, gdal_valid, (values, alpha_band) = _read_all(path)
    assert values is None and alpha_band is None
    np.testing.assert_array_equal(valid, gdal_valid)
    np.testing.assert_array_equal(out, pixels)
    # 16-bit alpha: GDAL scales it to 8 bits (alpha 1..256 is a masked pixel), so it is GDAL's call
    data16 = _rgb(np.uint16)
    alpha = np.full(data16.shape[1:], 65535, np.uint16)
    alpha[:30] = 200
    path16 = _write(tmp_path / "rgba16.tif", np.concatenate([data16, alpha[None]]), alpha=True, photometric="RGB")
    out, valid, pixels, gdal_valid, (values, alpha_band) = _read_all(path16)
    assert alpha_band is None
    np.testing.assert_array_equal(valid, gdal_valid)
    # a nodata value the dtype cannot hold exactly is not a pixel comparison either
    path_frac = _write(tmp_path / "frac.tif", _rgb(np.uint8), nodata=12.5)
    _, valid, _, gdal_valid, (values, _) = _read_all(path_frac)
    assert values is None
    np.testing.assert_array_equal(valid, gdal_valid)
