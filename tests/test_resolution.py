"""``resolution``: the ground resolution a model is shown, through segment, the CLI, conversations,
describe and the accessor; every output stays on the scene's grid."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from affine import Affine

import geopix_tiles
from geopix_tiles import segment
from geopix_tiles.errors import InputError
from geopix_tiles.interfaces.cli import main
from geopix_tiles.segmenters.resampled import ResampledSegmenter, resize_tiles, resolve_resolution
from conftest import RGBN, UTM, UTM_TRANSFORM, water_scene, write_scene

ROOT = Path(__file__).resolve().parents[1]

# 0.5 m pixels; every box edge on an even pixel
BOXES = [(10, 30, 10, 50), (40, 140, 100, 130), (150, 170, 20, 220)]


class SizeRecorder:
    """Band 2 (green: high on water) > 0.5, scene-scaled, per prompt; remembers the tile sizes it was shown."""

    band_roles = None
    tile_size = 64
    scaling = "unit"

    def __init__(self):
        self.sizes = set()

    def check_prompts(self, prompts):
        pass

    def predict(self, tiles, prompts):
        self.sizes.add(tuple(tiles.shape[-2:]))
        return np.repeat((tiles[:, 1:2] > 0.5).astype(np.float32), len(prompts), axis=1)


def _truth(h, w):
    t = np.zeros((h, w), bool)
    for r0, r1, c0, c1 in BOXES:
        t[r0:r1, c0:c1] = True
    return t


def test_the_model_sees_coarser_tiles_and_the_outputs_stay_on_the_scene_grid(tmp_path):
    scene = write_scene(tmp_path / "s.tif", water_scene(180, 240, BOXES), descriptions=RGBN)
    model = SizeRecorder()
    gdf = segment(scene, ["water"], model=model, out=tmp_path / "o.gpkg", raster_out=tmp_path / "o.tif",
                  resolution=1.0, overlap=16)
    # tiles of 128 scene px (64 model px at 2x the pixel size) shrunk to the model's 64
    assert model.sizes == {(64, 64)}
    with rasterio.open(tmp_path / "o.tif") as r, rasterio.open(scene) as src:
        assert r.shape == (180, 240) and r.crs == src.crs and r.transform == src.transform
        got = r.read(1) >= 128
    truth = _truth(180, 240)
    assert (got & truth).sum() / (got | truth).sum() > 0.97  # boxes on even pixels survive 2x and back
    on_disk = pyogrio.read_dataframe(tmp_path / "o.gpkg")
    assert len(gdf) == len(on_disk) == len(BOXES)
    assert sorted(on_disk["area"]) == pytest.approx(sorted((r1 - r0) * (c1 - c0) * 0.25 for r0, r1, c0, c1 in BOXES),
                                                    rel=0.05)
    native = SizeRecorder()
    segment(scene, ["water"], model=native, raster_out=tmp_path / "n.tif", overlap=16, collect=False)
    assert native.sizes == {(64, 64)}  # native: the model's own tile of scene pixels


def test_resampled_segmenter_means_in_bilinear_out():
    inner = SizeRecorder()
    seg = ResampledSegmenter(inner, 2.0)
    assert seg.tile_size == 128 and seg.band_roles is None and seg.scaling == "unit" and "factor=2" in repr(seg)
    tiles = np.zeros((1, 4, 128, 128), np.float32)
    tiles[:, :, :, 64:] = 1.0
    small = resize_tiles(tiles, (64, 64))
    assert small.shape == (1, 4, 64, 64) and np.allclose(small[..., :31], 0) and np.allclose(small[..., 33:], 1)
    probs = seg.predict(tiles, ["a", "b"])
    assert probs.shape == (1, 2, 128, 128) and probs.min() >= 0 and probs.max() <= 1
    assert (probs[0, 0, :, :62] == 0).all() and (probs[0, 0, :, 66:] == 1).all()


def test_resolution_keeps_nodata_and_a_finer_resolution_works(tmp_path):
    data = water_scene(120, 160, [(20, 60, 20, 80)])
    data[:, :, 120:] = 0  # a nodata strip on the east
    scene = write_scene(tmp_path / "s.tif", data, descriptions=RGBN, nodata=0)
    segment(scene, ["water"], raster_out=tmp_path / "o.tif", threshold=0.5, resolution=1.0, collect=False)
    with rasterio.open(tmp_path / "o.tif") as r:
        band = r.read(1)
        assert r.shape == (120, 160) and r.nodata == 255
        assert (band[:, 120:] == 255).all() and (band[:, :120] != 255).all()
        assert band[22:58, 22:78].all() and not band[70:, :110].any()
    model = SizeRecorder()
    segment(scene, ["water"], model=model, raster_out=tmp_path / "fine.tif", resolution=0.25, overlap=8, collect=False)
    assert model.sizes == {(64, 64)}  # tiles of 32 scene px grown to the model's 64
    with rasterio.open(tmp_path / "fine.tif") as r:
        assert r.shape == (120, 160)


def test_bad_resolutions_are_refused_before_anything_is_written(tmp_path):
    scene = write_scene(tmp_path / "s.tif", water_scene(64, 64, []), descriptions=RGBN)
    for bad in (0, -1.0, float("nan"), "one", True):
        with pytest.raises(InputError, match="must be a positive number of metres"):
            segment(scene, ["water"], out=tmp_path / "o.gpkg", resolution=bad)
    plain = write_scene(tmp_path / "plain.tif", water_scene(64, 64, []), crs=None, descriptions=RGBN)
    with pytest.raises(InputError, match="needs a scene with a CRS"):
        segment(plain, ["water"], out=tmp_path / "o.gpkg", allow_no_georef=True, resolution=1.0)
    assert not any(tmp_path.glob("o.*"))


def test_cli_resolution(tmp_path, capfd):
    scene = write_scene(tmp_path / "s.tif", water_scene(180, 240, BOXES), descriptions=RGBN)
    assert main(["segment", str(scene), "-p", "water", "-o", str(tmp_path / "o.gpkg"), "--raster",
                 str(tmp_path / "o.tif"), "--resolution", "1", "-q"]) == 0
    out = capfd.readouterr().out
    assert "the model saw the scene at 1 m per pixel" in out
    with rasterio.open(tmp_path / "o.tif") as r:
        assert r.shape == (180, 240)
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


def test_auto_uses_the_models_working_resolution_only_when_the_scene_is_finer(tmp_path):
    """A model that declares (finer than 0.7 m -> shown at 0.9 m) is shown a 0.5 m scene at 0.9 m; 'native',
    coarser scenes and a model that declares nothing (spectral) are not resampled; outputs on the scene grid."""
    model = _tiny_model(tmp_path / "tiny", (0.7, 0.9))
    scene = write_scene(tmp_path / "s.tif", water_scene(180, 240, BOXES), descriptions=RGBN)
    rasters = {}
    for resolution in ("auto", "native", None):
        out = tmp_path / f"{resolution}.tif"
        _, stats = segment(scene, ["water"], model=model, raster_out=out, device="cpu", vectorize=False, collect=False,
                           resolution=resolution, return_stats=True, overlap=16)
        with rasterio.open(out) as r:
            assert r.shape == (180, 240) and r.transform == UTM_TRANSFORM
            rasters[resolution] = r.read(1)
        assert stats.extra["read_at_m"] == (0.9 if resolution == "auto" else None)
    assert np.array_equal(rasters["native"], rasters[None]) and not np.array_equal(rasters["auto"], rasters["native"])
    utm = rasterio.crs.CRS.from_string(UTM)
    assert resolve_resolution("auto", UTM_TRANSFORM * Affine.scale(2), utm, model_obj := _load(model)) is None  # 1 m
    assert resolve_resolution("auto", UTM_TRANSFORM, utm, None) is None  # a model that declares nothing
    # the shipped default model declares it; a small scene is never shown less than one 256 px tile
    from geopix_tiles.segmenters.registry import load_answer_model

    default = load_answer_model("default", "cpu")
    assert resolve_resolution("auto", UTM_TRANSFORM, utm, default, (2000, 900)) == 0.9
    assert resolve_resolution("auto", UTM_TRANSFORM, utm, default, (400, 900)) == pytest.approx(0.5 * 400 / 256)
    assert resolve_resolution("auto", UTM_TRANSFORM, utm, default, (200, 900)) is None
    assert resolve_resolution("auto", UTM_TRANSFORM * Affine.scale(10), utm, default) is None  # 5 m: native
    assert model_obj is not None


def _load(folder):
    from geopix_tiles.segmenters.registry import load_answer_model

    return load_answer_model(folder, "cpu")


def test_conversation_and_accessor_show_the_model_what_segment_shows_it(tmp_path):
    """At auto, a conversation's segment request and the accessor give segment's probabilities on the scene's
    grid (the same tiles, shrunk the same way)."""
    import rioxarray

    model = _tiny_model(tmp_path / "w", (0.7, 0.9))
    scene = write_scene(tmp_path / "s.tif", water_scene(180, 240, BOXES), descriptions=RGBN)
    segment(scene, ["water"], model=model, raster_out=tmp_path / "e.tif", device="cpu", vectorize=False,
            collect=False)
    with rasterio.open(tmp_path / "e.tif") as r:
        engine = r.read(1)
    reply = geopix_tiles.chat(scene, model, device="cpu").ask("Please segment the water.")
    assert reply.arrays.shape == (1, 180, 240) and reply.transform == UTM_TRANSFORM
    iou = (reply.arrays[0] & (engine >= 128)).sum() / max(1, (reply.arrays[0] | (engine >= 128)).sum())
    assert (engine >= 128).any() and iou >= 0.95, iou
    da = rioxarray.open_rasterio(scene, chunks={"x": 128, "y": 128})
    probs = da.geopix.segment(["water"], model=model, device="cpu").values[0]
    assert probs.shape == (180, 240)
    assert np.abs((probs * 255 + 0.5).astype(np.uint8).astype(int) - engine.astype(int)).max() <= 1
    with pytest.raises(InputError, match="must be a positive number"):
        geopix_tiles.chat(scene, model, device="cpu", resolution=0)


def test_describe_crops_cover_a_tile_at_the_working_resolution(tmp_path):
    """A small polygon on a 0.5 m scene: natively its crop is one model tile of scene pixels; at a 0.9 m
    working resolution it covers 1.8 tiles of ground (shrunk to the tile)."""
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


def test_only_prompts_of_the_declared_classes_are_shown_coarser():
    """With classes, a prompt meaning one of them sees shrunk tiles and every other prompt the same tiles at
    the scene's resolution, in one predict call, channels in prompt order."""

    class Bank:
        def prompt_classes(self, prompts):
            return ["building" if "roof" in p or "build" in p else "vegetation" for p in prompts]

    inner = SizeRecorder()
    inner.model = Bank()
    seg = ResampledSegmenter(inner, 2.0, ("building",))
    assert seg.shown(["trees", "rooftops", "buildings"]) == [False, True, True]
    tiles = np.zeros((2, 4, 128, 128), np.float32)
    tiles[:, 1, 40:90, 40:90] = 1.0
    probs = seg.predict(tiles, ["trees", "rooftops"])
    assert inner.sizes == {(64, 64), (128, 128)} and probs.shape == (2, 2, 128, 128)
    assert np.array_equal(probs[:, 0], (tiles[:, 1] > 0.5).astype(np.float32))  # native: exact
    assert (probs[:, 1, 44:86, 44:86] == 1).all() and (probs[:, 1, :36] == 0).all()  # via 64 px and back
    inner.sizes.clear()
    seg.predict(tiles, ["trees"])
    assert inner.sizes == {(128, 128)}
    from geopix_tiles.segmenters.registry import load_answer_model

    assert load_answer_model("default", "cpu").prompt_classes(["rooftops", "streets", "trees", "wind turbines"]) == \
        ["building", "road", "vegetation", None]


def _coarse_naip(tmp_path, factor: int):
    """The shipped NAIP sample (5 m, the held-out 2020 date) averaged down ``factor`` times, and NDWI > 0.2 on it:
    the scenes of ``benchmarks/coarse_resolution.py``, made by its own function."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "coarse_resolution.py"
    spec = importlib.util.spec_from_file_location("coarse_resolution", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    scene, water, _, _ = bench.averaged(tmp_path, factor)
    return scene, water


def test_auto_shows_coarse_scenes_finer_and_finds_their_water(tmp_path):
    """Averaged down to 15 and 30 m (Sentinel-2 / Landsat pixel sizes), the held-out NAIP date loses its water
    when the default model sees it natively; ``auto`` shows it finer (at 5 m, at most 2x finer; every prompt,
    no tile check) and finds more of it."""
    from geopix_tiles.segmenters.registry import load_answer_model

    default = load_answer_model("default", "cpu")
    utm = rasterio.crs.CRS.from_string(UTM)
    for metres, expected in ((5.5, None), (7, 5.0), (10, 5.0), (12, 6.0), (30, 15.0), (60, 30.0), (61, None),
                             (300, None)):
        assert resolve_resolution("auto", Affine(metres, 0, 0, 0, -metres, 0), utm, default, (500, 500)) == expected
    for factor, floor, gain in ((3, 0.45, 0.03), (6, 0.25, 0.2)):
        scene, ndwi = _coarse_naip(tmp_path, factor)
        water = {}
        for mode, kw in (("native", {"resolution": "native"}), ("auto", {}), ("auto, no check", {"presence_check": False})):
            out = tmp_path / f"{factor}_{mode}.tif"
            _, stats = segment(scene, ["water", "vegetation"], model="default", raster_out=out, device="cpu",
                               vectorize=False, collect=False, return_stats=True, **kw)
            with rasterio.open(out) as r, rasterio.open(scene) as s:
                assert r.shape == s.shape and r.transform == s.transform and r.crs == s.crs
                water[mode] = r.read(1) >= 128
                half = abs(s.transform.a) / 2
            assert stats.extra["read_at_m"] == (None if mode == "native" else pytest.approx(half, rel=2e-3))
        iou = {m: (w & ndwi).sum() / max(1, (w | ndwi).sum()) for m, w in water.items()}
        assert iou["auto"] >= floor and iou["auto"] >= iou["native"] + gain, (factor, iou)
        assert np.array_equal(water["auto"], water["auto, no check"])  # the tile check is off on such views


PUCALLPA = Path(__file__).resolve().parents[2] / "shared" / "data" / "landsat" / "2020.tif"


@pytest.mark.skipif(not PUCALLPA.exists(), reason="needs ../shared/data/landsat (Landsat over Pucallpa)")
def test_auto_does_not_upsample_rain_forest_into_water(tmp_path):
    """Why ``auto`` shows a coarse scene at most 2x finer: Landsat over Pucallpa (rain forest, the Ucayali),
    declared 30 m, shown 6x finer (5 m, the rule before the cap) turned a fifth or more of the forest into
    water; 2x finer keeps the forest vegetation (NDVI weak label) and paints next to no water."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("landsat_pucallpa", ROOT / "benchmarks" / "landsat_pucallpa.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rgb_path, water, veg = bench.rgb_scene("2020", tmp_path)
    with rasterio.open(rgb_path) as src:
        rgb, profile = src.read(), src.profile
    profile.update(crs=rasterio.crs.CRS.from_string(UTM), transform=Affine(30, 0, 500000, 0, -30, 9000000))
    scene = tmp_path / "pucallpa_as_30m.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(rgb)
    painted = {}
    for mode in ("auto", 5.0):
        out = tmp_path / f"{mode}.tif"
        _, stats = segment(scene, ["water", "vegetation"], model="default", raster_out=out, device="cpu",
                           vectorize=False, collect=False, return_stats=True, resolution=mode)
        assert stats.extra["read_at_m"] == (15.0 if mode == "auto" else 5.0)
        with rasterio.open(out) as r:
            painted[mode] = r.read() >= 128
    auto, fine = painted["auto"], painted[5.0]
    veg_iou = (auto[1] & veg).sum() / (auto[1] | veg).sum()
    assert auto[0].mean() < 0.08 and veg_iou >= 0.85, (auto[0].mean(), veg_iou)
    assert fine[0].mean() > 0.2 and (fine[0] & ~water).mean() > 0.2  # the failure the cap avoids: forest as water


def test_a_conversation_on_a_coarse_scene_sees_what_segment_sees(tmp_path):
    """On the NAIP sample averaged to 15 m a segment request returns segment's water (shown at 5 m, no tile
    check) and the presence reply, which no longer vetoes it there, says yes."""
    scene, ndwi = _coarse_naip(tmp_path, 3)
    segment(scene, ["water"], model="default", raster_out=tmp_path / "w.tif", device="cpu", vectorize=False,
            collect=False)
    with rasterio.open(tmp_path / "w.tif") as r:
        engine = r.read(1) >= 128
    chat = geopix_tiles.chat(scene, "default", device="cpu")
    reply = chat.ask("Please segment the water.")
    mask = reply.arrays[0]
    assert mask.shape == engine.shape and reply.transform == rasterio.open(scene).transform
    iou = (mask & engine).sum() / max(1, (mask | engine).sum())
    assert engine.mean() > 0.05 and iou >= 0.9, iou
    assert chat.ask("Is there any water?").text.startswith("Yes")


def test_auto_on_a_fine_scene_runs_prompts_it_does_not_resample_exactly_as_native(tmp_path):
    """The NAIP sample's pixels declared as 0.3 m (finer than the default model's 0.7 m): asked only for
    vegetation and water, ``auto`` has nothing to show coarser, so the run is the native one bit for bit (same
    tiles, same overlap; it once handed the model tiles 3x its size and changed 7 % of a forest's pixels);
    asked for buildings too, the buildings are seen coarser (at 0.9 m, or as coarse as still fills one model
    tile: 0.375 m on this 320 px scene)."""
    with rasterio.open(ROOT / "geopix_tiles" / "data" / "naip_sample.tif") as src:
        data = src.read(window=rasterio.windows.Window(0, 0, 384, 320))
        profile = src.profile | {"width": 384, "height": 320, "transform": Affine(0.3, 0, 500000, 0, -0.3, 4000000)}
    scene = tmp_path / "fine.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(data)
    rasters = {}
    for res in ("native", "auto"):
        out = tmp_path / f"{res}.tif"
        _, stats = segment(scene, ["vegetation", "water"], model="default", raster_out=out, vectorize=False,
                           collect=None, resolution=res, return_stats=True)
        assert stats.extra["read_at_m"] is None
        with rasterio.open(out) as r:
            rasters[res] = r.read()
    assert np.array_equal(rasters["native"], rasters["auto"]) and (rasters["auto"][0] >= 128).mean() > 0.05
    _, stats = segment(scene, ["vegetation", "buildings"], model="default", raster_out=tmp_path / "b.tif",
                       vectorize=False, collect=None, return_stats=True)
    assert stats.extra["read_at_m"] == pytest.approx(0.3 * 320 / 256) and stats.extra["read_at_prompts"] == ["buildings"]


def test_the_summary_says_how_free_text_prompts_are_read(tmp_path, capfd):
    """"cars" is not a phrase the default model knows: it paints the nearest class (roads), and the run says so;
    "wind turbines" is nearest to what it was taught to leave empty; a bank phrase ("lakes") and the spectral
    model's index names get no line."""
    from geopix_tiles.segmenters.registry import load_segmenter
    from geopix_tiles.segmenters.resampled import prompt_readings

    seg = load_segmenter("default", device="cpu")
    lines = prompt_readings(seg, ["cars", "wind turbines", "lakes", "water"])
    assert len(lines) == 2 and "'cars'" in lines[0] and "read as road" in lines[0], lines
    assert "'wind turbines'" in lines[1] and "little or nothing" in lines[1], lines
    assert prompt_readings(load_segmenter("spectral"), ["water", "ndvi"]) == []
    naip = ROOT / "geopix_tiles" / "data" / "naip_sample.tif"
    assert main(["segment", str(naip), "-p", "cars", "-p", "lakes", "-o", str(tmp_path / "c.gpkg"), "--model",
                 "default", "-q"]) == 0
    out = capfd.readouterr().out
    assert "'cars' is not a phrase the model knows: it is read as road" in out and "'lakes' is" not in out
