"""End-to-end engine behaviour on real GeoTIFFs and GeoPackages (synthetic scenes with known objects)."""
from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from scipy import ndimage

import geopix_tiles
from geopix_tiles import segment
from conftest import RGBN, UTM_TRANSFORM, water_scene, write_scene


class BoxFilterSegmenter:
    """Translation-equivariant test model: 5x5 mean of band 1, scaled to [0, 1]."""

    band_roles = None
    tile_size = 64
    scaling = "reflectance"

    def check_prompts(self, prompts):
        pass

    def predict(self, tiles, prompts):
        out = ndimage.uniform_filter(tiles[:, 0], size=(1, 5, 5), mode="reflect") / 255.0
        return np.repeat(out[:, None], len(prompts), axis=1).astype(np.float32)


class ThresholdSegmenter:
    """Band-1 > 0.5 (scene-scaled) per prompt: works for any band count and dtype."""

    band_roles = None
    tile_size = 64
    scaling = "unit"

    def check_prompts(self, prompts):
        pass

    def predict(self, tiles, prompts):
        return np.repeat((tiles[:, :1] > 0.5).astype(np.float32), len(prompts), axis=1)


BOXES = [(10, 30, 10, 50), (40, 140, 100, 130), (150, 170, 20, 220), (5, 15, 200, 210)]


def test_polygons_match_known_objects_in_crs(tmp_path):
    scene = write_scene(tmp_path / "s.tif", water_scene(180, 240, BOXES), descriptions=RGBN)
    gdf = segment(scene, ["water"], out=tmp_path / "o.gpkg", raster_out=tmp_path / "o.tif", tile=64, overlap=16)
    assert len(gdf) == len(BOXES)
    on_disk = pyogrio.read_dataframe(tmp_path / "o.gpkg")
    assert len(on_disk) == len(BOXES) and on_disk.crs.to_epsg() == 32633
    assert set(on_disk.columns) >= {"prompt", "score", "area", "area_m2", "pixels", "geometry"}
    got = sorted(tuple(np.round(g.bounds, 6)) for g in on_disk.geometry)
    want = []
    for r0, r1, c0, c1 in BOXES:
        x0, y1 = UTM_TRANSFORM @ (c0, r0)
        x1, y0 = UTM_TRANSFORM @ (c1, r1)
        want.append((x0, y0, x1, y1))
    assert got == sorted(want)
    areas = sorted(on_disk["area"])
    assert areas == pytest.approx(sorted((r1 - r0) * (c1 - c0) * 0.25 for r0, r1, c0, c1 in BOXES))
    assert np.allclose(on_disk["area"], on_disk.geometry.area)
    assert np.allclose(on_disk["area_m2"], on_disk["area"])
    assert (on_disk["score"] > 0.99).all() and (on_disk["prompt"] == "water").all()
    with rasterio.open(tmp_path / "o.tif") as r, rasterio.open(scene) as s:
        assert r.crs == s.crs and r.transform == s.transform and r.count == 1
        assert r.descriptions == ("water",)
        band = r.read(1)
        truth = np.zeros((180, 240), bool)
        for r0, r1, c0, c1 in BOXES:
            truth[r0:r1, c0:c1] = True
        assert np.array_equal(band == 255, truth) and np.array_equal(band == 0, ~truth)
        assert r.profile["tiled"] and r.compression is not None


def test_objects_across_tile_seams_are_one_polygon(tmp_path):
    # tile 64 / overlap 16: seams every 48 px; these objects cross several row and column seams
    boxes = [(20, 200, 40, 60), (90, 110, 5, 250), (150, 230, 150, 240)]
    rings = water_scene(256, 256, boxes)
    scene = write_scene(tmp_path / "s.tif", rings, descriptions=RGBN)
    gdf = segment(scene, "water", out=tmp_path / "o.gpkg", tile=64, overlap=16)
    # the first two boxes touch each other -> one object; the third is separate
    assert len(gdf) == 2
    labels, n = ndimage.label(rings[1] > rings[3])
    assert n == 2
    assert sorted(gdf["pixels"]) == sorted(np.bincount(labels.ravel())[1:].tolist())
    assert all(g.geom_type == "Polygon" and g.is_valid for g in gdf.geometry)


def test_u_shape_merges_across_strips_and_keeps_hole(tmp_path):
    data = water_scene(200, 200, [(10, 190, 10, 30), (10, 190, 170, 190), (170, 190, 10, 190), (10, 30, 10, 190)])
    scene = write_scene(tmp_path / "s.tif", data, descriptions=RGBN)
    gdf = segment(scene, "water", tile=64, overlap=16)
    assert len(gdf) == 1
    poly = gdf.geometry.iloc[0]
    assert len(poly.interiors) == 1
    assert poly.area == pytest.approx((200 * 0 + (180 * 180 - 140 * 140)) * 0.25)


def test_tiled_equals_untiled_for_translation_equivariant_model(tmp_path):
    rng = np.random.default_rng(0)
    img = ndimage.gaussian_filter(rng.random((1, 150, 230)) * 255, 3).astype(np.uint8)
    img = ((img - img.min()) * (255.0 / max(1, img.max() - img.min()))).astype(np.uint8)
    scene = write_scene(tmp_path / "s.tif", img)
    segment(scene, "x", model=BoxFilterSegmenter(), raster_out=tmp_path / "tiled.tif", tile=64, overlap=16, vectorize=False)
    segment(scene, "x", model=BoxFilterSegmenter(), raster_out=tmp_path / "whole.tif", tile=256, overlap=0, vectorize=False)
    with rasterio.open(tmp_path / "tiled.tif") as a, rasterio.open(tmp_path / "whole.tif") as b:
        ta, tb = a.read(1).astype(int), b.read(1).astype(int)
    assert np.abs(ta - tb).max() <= 1  # identical up to uint8 rounding of float sums
    expected = np.floor(ndimage.uniform_filter(img[0].astype(np.float32), 5, mode="reflect") / 255 * 255 + 0.5)
    assert np.abs(tb - expected).max() <= 1


@pytest.mark.parametrize("height,width", [(37, 300), (300, 37), (50, 60), (1, 1)])
def test_non_square_and_smaller_than_tile(tmp_path, height, width):
    boxes = [(0, max(1, height // 2), 0, max(1, width // 3))]
    scene = write_scene(tmp_path / "s.tif", water_scene(height, width, boxes), descriptions=RGBN)
    gdf = segment(scene, "water", raster_out=tmp_path / "o.tif", tile=64, overlap=16)
    assert len(gdf) == 1
    assert gdf["pixels"].iloc[0] == max(1, height // 2) * max(1, width // 3)
    with rasterio.open(tmp_path / "o.tif") as r:
        assert (r.height, r.width) == (height, width)


def test_nodata_regions(tmp_path):
    data = water_scene(200, 200, [(20, 60, 20, 180)])
    data[:, 100:, :] = 0  # bottom half nodata (nodata=0)
    data[:, 20:60, 150:180] = 0  # a hole of nodata inside the water body
    scene = write_scene(tmp_path / "s.tif", data, nodata=0, descriptions=RGBN)
    gdf, stats = segment(scene, "water", out=tmp_path / "o.gpkg", raster_out=tmp_path / "o.tif", tile=64,
                         overlap=16, return_stats=True)
    assert stats.tiles_skipped >= 3  # all-nodata tiles in the bottom rows are never predicted
    with rasterio.open(tmp_path / "o.tif") as r:
        mask = r.read_masks(1)
        assert (mask[100:] == 0).all() and (mask[:100][data[0, :100] > 0] == 255).all()
        assert (mask[20:60, 150:180] == 0).all()
    assert len(gdf) == 1 and gdf["pixels"].iloc[0] == 40 * 130


def test_nodata_zero_in_one_band_masks_the_pixel_as_documented(tmp_path):
    """README "Outputs": with nodata 0 a pixel is missing when ANY selected band is 0, even where 0
    is real data (here: green 0 inside the water body); without a nodata value it is data."""
    data = water_scene(96, 96, [(20, 60, 20, 60)])
    data[1, 30:34, 30:34] = 0  # green 0: real data (dark), read by the water index
    with_nodata = write_scene(tmp_path / "a.tif", data, nodata=0, descriptions=RGBN)
    without = write_scene(tmp_path / "b.tif", data, descriptions=RGBN)
    segment(with_nodata, "water", raster_out=tmp_path / "a_o.tif", tile=64, overlap=16)
    segment(without, "water", raster_out=tmp_path / "b_o.tif", tile=64, overlap=16)
    with rasterio.open(tmp_path / "a_o.tif") as a, rasterio.open(tmp_path / "b_o.tif") as b:
        assert (a.read_masks(1)[30:34, 30:34] == 0).all() and a.read_masks(1)[25, 25] == 255
        assert (b.read_masks(1)[30:34, 30:34] == 255).all()
        assert (b.read(1)[30:34, 30:34] == 0).all()  # valid, and not water (NDWI -1)


def test_threshold_writes_binary_with_nodata(tmp_path):
    data = water_scene(100, 100, [(10, 40, 10, 40)])
    data[:, 80:] = 0
    scene = write_scene(tmp_path / "s.tif", data, nodata=0, descriptions=RGBN)
    segment(scene, "water", raster_out=tmp_path / "o.tif", threshold=0.5, vectorize=False, tile=64, overlap=8)
    with rasterio.open(tmp_path / "o.tif") as r:
        band = r.read(1)
        assert r.nodata == 255
        assert set(np.unique(band)) == {0, 1, 255}
        assert (band[80:] == 255).all() and band[10:40, 10:40].all() and band[50:70].sum() == 0


@pytest.mark.parametrize("count", [1, 3, 4, 13])
def test_band_counts(tmp_path, count):
    data = np.full((count, 120, 90), 10, np.uint8)
    data[0, 30:70, 20:50] = 200
    scene = write_scene(tmp_path / "s.tif", data)
    gdf = segment(scene, ["a", "b"], model=ThresholdSegmenter(), out=tmp_path / "o.gpkg", tile=64, overlap=16)
    assert len(gdf) == 2 and set(gdf["prompt"]) == {"a", "b"}
    assert (gdf["pixels"] == 40 * 30).all()


def test_thirteen_band_spectral_with_band_roles(tmp_path):
    data = np.full((13, 96, 96), 1000, np.uint16)
    data[2, 10:50, 10:50] = 3000  # green (B03)
    data[7] = 1500  # nir (B08)
    data[7, 10:50, 10:50] = 500
    scene = write_scene(tmp_path / "s.tif", data)
    gdf = segment(scene, "water", band_roles="green=3,nir=8", tile=64, overlap=16)
    assert len(gdf) == 1 and gdf["pixels"].iloc[0] == 1600


@pytest.mark.parametrize("dtype,scale", [("uint16", 100), ("float32", 0.01), ("int16", 50)])
def test_dtypes(tmp_path, dtype, scale):
    data = (water_scene(100, 100, [(30, 60, 30, 90)]).astype(np.float64) * scale).astype(dtype)
    scene = write_scene(tmp_path / "s.tif", data, descriptions=RGBN)
    gdf = segment(scene, "water", tile=64, overlap=16)
    assert len(gdf) == 1 and gdf["pixels"].iloc[0] == 30 * 60


def test_float_nan_is_nodata(tmp_path):
    data = water_scene(80, 80, [(0, 80, 0, 80)]).astype(np.float32)
    data[:, 40:] = np.nan
    scene = write_scene(tmp_path / "s.tif", data, descriptions=RGBN)
    gdf = segment(scene, "water", raster_out=tmp_path / "o.tif", tile=64, overlap=16)
    assert gdf["pixels"].sum() == 40 * 80
    with rasterio.open(tmp_path / "o.tif") as r:
        assert (r.read_masks(1)[40:] == 0).all()


def test_float_scene_with_nan_blocks_skips_them_and_masks_single_band_nans(tmp_path):
    """Whole NaN tiles are skipped (not fed to the model) and written as nodata; a NaN in one band
    only makes that pixel invalid; the water object beside them keeps every one of its pixels."""
    data = water_scene(128, 128, [(70, 110, 70, 110)]).astype(np.float32)
    data[:, :64, :64] = np.nan  # covers the first tile of the 64 px grid (overlap 16) entirely
    data[1, 80:84, 20:24] = np.nan  # green only
    scene = write_scene(tmp_path / "s.tif", data, descriptions=RGBN)
    gdf, stats = segment(scene, "water", raster_out=tmp_path / "o.tif", tile=64, overlap=16, return_stats=True)
    assert stats.tiles_skipped >= 1
    assert gdf["pixels"].sum() == 40 * 40
    with rasterio.open(tmp_path / "o.tif") as r:
        valid = r.read_masks(1) > 0
    assert not valid[:64, :64].any() and not valid[80:84, 20:24].any()
    assert valid[64:, 64:].all() and valid.sum() == 128 * 128 - 64 * 64 - 16


def test_geographic_crs_area_is_geodesic(tmp_path):
    transform = from_origin(10.0, 50.0, 0.0001, 0.0001)  # ~7 x 11 m pixels at 50N
    scene = write_scene(tmp_path / "s.tif", water_scene(100, 100, [(10, 60, 20, 70)]), crs="EPSG:4326",
                        transform=transform, descriptions=RGBN)
    gdf = segment(scene, "water", out=tmp_path / "o.gpkg", tile=64, overlap=16)
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == 1
    row = gdf.iloc[0]
    assert row["area"] == pytest.approx(50 * 50 * 1e-8)
    utm_area = gdf.to_crs(gdf.estimate_utm_crs()).geometry.area.iloc[0]
    assert row["area_m2"] == pytest.approx(utm_area, rel=2e-3)
    assert pyogrio.read_info(tmp_path / "o.gpkg")["crs"] == "EPSG:4326"


def test_min_area_and_simplify(tmp_path):
    scene = write_scene(tmp_path / "s.tif", water_scene(100, 100, [(5, 7, 5, 7), (20, 80, 20, 80)]), descriptions=RGBN)
    gdf = segment(scene, "water", min_area=2.0, simplify=0.5, tile=64, overlap=16)
    assert len(gdf) == 1 and gdf["pixels"].iloc[0] == 3600


def test_multiple_prompts_one_layer(tmp_path):
    data = water_scene(100, 100, [(10, 30, 10, 30)])
    data[0, 50:90, 50:90] = 10  # red low, nir high -> vegetation
    data[3, 50:90, 50:90] = 200
    scene = write_scene(tmp_path / "s.tif", data, descriptions=RGBN)
    gdf = segment(scene, ["water", "vegetation"], out=tmp_path / "o.gpkg", raster_out=tmp_path / "o.tif", tile=64, overlap=16)
    assert pyogrio.list_layers(tmp_path / "o.gpkg").shape[0] == 1
    assert sorted(gdf["prompt"]) == ["vegetation", "water"]
    with rasterio.open(tmp_path / "o.tif") as r:
        assert r.count == 2 and r.descriptions == ("water", "vegetation")


def test_cog_output(tmp_path):
    scene = write_scene(tmp_path / "s.tif", water_scene(700, 600, [(100, 400, 100, 300)]), descriptions=RGBN)
    segment(scene, "water", raster_out=tmp_path / "o.tif", cog=True, vectorize=False, tile=256, overlap=32)
    with rasterio.open(tmp_path / "o.tif") as r, rasterio.open(scene) as s:
        assert r.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert r.overviews(1) and r.crs == s.crs and r.transform == s.transform
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, geopix_tiles; print(any(m in sys.modules for m in ('torch', 'geopandas', 'rasterio')))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    assert callable(geopix_tiles.segment)


@pytest.mark.parametrize("panel_width", [64, 200, 300])  # rounded up to the 256 px output block
def test_panels_give_the_same_raster_and_polygons(tmp_path, panel_width):
    rng = np.random.default_rng(1)
    blobs = ndimage.gaussian_filter(rng.random((230, 700)), 6)
    water = blobs > np.percentile(blobs, 60)
    data = water_scene(230, 700, [])
    data[1][water], data[3][water] = 100, 20
    data[:, 200:215, 230:290] = 0  # nodata patch crossing a panel seam
    scene = write_scene(tmp_path / "s.tif", data, nodata=0, descriptions=RGBN)
    opts = dict(tile=64, overlap=16)
    whole = segment(scene, ["water", "vegetation"], raster_out=tmp_path / "whole.tif", panel_width=None, **opts)
    vectors_only = segment(scene, ["water", "vegetation"], panel_width=panel_width, **opts)  # unrounded panels
    panels = segment(scene, ["water", "vegetation"], raster_out=tmp_path / "panels.tif", panel_width=panel_width, **opts)
    with rasterio.open(tmp_path / "whole.tif") as a, rasterio.open(tmp_path / "panels.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        np.testing.assert_array_equal(a.read_masks(), b.read_masks())
    assert len(whole) == len(panels) > 5
    def key(g):
        g = g.assign(minx=g.bounds.minx, miny=g.bounds.miny)
        return g.sort_values(["prompt", "pixels", "minx", "miny"]).reset_index(drop=True)

    w, p = key(whole), key(panels)
    np.testing.assert_array_equal(w["pixels"], p["pixels"])
    np.testing.assert_allclose(w["score"], p["score"], rtol=1e-12)
    assert all(a.equals(b) for a, b in zip(w.geometry, p.geometry))
    assert all(g.geom_type == "Polygon" for g in p.geometry)
    v = key(vectors_only)
    np.testing.assert_array_equal(w["pixels"], v["pixels"])
    assert all(a.equals(b) for a, b in zip(w.geometry, v.geometry))


class CallSizes(BoxFilterSegmenter):
    """The box filter, recording how many tiles each model call gets."""

    def __init__(self):
        self.sizes = []

    def predict(self, tiles, prompts):
        self.sizes.append(len(tiles))
        return super().predict(tiles, prompts)


def test_auto_panels_let_a_row_of_tiles_fill_a_large_batch(tmp_path):
    """A GPU-sized batch is not cut down to the tiles of a 4096 px panel's row: the default panel
    widens to batch x stride, so every call but the last gets a whole row; the pixels are those of
    fixed 4096 px panels."""
    from geopix_tiles.core.engine import PANEL_WIDTH, panel_width_for

    assert panel_width_for(PANEL_WIDTH, 8, 256, 64) == PANEL_WIDTH  # a CPU batch keeps the panel
    assert panel_width_for(PANEL_WIDTH, 64, 256, 64) == 64 * 192 + 64
    data = water_scene(112, 5000, [(10, 100, 50, 4900)])
    scene = write_scene(tmp_path / "long.tif", data, descriptions=RGBN)
    opts = dict(tile=64, overlap=16, batch_size=128, vectorize=False)
    wide, fixed = CallSizes(), CallSizes()
    segment(scene, "water", model=wide, raster_out=tmp_path / "auto.tif", **opts)
    segment(scene, "water", model=fixed, raster_out=tmp_path / "fixed.tif", panel_width=PANEL_WIDTH, **opts)
    row = len(range(0, 5000 - 64 + 1, 48)) + 1  # tiles across the scene (the last one moved to the edge)
    assert wide.sizes == [row, row]  # two grid rows, one call each
    assert max(fixed.sizes) < row and len(fixed.sizes) == 4  # two panels per row
    with rasterio.open(tmp_path / "auto.tif") as a, rasterio.open(tmp_path / "fixed.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())


@pytest.mark.parametrize("cog", [False, True])
def test_four_prompt_raster_is_not_tagged_as_a_picture(tmp_path, cog):
    """Four uint8 probability bands are layers, not RGBA: no band may be red/green/blue/alpha
    (GIS tools would draw the fourth prompt as transparency), in plain GeoTIFF and COG alike."""
    from rasterio.enums import ColorInterp

    scene = write_scene(tmp_path / "s.tif", water_scene(180, 240, BOXES), descriptions=RGBN)
    prompts = ["water", "vegetation", "ndwi", "ndvi"]
    segment(scene, prompts, raster_out=tmp_path / "o.tif", vectorize=False, tile=64, overlap=16, cog=cog)
    with rasterio.open(tmp_path / "o.tif") as r:
        assert r.count == 4 and r.descriptions == tuple(prompts)
        assert r.colorinterp[0] == ColorInterp.gray
        assert all(c == ColorInterp.undefined for c in r.colorinterp[1:]), r.colorinterp


def test_per_pixel_model_runs_without_overlap_by_default_with_the_same_values(tmp_path):
    """The spectral model needs no context: the default overlap is 0 for it (fewer tiles, same raster)."""
    from geopix_tiles.segmenters.protocol import DEFAULT_OVERLAP, default_overlap
    from geopix_tiles.segmenters.spectral import SpectralSegmenter

    assert default_overlap(SpectralSegmenter()) == 0 and default_overlap(BoxFilterSegmenter()) == DEFAULT_OVERLAP
    rng = np.random.default_rng(3)
    blobs = ndimage.gaussian_filter(rng.random((300, 420)), 5)
    data = water_scene(300, 420, [])
    data[1][blobs > np.percentile(blobs, 70)], data[3][blobs > np.percentile(blobs, 70)] = 100, 20
    scene = write_scene(tmp_path / "s.tif", data, descriptions=RGBN)
    default, s0 = segment(scene, ["water", "vegetation"], raster_out=tmp_path / "a.tif", tile=128, return_stats=True)
    overlapped, s64 = segment(scene, ["water", "vegetation"], raster_out=tmp_path / "b.tif", tile=128, overlap=32,
                              return_stats=True)
    assert s0.tiles_total == 3 * 4 and s64.tiles_total > s0.tiles_total  # 3 x 4 tiles of 128 vs 3 x 5 at stride 96
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert a.transform == b.transform and a.crs == b.crs
        diff = np.abs(a.read().astype(int) - b.read().astype(int))
    assert diff.max() <= 1  # blending identical values: at most one step of rounding
    assert len(default) == len(overlapped) > 3
    np.testing.assert_allclose(sorted(default.geometry.area), sorted(overlapped.geometry.area), rtol=1e-9)


def test_split_objects_cuts_polygons_at_the_grid_and_keeps_every_pixel(tmp_path):
    """``split_objects``: polygons stop at the panel grid (columns and rows) and together cover
    exactly what the joined run covers; the raster is unchanged."""
    data = water_scene(300, 520, [(10, 290, 20, 500)])  # one lake across every seam
    data[1][120:125, 20:500], data[3][120:125, 20:500] = 10, 100  # a dry band: two lakes
    scene = write_scene(tmp_path / "s.tif", data, descriptions=RGBN)
    opts = dict(tile=64, overlap=16, panel_width=100)  # panels rounded up to the 256 px block of the raster
    joined = segment(scene, "water", raster_out=tmp_path / "j.tif", **opts)
    split = segment(scene, "water", raster_out=tmp_path / "cut.tif", split_objects=True, **opts)
    with rasterio.open(tmp_path / "j.tif") as a, rasterio.open(tmp_path / "cut.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
    assert len(joined) == 2  # the band cuts the lake into two lakes
    assert len(split) > len(joined)
    assert split["pixels"].sum() == joined["pixels"].sum()
    assert abs(split.geometry.area.sum() - joined.geometry.area.sum()) < 1e-6 * joined.geometry.area.sum()
    assert shapely.union_all(split.geometry.values).equals(shapely.union_all(joined.geometry.values))
    # no polygon crosses the panel seam (256 px, in pixel columns) or spans two row blocks of 256
    transform = rasterio.open(scene).transform
    for g in split.geometry:
        x0, y1 = ~transform * (g.bounds[0], g.bounds[1])
        x1, y0 = ~transform * (g.bounds[2], g.bounds[3])
        assert x1 <= 256 + 1e-6 or x0 >= 256 - 1e-6, (x0, x1)
        assert round(y1) - round(y0) <= 256 + 64, (y0, y1)  # a block plus at most the strip that starts it


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
@pytest.mark.parametrize("scaling", ["unit", "reflectance"])
def test_reader_batches_wait_in_the_source_dtype_and_reach_the_model_bit_identical(dtype, scaling):
    """The reader's batches keep a narrow source dtype while they queue (a quarter of the bytes for uint8) and
    become exactly the float32 tiles the other paths (dask, accessor) cut, nodata zeroed, when the model takes them."""
    from geopix_tiles.core.engine import row_batches
    from geopix_tiles.core.tiling import TileGrid

    rng = np.random.default_rng(3)
    data = rng.integers(0, 250 if dtype == "uint8" else 4000, (4, 300, 520)).astype(dtype)
    valid = np.ones((300, 520), bool)
    valid[:40, :100] = False  # a nodata corner inside the first tile
    low, high = np.array([10.0, 20, 5, 30]), np.array([200.0, 240, 230, 210])
    grid = TileGrid(300, 520, 128, 16)
    for row in range(grid.n_rows):
        raw = list(row_batches(data, valid, (0, 0), grid, row, 3, scaling, low, high, raw=True))
        cut = list(row_batches(data, valid, (0, 0), grid, row, 3, scaling, low, high))
        assert [b.tiles for b in raw] == [b.tiles for b in cut] and raw
        for r, c in zip(raw, cut):
            assert r.pixels.dtype == (np.dtype(dtype) if dtype != "float32" else np.float32)
            assert (r.scale is None) == (dtype == "float32") and c.scale is None
            got = r.model_pixels()
            assert got.dtype == np.float32 and np.array_equal(got, c.pixels)
            if row == 0 and r is raw[0]:  # its first tile is the scene's top-left corner
                assert not got[0, :, :40, :100].any() and got[0, :, 40:, 100:].any()
