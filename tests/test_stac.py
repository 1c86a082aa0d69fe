"""STAC Items as scenes: single-band COG assets on a loopback server, stacked by eo:bands common names."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

pytest.importorskip("pystac")

from geopix_tiles import segment  # noqa: E402
from geopix_tiles.interfaces.cli import main  # noqa: E402
from geopix_tiles.errors import InputError  # noqa: E402
from conftest import RGBN, UTM, UTM_TRANSFORM, water_scene, write_scene  # noqa: E402
from http_range_server import RangeServer  # noqa: E402

H, W = 200, 260
BOXES = [(20, 90, 30, 140), (120, 180, 150, 240)]
COMMON = {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08"}


def _item(item_id: str, hrefs: dict[str, str]) -> dict:
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": item_id,
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
        "bbox": [0, 0, 1, 1], "properties": {"datetime": "2026-12-01T00:00:00Z"}, "links": [],
        "assets": {COMMON[c]: {"href": h, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                               "roles": ["data"], "eo:bands": [{"name": COMMON[c], "common_name": c}]}
                   for c, h in hrefs.items()} | {"thumbnail": {"href": "thumb.png", "type": "image/png"}},
    }


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    data = water_scene(H, W, BOXES)
    for k, c in enumerate(RGBN):  # one single-band file per band, shuffled names as in Sentinel-2
        write_scene(root / f"{COMMON[c]}.tif", data[k:k + 1])
    write_scene(tmp_path / "stack.tif", data, descriptions=RGBN)
    server = RangeServer(root)
    yield server, tmp_path
    server.close()


def test_item_with_remote_single_band_assets_equals_the_stacked_file(served):
    server, tmp = served
    item = tmp / "item.json"
    # the item lists blue first: roles come from eo:bands, not from the asset order
    item.write_text(json.dumps(_item("S2X_TEST_1", {c: f"{server.url}/{COMMON[c]}.tif"
                                                    for c in ("blue", "nir", "green", "red")})))
    segment(tmp / "stack.tif", ["water", "vegetation"], raster_out=tmp / "local.tif", tile=64, overlap=16,
            vectorize=False)
    frame = segment(item, ["water", "vegetation"], out=tmp / "item.gpkg", raster_out=tmp / "item.tif", tile=64,
                    overlap=16)
    with rasterio.open(tmp / "local.tif") as a, rasterio.open(tmp / "item.tif") as b:
        assert np.array_equal(a.read(), b.read()) and a.crs == b.crs == rasterio.crs.CRS.from_string(UTM)
        assert b.transform == UTM_TRANSFORM
    assert len(frame) >= 2 and server.range_gets > 0


def test_item_collection_is_many_scenes_named_by_item_id(served, capfd):
    import geopandas as gpd

    server, tmp = served
    hrefs = {c: f"{server.url}/{COMMON[c]}.tif" for c in RGBN}
    coll = {"type": "FeatureCollection", "features": [_item("scene_a", hrefs), _item("scene_b", hrefs)]}
    (tmp / "items.json").write_text(json.dumps(coll))
    rc = main(["segment", str(tmp / "items.json"), "-p", "water", "--out", str(tmp / "out"), "--tile", "64",
               "--overlap", "16", "--merge", str(tmp / "all.gpkg"), "--quiet"])
    assert rc == 0, capfd.readouterr().err
    assert sorted(p.name for p in (tmp / "out").glob("*.gpkg")) == ["scene_a.gpkg", "scene_b.gpkg"]
    assert sorted(set(gpd.read_file(tmp / "all.gpkg")["scene"])) == ["scene_a", "scene_b"]


def test_items_without_band_names_or_on_two_grids_are_refused(served):
    server, tmp = served
    bare = _item("bare", {"red": f"{server.url}/B04.tif"})
    for a in bare["assets"].values():
        a.pop("eo:bands", None)
    (tmp / "bare.json").write_text(json.dumps(bare))
    with pytest.raises(InputError, match="no single-band assets with eo:bands common names"):
        segment(tmp / "bare.json", ["water"], out=tmp / "x.gpkg")
    write_scene(tmp / "www" / "coarse.tif", water_scene(H // 2, W // 2, [])[:1])
    mixed = _item("mixed", {"red": f"{server.url}/B04.tif", "nir": f"{server.url}/coarse.tif"})
    (tmp / "mixed.json").write_text(json.dumps(mixed))
    with pytest.raises(InputError, match="not on one grid"):
        segment(tmp / "mixed.json", ["water"], out=tmp / "x.gpkg")
    assert not (tmp / "x.gpkg").exists()
