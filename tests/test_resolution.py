"""``resolution``: a scene read at another ground resolution, through segment, the CLI and conversations."""
from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine

import geopix_tiles
from geopix_tiles import segment
from geopix_tiles.errors import InputError
from geopix_tiles.interfaces.cli import main
from conftest import RGBN, UTM, UTM_TRANSFORM, water_scene, write_scene

# 0.5 m pixels; every box edge on an even pixel, so a 1 m grid holds them exactly
BOXES = [(10, 30, 10, 50), (40, 140, 100, 130), (150, 170, 20, 220)]


def _coarse_copy(src_path, dst_path):
    """The scene averaged over 2 x 2 pixels by hand, written on the 1 m grid."""
    with rasterio.open(src_path) as src:
        data = src.read().astype(np.float64)
        profile = src.profile
    c, h, w = data.shape
    mean = data.reshape(c, h // 2, 2, w // 2, 2).mean((2, 4))
    profile.update(width=w // 2, height=h // 2, transform=src.transform * Affine.scale(2))
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(np.round(mean).astype(profile["dtype"]))
        dst.descriptions = tuple(RGBN)
    return dst_path


def test_segment_at_a_coarser_resolution_is_segment_of_the_averaged_scene(tmp_path):
    scene = write_scene(tmp_path / "s.tif", water_scene(180, 240, BOXES), descriptions=RGBN)
    gdf = segment(scene, ["water"], out=tmp_path / "o.gpkg", raster_out=tmp_path / "o.tif", resolution=1.0)
    by_hand = _coarse_copy(scene, tmp_path / "coarse.tif")
    segment(by_hand, ["water"], raster_out=tmp_path / "want.tif", collect=False)
    with rasterio.open(tmp_path / "o.tif") as got, rasterio.open(tmp_path / "want.tif") as want, \
            rasterio.open(scene) as src:
        assert got.shape == (90, 120) and got.crs == src.crs == UTM
        assert got.transform == UTM_TRANSFORM * Affine.scale(2) and got.bounds == src.bounds
        assert np.array_equal(got.read(), want.read())
    # the polygons are the boxes, in the CRS, with their true areas (1 m² pixels now)
    on_disk = pyogrio.read_dataframe(tmp_path / "o.gpkg")
    assert len(gdf) == len(on_disk) == len(BOXES)
    assert sorted(on_disk["area"]) == pytest.approx(sorted((r1 - r0) * (c1 - c0) * 0.25 for r0, r1, c0, c1 in BOXES))
    assert sorted(on_disk["pixels"]) == sorted((r1 - r0) * (c1 - c0) // 4 for r0, r1, c0, c1 in BOXES)


def test_resolution_keeps_nodata_and_a_finer_grid_works(tmp_path):
    data = water_scene(120, 160, [(20, 60, 20, 80)])
    data[:, :, 120:] = 0  # a nodata strip on the east
    scene = write_scene(tmp_path / "s.tif", data, descriptions=RGBN, nodata=0)
    segment(scene, ["water"], raster_out=tmp_path / "o.tif", threshold=0.5, resolution=1.0, collect=False)
    with rasterio.open(tmp_path / "o.tif") as r:
        band = r.read(1)
        assert r.nodata == 255 and (band[:, 60:] == 255).all() and (band[:, :60] != 255).all()
        assert band[10:30, 10:40].all() and band[:, :60].sum() == 20 * 30
    segment(scene, ["water"], raster_out=tmp_path / "fine.tif", resolution=0.25, collect=False)
    with rasterio.open(tmp_path / "fine.tif") as r:
        assert r.shape == (240, 320) and r.transform.a == pytest.approx(0.25)


def test_bad_resolutions_are_refused_before_anything_is_written(tmp_path):
    scene = write_scene(tmp_path / "s.tif", water_scene(64, 64, []), descriptions=RGBN)
    for bad in (0, -1.0, float("nan"), "one", True):
        with pytest.raises(InputError, match="must be a positive number of metres"):
            segment(scene, ["water"], out=tmp_path / "o.gpkg", resolution=bad)
    with pytest.raises(InputError, match="makes 's.tif' 1 x 1 px"):
        segment(scene, ["water"], out=tmp_path / "o.gpkg", resolution=100.0)
    plain = write_scene(tmp_path / "plain.tif", water_scene(64, 64, []), crs=None, descriptions=RGBN)
    with pytest.raises(InputError, match="needs a scene with a CRS"):
        segment(plain, ["water"], out=tmp_path / "o.gpkg", allow_no_georef=True, resolution=1.0)
    assert not any(tmp_path.glob("o.*"))


def test_cli_resolution(tmp_path, capfd):
    scene = write_scene(tmp_path / "s.tif", water_scene(180, 240, BOXES), descriptions=RGBN)
    assert main(["segment", str(scene), "-p", "water", "-o", str(tmp_path / "o.gpkg"), "--raster",
                 str(tmp_path / "o.tif"), "--resolution", "1", "-q"]) == 0
    with rasterio.open(tmp_path / "o.tif") as r:
        assert r.shape == (90, 120)
    assert main(["segment", str(scene), "-p", "water", "-o", str(tmp_path / "b.gpkg"), "--resolution", "-2"]) != 0
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resolution -2.0 must be a positive number" in err[0], err
    assert not (tmp_path / "b.gpkg").exists()


def _tiny_model(folder, working=None):
    from geopix_tiles.model import GeoPixConfig, GeoPixModel

    import torch

    torch.manual_seed(0)
    config = GeoPixConfig.tiny(tile_size=64, max_new_tokens=4, concepts={"water": ["water"]})
    if working:
        config.extra["working_resolution_m"] = list(working)
    GeoPixModel(config).save_pretrained(folder)
    return str(folder)


def test_auto_reads_at_the_models_working_resolution_only_when_the_scene_is_finer(tmp_path):
    """A model that declares (finer than 0.7 m -> read at 0.9 m) gets 0.5 m scenes at 0.9 m; 'native' and
    coarser scenes keep their grid; a model that declares nothing (spectral) is never resampled."""
    from geopix_tiles.io.resample import resolve_resolution

    model = _tiny_model(tmp_path / "tiny", (0.7, 0.9))
    scene = write_scene(tmp_path / "s.tif", water_scene(180, 240, BOXES), descriptions=RGBN)
    for resolution, shape in (("auto", (100, 133)), ("native", (180, 240)), (None, (180, 240))):
        out = tmp_path / f"{resolution}.tif"
        _, stats = segment(scene, ["water"], model=model, raster_out=out, device="cpu", vectorize=False, collect=False, overlap=16,
                           resolution=resolution, return_stats=True)
        with rasterio.open(out) as r:
            assert r.shape == shape and r.bounds == pytest.approx(rasterio.open(scene).bounds)
        assert stats.extra["read_at_m"] == (0.9 if resolution == "auto" else None)
    coarse = write_scene(tmp_path / "c.tif", water_scene(64, 64, []), transform=UTM_TRANSFORM * Affine.scale(2),
                         descriptions=RGBN)  # 1 m pixels: coarser than 0.7 m
    segment(coarse, ["water"], model=model, raster_out=tmp_path / "c_out.tif", device="cpu", vectorize=False, overlap=16,
            collect=False)
    with rasterio.open(tmp_path / "c_out.tif") as r:
        assert r.shape == (64, 64)
    segment(scene, ["water"], raster_out=tmp_path / "spectral.tif", collect=False)  # spectral: no working resolution
    with rasterio.open(tmp_path / "spectral.tif") as r:
        assert r.shape == (180, 240)
    # the shipped default model declares it; a scene too small to read coarser stays native
    from geopix_tiles.segmenters.registry import load_answer_model

    default, utm = load_answer_model("default", "cpu"), rasterio.crs.CRS.from_string(UTM)
    assert resolve_resolution("auto", UTM_TRANSFORM, utm, default) == 0.9
    assert resolve_resolution("auto", UTM_TRANSFORM, utm, default, (200, 900)) is None  # < a 256 px tile anyway
    # a small scene is read no coarser than fills one tile (256 px): 400 px at 0.5 m -> 0.78 m, not 0.9 m
    assert resolve_resolution("auto", UTM_TRANSFORM, utm, default, (400, 900)) == pytest.approx(0.5 * 400 / 256)
    assert resolve_resolution("auto", UTM_TRANSFORM, utm, default, (2000, 900)) == 0.9
    assert resolve_resolution("auto", UTM_TRANSFORM * Affine.scale(10), utm, default) is None  # 5 m: native


def test_conversation_at_a_resolution_reads_the_window_on_that_grid(tmp_path):
    model_dir = _tiny_model(tmp_path / "tiny")
    scene = write_scene(tmp_path / "s.tif", water_scene(180, 240, BOXES), descriptions=RGBN)
    native = geopix_tiles.chat(scene, str(model_dir), device="cpu").ask("Please segment the water.")
    coarse = geopix_tiles.chat(scene, str(model_dir), device="cpu", resolution=1.0).ask("Please segment the water.")
    auto = geopix_tiles.chat(scene, _tiny_model(tmp_path / "w", (0.7, 0.9)), device="cpu").ask("Where is the water?")
    assert auto.arrays.shape == (1, 100, 133) and auto.transform.a == pytest.approx(240 * 0.5 / 133)
    assert native.arrays.shape == (1, 180, 240) and coarse.arrays.shape == (1, 90, 120)
    assert coarse.transform == UTM_TRANSFORM * Affine.scale(2) and coarse.bounds == native.bounds
    # areas in m² follow the grid: each mask pixel is 1 m² now
    assert coarse.masks["area_m2"].sum() == pytest.approx(coarse.arrays.sum() * 1.0)
    with pytest.raises(InputError, match="must be a positive number"):
        geopix_tiles.chat(scene, str(model_dir), device="cpu", resolution=0)


def test_xarray_accessor_averages_blocks_to_the_working_resolution(tmp_path):
    """``da.geopix.segment`` at ``auto``: k x k block means (here 0.5 m -> 1 m, k = round(0.9 / 0.5)), lazily;
    equal to segmenting the hand-averaged array natively (where it has data)."""
    import rioxarray

    model = _tiny_model(tmp_path / "tiny", (0.7, 0.9))
    data = water_scene(180, 240, BOXES)
    data[:, :, 200:] = 0  # nodata on the east
    scene = write_scene(tmp_path / "s.tif", data, descriptions=RGBN, nodata=0)
    da = rioxarray.open_rasterio(scene, chunks={"x": 128, "y": 128})
    probs = da.geopix.segment(["water"], model=model, device="cpu", overlap=16)
    assert probs.shape == (1, 90, 120) and probs.rio.transform() == UTM_TRANSFORM * Affine.scale(2)
    assert probs.rio.crs == rasterio.crs.CRS.from_string(UTM)
    by_hand = rioxarray.open_rasterio(_coarse_copy(scene, tmp_path / "coarse.tif"))
    by_hand = by_hand.rio.write_nodata(0)
    want = by_hand.geopix.segment(["water"], model=model, device="cpu", overlap=16, resolution="native")
    got = probs.values
    assert np.allclose(got[:, :, :100], want.values[:, :, :100], atol=1e-5)
    native = da.geopix.segment(["water"], model=model, device="cpu", overlap=16, resolution="native")
    assert native.shape == (1, 180, 240)
    with pytest.raises(InputError, match="finer than the array"):
        da.geopix.segment(["water"], model=model, device="cpu", overlap=16, resolution=0.25)


def test_describe_crops_cover_a_tile_at_the_working_resolution(tmp_path):
    """A small polygon on a 0.5 m scene: natively its crop is one model tile of scene pixels; at a 0.9 m
    working resolution it covers 1.8 tiles of ground (decimated to the tile), so the model sees the
    neighbourhood at the scale it learned."""
    import geopandas as gpd
    from shapely.geometry import box

    from geopix_tiles.answers.crops import iter_crops
    from geopix_tiles.answers.pixels import open_pixels
    from geopix_tiles.answers.regions import describe_regions

    scene = write_scene(tmp_path / "s.tif", water_scene(300, 400, BOXES), descriptions=RGBN)
    x0, y0 = UTM_TRANSFORM @ (180, 150)
    regions = gpd.GeoDataFrame({"name": ["small"]}, geometry=[box(x0, y0 - 5, x0 + 5, y0)], crs=UTM)
    with open_pixels(scene) as pixels:
        (native,) = iter_crops(regions, pixels, 64)
        (coarse,) = iter_crops(regions, pixels, 64, min_side=115)
    assert native.image.shape == coarse.image.shape == (3, 64, 64)
    assert native.transform.a == pytest.approx(0.5) and coarse.transform.a == pytest.approx(0.5 * 115 / 64)
    assert coarse.mask.sum() < native.mask.sum()  # the same 5 m polygon in fewer, larger pixels
    model = _tiny_model(tmp_path / "tiny", (0.7, 0.9))
    auto = describe_regions(regions, scene, model, device="cpu")
    same = describe_regions(regions, scene, model, device="cpu", resolution=0.9)
    assert auto["category"][0] == same["category"][0] and auto["confidence"][0] == pytest.approx(same["confidence"][0])
    with pytest.raises(InputError, match="must be a positive number"):
        describe_regions(regions, scene, model, device="cpu", resolution=-1)
