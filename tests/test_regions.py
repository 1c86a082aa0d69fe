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
from shapely.geometry import Point, box

import geopix_tiles  # noqa: F401 - registers the accessors
from geopix_tiles import regions
from geopix_tiles.cli import main
from geopix_tiles.errors import InputError

from conftest import RGBN, UTM, water_scene, write_scene

H, W = 300, 400  # 0.5 m pixels from (500000, 4000000): x 500000..500200, y 3999850..4000000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from geopix_tiles.model import GeoPixConfig, GeoPixModel

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("tiny_model")
    # small tiles and short answers keep the suite fast; the plumbing is the same at any size
    GeoPixModel(GeoPixConfig.tiny(tile_size=128, max_new_tokens=6)).save_pretrained(d)
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
    # small polygon in the middle: one tile, centred
    assert regions.context_window((500, 500, 510, 520), 1000, 1000, 256) == (510 - 128, 505 - 128, 256, 256)
    assert regions.context_window((100, 100, 110, 120), 1000, 1000, 256) == (0, 0, 256, 256)  # shifted inward
    # big polygon: padded by half its extent on each side
    r0, c0, rows, cols = regions.context_window((100, 100, 500, 300), 1000, 1000, 256, context=0.5)
    assert rows == cols == 800 and (r0, c0) == (0, 0)  # shifted inward at the top-left edge
    # scene smaller than the window: clipped to the scene
    assert regions.context_window((5, 5, 20, 20), 100, 80, 256) == (0, 0, 100, 80)
    # no overlap
    assert regions.context_window((-50, -50, -10, -10), 100, 100, 256) is None


def test_crop_pixels_and_mask_match_the_scene(scene):
    """No resampling when the window is exactly one tile: the crop is the scene scaled scene-wide."""
    gdf = gpd.GeoDataFrame(geometry=[box(500050, 3999930, 500060, 3999940)], crs=UTM)  # rows 120..140, cols 100..120
    with regions.open_pixels(scene) as px:
        (crop,) = list(regions.iter_crops(gdf, px, tile=256))
        low, high = px.scene.low, px.scene.high
    r0, c0, rows, cols = regions.context_window((100, 120, 120, 140), H, W, 256)
    with rasterio.open(scene) as src:
        raw = src.read([1, 2, 3]).astype(np.float32)[:, r0:r0 + rows, c0:c0 + cols]
    expected = np.clip((raw - low[:, None, None]) / (high - low)[:, None, None], 0, 1)
    np.testing.assert_allclose(crop.image, expected, atol=1e-6)
    ys, xs = np.nonzero(crop.mask)
    assert crop.mask.sum() == 20 * 20
    assert (ys.min() + r0, xs.min() + c0) == (120, 100)
    assert crop.transform == Affine(0.5, 0, 500000 + 0.5 * c0, 0, -0.5, 4000000 - 0.5 * r0)


def test_large_polygon_crop_is_decimated_to_the_tile(scene):
    gdf = gpd.GeoDataFrame(geometry=[box(500001, 3999851, 500199, 3999999)], crs=UTM)
    with regions.open_pixels(scene) as px:
        (crop,) = list(regions.iter_crops(gdf, px, tile=64))
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
    assert {"category", "description"} <= set(out.columns)
    assert all(isinstance(v, str) for v in out["category"]) and all(isinstance(v, str) for v in out["description"])
    assert "category" not in gdf.columns  # the input is not modified


def test_describe_batches_polygons(scene, model_dir, monkeypatch):
    model = regions.load_region_model(str(model_dir), "cpu")
    calls = []
    original = model.describe

    def spy(images, masks, *a, **k):
        calls.append((tuple(images.shape), tuple(masks.shape)))
        return original(images, masks, *a, **k)

    monkeypatch.setattr(model, "describe", spy)
    regions.describe_regions(utm_regions(), scene, model, batch_size=2)
    assert calls == [((2, 3, 128, 128), (2, 1, 128, 128)), ((1, 3, 128, 128), (1, 1, 128, 128))]


def test_describe_dataarray_accessor(scene, model_dir):
    da = rioxarray.open_rasterio(scene)
    out = da.geopix.describe(utm_regions(), model=str(model_dir), batch_size=4)
    assert len(out) == 3 and out.crs == utm_regions().crs
    assert out["category"].notna().all()


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


# --------------------------------------------------------------------------- ask
class SquareModel:
    """Answers every question with one fixed square mask on its input grid (exact georeferencing check)."""

    config = type("C", (), {"tile_size": 64})()
    device = "cpu"

    def __init__(self):
        self.seen = None

    def chat(self, image, text):
        from geopix_tiles.model import ChatReply

        self.seen = tuple(image.shape)
        masks = torch.zeros((1,) + tuple(image.shape[1:]), dtype=torch.bool)
        masks[0, 8:16, 4:12] = True
        return ChatReply(f"a square ({text})", masks, masks.float(), [])


def test_ask_bbox_masks_are_georeferenced_through_the_crop(scene):
    fake = SquareModel()
    answer = regions.ask_scene(scene, "where?", fake, bbox="500050,3999900,500150,3999950")
    # bbox = cols 100..300, rows 100..200 (200 x 100 px) -> model grid 64 x 32, 3.125 px per cell
    assert fake.seen == (3, 32, 64)
    assert answer.bounds == pytest.approx((500050, 3999900, 500150, 3999950))
    (geom,) = answer.masks.geometry
    cell = 0.5 * 200 / 64
    assert geom.bounds == pytest.approx((500050 + 4 * cell, 3999950 - 16 * cell, 500050 + 12 * cell, 3999950 - 8 * cell))
    assert answer.masks.crs == UTM and answer.text.startswith("a square")


def test_ask_real_model_with_forced_mask(scene, model_dir):
    """The tiny model, made to emit one [SEG0]..[SEG5] group: its mask lands inside the bbox."""
    model = regions.load_region_model(str(model_dir), "cpu")
    seg, eos = model.processor.ids.seg, model.processor.ids.eos

    def force(generated, logits):
        step = generated.shape[1]
        want = seg[step] if step < len(seg) else eos
        out = torch.full_like(logits, -1e9)
        out[:, want] = 0
        return out

    class Forced:
        config, device, processor = model.config, model.device, model.processor

        def chat(self, image, text):
            reply = model.chat(image, text, logits_processor=force)
            reply.masks[:] = True  # a random head's mask can be empty; the full grid still tests the mapping
            return reply

    bbox = (500010.0, 3999880.0, 500110.0, 3999990.0)
    answer = regions.ask_scene(scene, "segment the water", Forced(), bbox=bbox)
    assert len(answer.masks) == 1
    minx, miny, maxx, maxy = answer.masks.total_bounds
    assert bbox[0] - 1e-6 <= minx and miny >= bbox[1] - 1e-6 and maxx <= bbox[2] + 1e-6 and maxy <= bbox[3] + 1e-6
    assert (minx, miny, maxx, maxy) == pytest.approx(bbox)  # the full grid covers exactly the bbox


def test_ask_dataarray_accessor_and_bad_bbox(scene, model_dir):
    da = rioxarray.open_rasterio(scene)
    answer = da.geopix.ask("what is here?", window=(500000, 3999850, 500200, 4000000), model=str(model_dir))
    assert isinstance(answer.text, str) and answer.masks.crs == UTM
    assert answer.bounds == pytest.approx((500000, 3999850, 500200, 4000000))
    with pytest.raises(InputError, match="does not overlap"):
        regions.ask_scene(scene, "q", str(model_dir), bbox=(0, 0, 10, 10))
    with pytest.raises(InputError, match="four"):
        regions.parse_bbox("1,2,3")
    with pytest.raises(InputError, match="empty"):
        regions.parse_bbox("5,2,3,4")
    with pytest.raises(InputError, match="question is empty"):
        regions.ask_scene(scene, "  ", str(model_dir))


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
    rc = main(["ask", str(scene), "where is the water?", "--bbox", "500010,3999880,500110,3999990", "--out", str(out),
               "--model", str(model_dir)])
    assert rc == 0, capfd.readouterr().err
    printed = capfd.readouterr().out
    assert "mask(s) ->" in printed
    back = gpd.read_file(out)
    assert back.crs == UTM and list(back.columns) == ["mask", "question", "answer", "geometry"]
    if len(back):
        minx, miny, maxx, maxy = back.total_bounds
        assert minx >= 500010 and miny >= 3999880 and maxx <= 500110 and maxy <= 3999990
    assert main(["ask", str(scene), "q", "--bbox", "1,2,3", "--model", str(model_dir)]) == 2
    assert "four" in _err(capfd)
    assert main(["ask", str(scene), "q", "--bbox", "0,0,1,1", "--model", str(model_dir), "--out", str(tmp_path / "x.gpkg")]) == 2
    assert "does not overlap" in _err(capfd)
    assert not (tmp_path / "x.gpkg").exists()
    assert main(["ask", str(scene), "q", "--out", str(out), "--model", str(model_dir)]) == 3
    assert "already exists" in _err(capfd)


def test_import_stays_light_with_accessors():
    import subprocess
    import sys

    code = ("import sys, geopix_tiles, pandas as pd; import geopix_tiles.regions, geopix_tiles.cli_regions; "
            "bad = [m for m in ('torch', 'geopandas', 'rasterio', 'matplotlib') if m in sys.modules]; "
            "assert not bad, bad; assert hasattr(pd.DataFrame, 'geopix')")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_read_regions_needs_a_layer_when_there_are_several(tmp_path):
    from geopix_tiles.cli_regions import read_regions

    p = tmp_path / "two.gpkg"
    utm_regions().to_file(p, layer="a")
    utm_regions().to_file(p, layer="b")
    with pytest.raises(InputError, match="2 layers"):
        read_regions(p)
    assert len(read_regions(p, "b")) == 3
