"""Vector outputs by extension: GeoPackage, GeoParquet, FlatGeobuf, GeoJSON - same features, columns, CRS."""
from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest

from geopix_tiles import segment
from geopix_tiles.interfaces.cli import main
from geopix_tiles.errors import InputError
from conftest import RGBN, water_scene, write_scene

BOXES = [(10, 60, 20, 140), (70, 150, 90, 110), (120, 125, 0, 200)]


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_scene(tmp_path_factory.mktemp("vf") / "s.tif", water_scene(160, 210, BOXES), descriptions=RGBN)


def _read(path):
    return gpd.read_parquet(path) if str(path).endswith(".parquet") else gpd.read_file(path)


@pytest.mark.parametrize("ext", [".parquet", ".fgb", ".geojson"])
def test_every_format_holds_the_geopackage_features(scene, tmp_path, ext):
    ref = segment(scene, ["water", "vegetation"], out=tmp_path / "ref.gpkg", tile=64, overlap=16)
    got_frame = segment(scene, ["water", "vegetation"], out=tmp_path / f"out{ext}", tile=64, overlap=16)
    back = _read(tmp_path / f"out{ext}")
    assert len(ref) >= 3 and len(back) == len(ref) == len(got_frame)
    assert list(back.columns) == list(gpd.read_file(tmp_path / "ref.gpkg").columns)
    assert back.crs == ref.crs
    key = ["prompt", "pixels"]
    a, b = ref.sort_values(key).reset_index(drop=True), back.sort_values(key).reset_index(drop=True)
    assert list(a["prompt"]) == list(b["prompt"]) and np.array_equal(a["pixels"], b["pixels"])
    np.testing.assert_allclose(a.geometry.area, b.geometry.area, rtol=1e-9)
    np.testing.assert_allclose(a["area_m2"], b["area_m2"])
    assert not list(tmp_path.glob(".*geopix-run"))  # the temporary run folder is gone


def test_empty_result_and_bad_extension(scene, tmp_path):
    dry = write_scene(tmp_path / "dry.tif", water_scene(96, 96, []), descriptions=RGBN)
    empty = segment(dry, ["water"], out=tmp_path / "none.parquet", tile=64, overlap=16)
    assert len(empty) == 0 and len(_read(tmp_path / "none.parquet")) == 0
    with pytest.raises(InputError, match=r"must end with \.gpkg or \.parquet or \.fgb or \.geojson"):
        segment(scene, ["water"], out=tmp_path / "x.shp", tile=64, overlap=16)
    assert not (tmp_path / "x.shp").exists()


def test_merge_by_extension(scene, tmp_path, capfd):
    other = write_scene(tmp_path / "t.tif", water_scene(160, 210, BOXES[:1]), descriptions=RGBN)
    rc = main(["segment", str(scene), str(other), "-p", "water", "--out", str(tmp_path / "per"), "--tile", "64",
               "--overlap", "16", "--merge", str(tmp_path / "all.fgb"), "--quiet"])
    assert rc == 0, capfd.readouterr().err
    merged = gpd.read_file(tmp_path / "all.fgb")
    per = {n: len(gpd.read_file(tmp_path / "per" / f"{n}.gpkg")) for n in ("s", "t")}
    assert sorted(set(merged["scene"])) == ["s", "t"] and len(merged) == sum(per.values()) and min(per.values()) >= 1
    assert main(["segment", str(scene), str(other), "-p", "water", "--out", str(tmp_path / "per2"),
                 "--merge", str(tmp_path / "all.txt")]) == 2
    assert "--merge" in capfd.readouterr().err


@pytest.mark.parametrize("ext", [".gpkg", ".parquet", ".fgb", ".geojson"])
def test_frames_are_streamed_into_one_layer(tmp_path, ext):
    """Several batches (the engine's parts) end up as one layer, in order, with the CRS kept."""
    from shapely.geometry import box

    from geopix_tiles.outputs.vector_formats import write_frames

    batches = [gpd.GeoDataFrame({"prompt": [f"p{i}"] * 2, "pixels": [i, i + 1]},
                                geometry=[box(i, 0, i + 1, 1), box(i, 2, i + 1, 4)], crs="EPSG:32633")
               for i in range(3)]
    assert write_frames(iter(batches), tmp_path / f"x{ext}", "x") == 6
    back = _read(tmp_path / f"x{ext}")
    assert sorted(back["pixels"]) == [0, 1, 1, 2, 2, 3] and back.crs.to_epsg() == 32633
    assert sorted(zip(back["pixels"], back.geometry.area.round(9))) == [(0, 1), (1, 1), (1, 2), (2, 1), (2, 2), (3, 2)]
    if ext != ".fgb":  # FlatGeobuf stores features in its spatial index's order
        assert list(back["pixels"]) == [0, 1, 1, 2, 2, 3]  # in the order written
    if ext == ".parquet":  # the GeoParquet bbox of the first batch is not claimed for the file
        import json

        import pyarrow.parquet as pq

        geo = json.loads(pq.read_schema(tmp_path / "x.parquet").metadata[b"geo"])
        assert "bbox" not in geo["columns"]["geometry"]


def test_describe_writes_geoparquet(tmp_path, capfd):
    """`describe --out x.parquet` (and `ask --out`) write by extension too, atomically."""
    import torch
    from shapely.geometry import box

    from geopix_tiles.model import GeoPixConfig, GeoPixModel

    torch.manual_seed(0)
    GeoPixModel(GeoPixConfig.tiny(tile_size=64, max_new_tokens=4, concepts={"water": ["water"], "land": ["land"]})
                ).save_pretrained(tmp_path / "m")
    scene = write_scene(tmp_path / "s.tif", water_scene(96, 96, [(10, 40, 10, 40)]), descriptions=RGBN)
    regions = gpd.GeoDataFrame({"name": ["a"]}, geometry=[box(500005, 3999970, 500020, 3999990)], crs="EPSG:32633")
    regions.to_file(tmp_path / "r.gpkg")
    rc = main(["describe", str(scene), str(tmp_path / "r.gpkg"), "--out", str(tmp_path / "d.parquet"),
               "--model", str(tmp_path / "m")])
    assert rc == 0, capfd.readouterr().err
    back = gpd.read_parquet(tmp_path / "d.parquet")
    assert list(back["name"]) == ["a"] and {"category", "confidence", "description"} <= set(back.columns)
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("ext", [".gpkg", ".fgb", ".geojson"])
def test_wkb_columns_writer_gives_the_dataframe_writers_layer(scene, tmp_path, ext):
    """``segment``'s writer (stored WKB straight to pyogrio.raw) = ``write_dataframe`` of the same frame."""
    import pyogrio
    import shapely

    from geopix_tiles.outputs.vector_formats import write_columns, write_frames
    from geopix_tiles.outputs.vector_sink import FIELD_TYPES

    frame = segment(scene, ["water", "vegetation"], tile=64, overlap=16)
    assert len(frame) >= 3
    write_frames([frame], tmp_path / f"ref{ext}", "polygons")
    columns = {c: frame[c].to_numpy() for c in FIELD_TYPES}
    n = write_columns([(shapely.to_wkb(frame.geometry.values[:2]), {c: v[:2] for c, v in columns.items()}),
                       ([], {c: v[:0] for c, v in columns.items()}),
                       (shapely.to_wkb(frame.geometry.values[2:]), {c: v[2:] for c, v in columns.items()})],
                      tmp_path / f"got{ext}", "polygons", frame.crs, FIELD_TYPES)
    ref, got = pyogrio.read_dataframe(tmp_path / f"ref{ext}"), pyogrio.read_dataframe(tmp_path / f"got{ext}")
    assert n == len(frame) == len(got)
    assert got.crs == ref.crs == frame.crs and dict(got.dtypes) == dict(ref.dtypes)
    assert got.drop(columns="geometry").equals(ref.drop(columns="geometry"))
    assert shapely.equals_exact(got.geometry.values, ref.geometry.values, 0).all()
    info = pyogrio.read_info(tmp_path / f"got{ext}")
    assert info["geometry_type"] == pyogrio.read_info(tmp_path / f"ref{ext}")["geometry_type"]
    # no features: an empty layer with the same fields
    write_columns([], tmp_path / f"none{ext}", "polygons", frame.crs, FIELD_TYPES)
    empty = pyogrio.read_dataframe(tmp_path / f"none{ext}")
    assert len(empty) == 0
    if ext != ".geojson":  # an empty GeoJSON has no schema to hold fields
        assert list(empty.columns) == [*FIELD_TYPES, "geometry"]


def test_collect_none_returns_no_frame_and_still_writes(scene, tmp_path):
    frame, stats = segment(scene, ["water"], out=tmp_path / "w.gpkg", tile=64, overlap=16, collect=None,
                           return_stats=True)
    assert frame is None and stats.features >= 2
    assert len(_read(tmp_path / "w.gpkg")) == stats.features
