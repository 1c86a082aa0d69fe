"""Real scenes from ../shared/data (skipped when absent) and the shipped sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import rasterio
from rasterio.features import rasterize

from geopix_tiles import segment

SAMPLE = Path(__file__).resolve().parents[1] / "geopix_tiles" / "data" / "naip_sample.tif"


def _ndwi(path):
    with rasterio.open(path) as s:
        g, n = s.read((2, 4)).astype(np.float32)
    return (g - n) / np.maximum(g + n, 1)


def test_shipped_naip_water_is_sane(tmp_path):
    gdf = segment(SAMPLE, ["water", "vegetation"], out=tmp_path / "o.gpkg", raster_out=tmp_path / "o.tif",
                  tile=256, overlap=32, min_area=100)
    water = gdf[gdf.prompt == "water"]
    veg = gdf[gdf.prompt == "vegetation"]
    with rasterio.open(SAMPLE) as s:
        area = s.width * s.height * 25.0
        shape, transform = (s.height, s.width), s.transform
    frac = water.area_m2.sum() / area
    assert 0.05 < frac < 0.4, frac  # prairie potholes: lots of water, not most of the scene
    assert water.area_m2.max() > 10_000  # at least one pond over 1 ha
    ndwi = _ndwi(SAMPLE)
    inside = rasterize(water.geometry, out_shape=shape, transform=transform) > 0
    assert ndwi[inside].mean() > 0.4 and ndwi[~inside].mean() < 0.0
    veg_mask = rasterize(veg.geometry, out_shape=shape, transform=transform) > 0
    assert (inside & veg_mask).sum() < 0.01 * inside.sum()  # water and vegetation barely overlap


def test_naip_time_series_water_by_ndwi(shared_data, tmp_path):
    scenes = sorted((shared_data / "naip").glob("*.tif"))[:3]
    for scene in scenes:
        out = tmp_path / f"{scene.stem}.gpkg"
        gdf = segment(scene, "water", out=out, band_roles="red=1,green=2,blue=3,nir=4", tile=512, overlap=64)
        info = pyogrio.read_info(out)
        with rasterio.open(scene) as s:
            assert info["crs"] == "EPSG:26914" and s.crs.to_epsg() == 26914
        with rasterio.open(scene) as s:
            shape, transform = (s.height, s.width), s.transform
        # the polygons, burnt back through the file's transform, are the NDWI > 0.2 pixels of the
        # file (the spectral water rule): a shifted transform, flipped rows or lost holes fail this
        painted = rasterize(gdf.geometry, out_shape=shape, transform=transform) > 0
        truth = _ndwi(scene) > 0.2
        iou = (painted & truth).sum() / (painted | truth).sum()
        assert iou > 0.9, (scene.name, iou)
        assert 0.02 < gdf.area_m2.sum() / (shape[0] * shape[1] * 25.0) < 0.5
