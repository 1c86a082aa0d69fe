"""Region description and ask: windows, crops, batching, CRS round trips, CLI, bad input.

The model is a tiny random GeoPix saved with save_pretrained: its text is gibberish, but
shapes, georeferencing, attributes, batching and one-row-out-per-row-in are all checked.
"""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rioxarray
import torch
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import Point, box

import geopix_tiles  # noqa: F401 - registers the accessors
from geopix_tiles.answers import crops, regions
from geopix_tiles.answers.pixels import open_pixels
from geopix_tiles.segmenters.registry import load_answer_model
from geopix_tiles.interfaces.cli import main
from geopix_tiles.errors import InputError

from conftest import RGBN, UTM, water_scene, write_scene

H, W = 300, 400  # 0.5 m pixels from (500000, 4000000): x 500000..500200, y 3999850..4000000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from geopix_tiles.model import GeoPixConfig, GeoPixModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny_model")
    # small tiles and short answers keep the suite fast; the plumbing is the same at any size
    # a concept list lets questions name "water"; the random heads answer with random (but real) masks
    GeoPixModel(GeoPixConfig.tiny(tile_size=128, max_new_tokens=6, concepts={"water": ["water"]})).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("scene")
    return write_scene(d / "scene.tif", water_scene(H, W, [(20, 120, 40, 200)]), descriptions=RGBN)


def utm_regions() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"name": ["pond", "field", "all"], "code": [7, 8, 9]},
        geometry=[box(500020, 3999940, 500100, 3999990), box(500120, 3999870, 500180, 3999930),
                  box(500001, 3999851, 500199, 3999999)],
        crs=UTM)


# --------------------------------------------------------------------------- windows and crops
def test_context_window_is_square_padded_at_least_a_tile_and_inside():
    cw = crops.context_window
    # small polygon in the middle: one tile, centred (a rasterio Window: col_off, row_off, width, height)
    assert cw((500, 500, 510, 520), 1000, 1000, 256) == Window(505 - 128, 510 - 128, 256, 256)
    assert cw((100, 100, 110, 120), 1000, 1000, 256) == Window(0, 0, 256, 256)  # shifted inward
    # big polygon: padded by half its extent on each side
    big = cw((100, 100, 500, 300), 1000, 1000, 256, context=0.5)
    assert big.height == big.width == 800 and (big.row_off, big.col_off) == (0, 0)  # shifted inward at the edge
    # scene smaller than the window: clipped to the scene (100 rows, 80 columns)
    assert cw((5, 5, 20, 20), 100, 80, 256) == Window(0, 0, 80, 100)
    # no overlap
    assert cw((-50, -50, -10, -10), 100, 100, 256) is None


def test_crop_pixels_and_mask_match_the_scene(scene):
    """No resampling when the window is exactly one tile: the crop is the scene scaled scene-wide."""
    gdf = gpd.GeoDataFrame(geometry=[box(500050, 3999930, 500060, 3999940)], crs=UTM)  # rows 120..140, cols 100..120
    with open_pixels(scene) as px:
        (crop,) = list(crops.iter_crops(gdf, px, tile=256))
        low, high = px.scene.low, px.scene.high
    win = crops.context_window((100, 120, 120, 140), H, W, 256)
    with rasterio.open(scene) as src:
        raw = src.read([1, 2, 3], window=win).astype(np.float32)
        assert crop.transform == src.window_transform(win)  # one tile, no resampling: the window's own transform
    expected = np.clip((raw - low[:, None, None]) / (high - low)[:, None, None], 0, 1)
    np.testing.assert_allclose(crop.image, expected, atol=1e-6)
    ys, xs = np.nonzero(crop.mask)
    assert crop.mask.sum() == 20 * 20
    assert (ys.min() + win.row_off, xs.min() + win.col_off) == (120, 100)
    assert crop.transform == Affine(0.5, 0, 500000 + 0.5 * win.col_off, 0, -0.5, 4000000 - 0.5 * win.row_off)


def test_large_polygon_crop_is_decimated_to_the_tile(scene):
    gdf = gpd.GeoDataFrame(geometry=[box(500001, 3999851, 500199, 3999999)], crs=UTM)
    with open_pixels(scene) as px:
        (crop,) = list(crops.iter_crops(gdf, px, tile=64))
    assert crop.image.shape == (3, 64, 64) and crop.mask.shape == (64, 64)
    assert crop.transform.a == pytest.approx(0.5 * W / 64)  # the whole width (clipped) in 64 pixels
    assert crop.mask.mean() > 0.95  # the polygon covers the scene but for a 1 m margin


# --------------------------------------------------------------------------- describe
def test_describe_one_row_per_polygon_attributes_and_crs_preserved(scene, model_dir):
    gdf = utm_regions().to_crs(4326)
    out = gdf.geopix.describe(scene, model=str(model_dir), batch_size=2)
    assert len(out) == len(gdf) and list(out.index) == list(gdf.index)
    assert out.crs.to_epsg() == 4326
    assert list(out["name"]) == ["pond", "field", "all"] and list(out["code"]) == [7, 8, 9]
    assert out.geometry.geom_equals_exact(gdf.geometry, 1e-12).all()
    assert {"category", "confidence", "description"} <= set(out.columns)
    model = load_answer_model(str(model_dir), "cpu")
    assert set(out["category"]) <= set(model.class_names())  # a class of the model, never free text
    assert ((out["confidence"] > 0) & (out["confidence"] <= 1)).all()
    # one sentence each, with the polygon's own area (pond 80 x 50 m = 4,000 m²)
    assert all(d[0].isupper() and d.endswith(".") and ";" not in d for d in out["description"])
    assert "about 4,000 m²" in out["description"][0]
    assert "category" not in gdf.columns  # the input is not modified


def test_describe_batches_polygons(scene, model_dir, monkeypatch):
    model = load_answer_model(str(model_dir), "cpu")
    calls = []
    original = model.classify_regions

    def spy(images, masks, *a, **k):
        calls.append((tuple(images.shape), tuple(masks.shape)))
        return original(images, masks, *a, **k)

    monkeypatch.setattr(model, "classify_regions", spy)
    regions.describe_regions(utm_regions(), scene, model, batch_size=2)
    assert calls == [((2, 3, 128, 128), (2, 1, 128, 128)), ((1, 3, 128, 128), (1, 1, 128, 128))]


def test_describe_dataarray_accessor(scene, model_dir):
    """The accessor's answers are the file's answers (cli_regions promises they match), row for row."""
    da = rioxarray.open_rasterio(scene, chunks={"x": 128, "y": 96})  # dask-backed, chunks across the regions
    out = da.geopix.describe(utm_regions(), model=str(model_dir), batch_size=4)
    from_file = regions.describe_regions(utm_regions(), scene, model=str(model_dir), batch_size=4)
    assert len(out) == 3 and out.crs == utm_regions().crs
    assert list(out["category"]) == list(from_file["category"])
    np.testing.assert_allclose(out["confidence"].to_numpy(), from_file["confidence"].to_numpy(), atol=1e-4)
    assert list(out["description"]) == list(from_file["description"])


def test_describe_outside_polygons(scene, model_dir):
    far = gpd.GeoDataFrame({"name": ["far"]}, geometry=[box(600000, 3000000, 600100, 3000100)], crs=UTM)
    with pytest.raises(InputError, match="none of the 1 region"):
        regions.describe_regions(far, scene, str(model_dir))
    mixed = gpd.GeoDataFrame(
        {"name": ["in", "far", "point"]},
        geometry=[box(500020, 3999940, 500100, 3999990), box(600000, 3000000, 600100, 3000100), Point(500150, 3999900)],
        crs=UTM)
    with pytest.warns(UserWarning, match="1 of 3"):
        out = regions.describe_regions(mixed, scene, str(model_dir))
    assert out["category"].isna().tolist() == [False, True, False]


def test_describe_bad_input(scene, model_dir):
    with pytest.raises(InputError, match="no CRS"):
        regions.describe_regions(gpd.GeoDataFrame(geometry=[box(0, 0, 1, 1)]), scene, str(model_dir))
    with pytest.raises(InputError, match="empty"):
        regions.describe_regions(utm_regions().iloc[:0], scene, str(model_dir))
    with pytest.raises(InputError, match="spectral model only segments"):
        regions.describe_regions(utm_regions(), scene, "spectral")
    with pytest.raises(InputError, match="batch size"):
        regions.describe_regions(utm_regions(), scene, str(model_dir), batch_size=0)
    with pytest.raises(InputError, match="GeoDataFrame"):
        utm_regions().drop(columns="geometry").geopix.describe(scene, model=str(model_dir))


# --------------------------------------------------------------------------- ask / chat
def _water_reply(scene, model_dir, window):
    chat = geopix_tiles.chat(scene, str(model_dir), window=window, device="cpu")
    return chat, chat.ask("Please segment the water.")


def test_chat_masks_are_the_models_masks_georeferenced_through_the_window(scene, model_dir, tmp_path):
    """A window read at native resolution: reply masks = segment() on the same pixels, polygons on the grid."""
    from rasterio.features import rasterize
    from rasterio.windows import Window

    chat, reply = _water_reply(scene, model_dir, Window(100, 100, 128, 96))
    with rasterio.open(scene) as src:
        assert reply.transform == src.transform * Affine.translation(100, 100)
    assert reply.arrays.shape == (1, 96, 128) and reply.prompts == ["water"]
    # the mask is segment's mask on the same window: the same scene tile grid and blending
    from geopix_tiles.api import segment

    raster = tmp_path / "water.tif"
    segment(scene, ["water"], model=str(model_dir), raster_out=raster, threshold=0.5, device="cpu", vectorize=False,
            overlap=32,  # the conversation uses min(64, tile // 4)
            collect=False)
    with rasterio.open(raster) as src:
        want = src.read(1, window=Window(100, 100, 128, 96)) == 1
    agree = (reply.arrays[0] == want).mean()
    assert want.any() and agree >= 0.995, agree  # float64 vs float32 blending at the 0.5 boundary
    want = reply.arrays[0]
    # the polygons rasterize back to the mask on the reply's transform, in the scene CRS
    (geom,) = reply.masks.geometry
    back = rasterize([(geom, 1)], out_shape=(96, 128), transform=reply.transform).astype(bool)
    assert np.array_equal(back, reply.arrays[0]) and reply.masks.crs == UTM
    assert int(reply.masks["pixels"][0]) == int(want.sum())
    assert reply.masks["area_m2"][0] == pytest.approx(want.sum() * 0.25)  # 0.5 m pixels
    assert reply.bounds == pytest.approx((500050, 3999902, 500114, 3999950))


def test_chat_bbox_and_window_agree_and_history_is_kept(scene, model_dir):
    from rasterio.windows import Window

    _, by_bbox = _water_reply(scene, model_dir, (500050, 3999902, 500114, 3999950))
    chat, by_window = _water_reply(scene, model_dir, Window(100, 100, 128, 96))
    assert np.array_equal(by_bbox.arrays, by_window.arrays) and by_bbox.transform == by_window.transform
    second = chat.ask("Where is the water?")
    assert len(chat.history) == 2 and chat.history[0] == (by_window.question, by_window.text)
    assert np.array_equal(second.arrays, by_window.arrays)  # the same phrase on the same view: same mask


def test_chat_large_window_is_tiled_like_segment(scene, model_dir):
    """A window wider than a tile: blended tiles, and no tile seams (equal to one big tile where no overlap)."""
    chat = geopix_tiles.chat(scene, str(model_dir), device="cpu")  # 300 x 400 px, tile 128
    reply = chat.ask("Please segment the water.")
    assert reply.arrays.shape == (1, H, W)
    assert reply.bounds == pytest.approx((500000, 3999850, 500200, 4000000))
    # a window downsampled to max_size: the transform carries the scale
    small = geopix_tiles.chat(scene, str(model_dir), device="cpu", max_size=100).ask("Please segment the water.")
    assert small.arrays.shape == (1, 75, 100) and small.transform.a == pytest.approx(2.0)


def test_ask_dataarray_accessor_and_bad_windows(scene, model_dir):
    from geopix_tiles.answers.conversation import ask_scene, parse_bbox

    da = rioxarray.open_rasterio(scene)
    answer = da.geopix.ask("what is here?", window=(500000, 3999850, 500200, 4000000), model=str(model_dir))
    assert answer.text.endswith(".") and answer.masks.crs == UTM
    assert answer.bounds == pytest.approx((500000, 3999850, 500200, 4000000))
    chat = da.geopix.chat(window=(500050, 3999902, 500114, 3999950), model=str(model_dir))
    file_chat, _ = _water_reply(scene, model_dir, (500050, 3999902, 500114, 3999950))
    assert np.array_equal(chat.ask("Please segment the water.").arrays, file_chat.replies[0].arrays)
    with pytest.raises(InputError, match="does not overlap"):
        ask_scene(scene, "q", str(model_dir), bbox=(0, 0, 10, 10))
    with pytest.raises(InputError, match="four"):
        parse_bbox("1,2,3")
    with pytest.raises(InputError, match="empty"):
        parse_bbox("5,2,3,4")
    with pytest.raises(InputError, match="question is empty"):
        ask_scene(scene, "  ", str(model_dir))


# --------------------------------------------------------------------------- CLI
def test_cli_describe_happy_path(scene, model_dir, tmp_path, capfd):
    src = tmp_path / "regions.gpkg"
    utm_regions().to_crs(4326).to_file(src, layer="fields")
    out = tmp_path / "described.gpkg"
    rc = main(["describe", str(scene), str(src), "--out", str(out), "--layer", "fields", "--model", str(model_dir),
               "--batch-size", "2"])
    assert rc == 0, capfd.readouterr().err
    assert "described 3 of 3" in capfd.readouterr().out
    back = gpd.read_file(out)
    assert len(back) == 3 and back.crs.to_epsg() == 4326
    assert list(back["name"]) == ["pond", "field", "all"] and list(back["code"]) == [7, 8, 9]
    assert back["category"].notna().all() and back["description"].notna().all()
    assert not list(tmp_path.glob(".*partial*"))


def _err(capfd) -> str:
    err = capfd.readouterr().err
    assert err.startswith("geopix-tiles: error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


def test_cli_describe_bad_input(scene, model_dir, tmp_path, capfd):
    src = tmp_path / "regions.gpkg"
    utm_regions().to_file(src, layer="fields")
    out = tmp_path / "o.gpkg"
    base = ["describe", str(scene), str(src), "--out", str(out), "--model", str(model_dir)]
    assert main(base + ["--layer", "nope"]) == 2
    err = _err(capfd)
    assert "no layer 'nope'" in err and "fields" in err
    empty = tmp_path / "empty.gpkg"
    utm_regions().iloc[:0].to_file(empty, layer="empty")
    assert main(["describe", str(scene), str(empty), "--out", str(out), "--model", str(model_dir)]) == 2
    assert "empty" in _err(capfd)
    far = tmp_path / "far.gpkg"
    gpd.GeoDataFrame(geometry=[box(0, 0, 10, 10)], crs=UTM).to_file(far)
    assert main(["describe", str(scene), str(far), "--out", str(out), "--model", str(model_dir)]) == 2
    assert "overlaps the scene" in _err(capfd)
    assert main(["describe", str(scene), str(tmp_path / "missing.gpkg"), "--out", str(out)]) == 2
    assert "do not exist" in _err(capfd)
    assert main(base[:-2] + ["--model", str(tmp_path / "no_such_checkpoint")]) == 2
    assert "does not exist" in _err(capfd)
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
    out.write_text("keep me")
    assert main(base) == 3
    assert "already exists" in _err(capfd)
    assert out.read_text() == "keep me"


def test_cli_ask_bbox_writes_georeferenced_masks(scene, model_dir, tmp_path, capfd):
    out = tmp_path / "masks.gpkg"
    rc = main(["ask", str(scene), "Please segment the water.", "--bbox", "500010,3999880,500110,3999990", "--out",
               str(out), "--model", str(model_dir)])
    assert rc == 0, capfd.readouterr().err
    printed = capfd.readouterr().out
    assert "mask(s) from 1 reply ->" in printed
    back = gpd.read_file(out)
    assert back.crs == UTM
    assert list(back.columns) == ["turn", "mask", "prompt", "question", "answer", "pixels", "area_m2", "count",
                                  "geometry"]
    assert len(back) == 1 and back["prompt"][0] == "water"
    minx, miny, maxx, maxy = back.total_bounds
    assert minx >= 500010 and miny >= 3999880 and maxx <= 500110 and maxy <= 3999990
    assert back.geometry.area[0] == pytest.approx(back["area_m2"][0])  # polygons and the reported area agree
    assert main(["ask", str(scene), "q", "--bbox", "1,2,3", "--model", str(model_dir)]) == 2
    assert "four" in _err(capfd)
    assert main(["ask", str(scene), "q", "--bbox", "0,0,1,1", "--model", str(model_dir), "--out", str(tmp_path / "x.gpkg")]) == 2
    assert "does not overlap" in _err(capfd)
    assert not (tmp_path / "x.gpkg").exists()
    assert main(["ask", str(scene), "q", "--out", str(out), "--model", str(model_dir)]) == 3
    assert "already exists" in _err(capfd)


def test_cli_ask_several_questions_and_a_conversation_file(scene, model_dir, tmp_path, capfd):
    talk = tmp_path / "talk.txt"
    talk.write_text("# a short dialogue\nPlease segment the water.\n\nWhere is the water?\n", encoding="utf-8")
    out = tmp_path / "turns.gpkg"
    rc = main(["ask", str(scene), "What is here?", "--conversation", str(talk), "--window", "100,100,128,96",
               "--out", str(out), "--model", str(model_dir)])
    assert rc == 0, capfd.readouterr().err
    printed = capfd.readouterr().out
    assert "Q1: What is here?" in printed and "Q3: Where is the water?" in printed and "A3: " in printed
    back = gpd.read_file(out)
    assert sorted(set(back["turn"])) == [2, 3] and set(back["question"]) == {"Please segment the water.",
                                                                            "Where is the water?"}
    assert main(["ask", str(scene), "--model", str(model_dir)]) == 2
    assert "no question" in _err(capfd)
    assert main(["ask", str(scene), "--conversation", str(tmp_path / "none.txt"), "--model", str(model_dir)]) == 2
    assert "does not exist" in _err(capfd)
    assert main(["ask", str(scene), "q", "--window", "1,2,x,4", "--model", str(model_dir)]) == 2
    assert "four whole numbers" in _err(capfd)


def test_import_stays_light_with_accessors():
    import subprocess
    import sys

    code = ("import sys, geopix_tiles, pandas as pd; import geopix_tiles.answers.regions, geopix_tiles.interfaces.cli_regions; "
            "bad = [m for m in ('torch', 'geopandas', 'rasterio', 'matplotlib') if m in sys.modules]; "
            "assert not bad, bad; assert hasattr(pd.DataFrame, 'geopix')")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_read_regions_needs_a_layer_when_there_are_several(tmp_path):
    from geopix_tiles.interfaces.cli_regions import read_regions

    p = tmp_path / "two.gpkg"
    utm_regions().to_file(p, layer="a")
    utm_regions().to_file(p, layer="b")
    with pytest.raises(InputError, match="2 layers"):
        read_regions(p)
    assert len(read_regions(p, "b")) == 3
