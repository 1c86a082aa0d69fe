"""Training data: COCO RLE, adapters on realistic files, JSONL interchange, instruction samples."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin
from rasterio.windows import Window

from conftest import write_scene
from geopix_tiles.errors import InputError
from geopix_tiles.training import rle
from geopix_tiles.training.adapters import (BoxCSVSource, ColourMaskSource, MaskRasterSource, VectorSource,
                                            XBDSource, build_source)
from geopix_tiles.training.instruct import REGION, SEG, TASKS, make_samples, templates
from geopix_tiles.training.records import ImageRecord, Instance, read_jsonl
from geopix_tiles.training.windows import export_jsonl, grid_windows, records_from_scene, sample_records

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
UTM = "EPSG:32633"
T = from_origin(500000.0, 4000000.0, 0.5, 0.5)


# --------------------------------------------------------------------------- RLE
def test_rle_hand_computed_example():
    # column-major: col0 = [0,1,1], col1 = [1,0,0] -> 0 1 1 1 0 0 -> counts [1, 3, 2]
    m = np.array([[0, 1], [1, 0], [1, 0]], np.uint8)
    assert rle.counts_from_mask(m) == [1, 3, 2]
    assert rle.encode(m) == {"size": [3, 2], "counts": "132"}
    # mask starting with foreground gets an empty zero run
    assert rle.counts_from_mask(np.ones((2, 2), np.uint8)) == [0, 4]


def test_rle_string_codec_by_hand():
    # 100 = 0b11_00100: low group 4 with the continuation bit (36 + 48 = 'T'), then 3 -> '3'
    assert rle.counts_to_string([100]) == "T3"
    # from index 3 on the delta to counts[i-2] is stored: 1 - 10 = -9 -> 23 + 48 = 'G'
    assert rle.counts_to_string([0, 10, 2, 1]) == "0:2G"
    assert rle.counts_from_string("0:2G") == [0, 10, 2, 1]
    assert rle.counts_from_string("T3") == [100]


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 48), (300, 17)])
def test_rle_round_trip_random(shape):
    rng = np.random.default_rng(sum(shape))
    for density in (0.0, 0.05, 0.5, 1.0):
        m = (rng.random(shape) < density).astype(np.uint8)
        enc = rle.encode(m)
        assert json.loads(json.dumps(enc)) == enc
        back = rle.decode(enc)
        assert back.dtype == np.uint8 and np.array_equal(back, m)
        assert rle.area(enc) == int(m.sum())
        assert rle.decode({"size": list(shape), "counts": rle.counts_from_mask(m)}).tolist() == m.tolist()


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (64, 48), (300, 17), (256, 256)])
def test_rle_is_byte_compatible_with_pycocotools(shape):
    """Our codec against the reference C implementation, both ways (strings, areas, boxes)."""
    coco = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(sum(shape) + 1)
    for density in (0.0, 0.02, 0.5, 1.0):
        m = (rng.random(shape) < density).astype(np.uint8)
        if shape == (256, 256) and density == 0.5:  # blobs, long runs: counts well over 2**10
            m = np.zeros(shape, np.uint8)
            m[30:200, 10:90] = 1
            m[100:250, 150:240] = 1
        ref = coco.encode(np.asfortranarray(m))
        ours = rle.encode(m)
        assert ours["counts"] == ref["counts"].decode("ascii") and ours["size"] == list(ref["size"])
        assert np.array_equal(coco.decode({"size": ours["size"], "counts": ours["counts"].encode()}), m)
        assert np.array_equal(rle.decode({"size": list(ref["size"]), "counts": ref["counts"].decode()}), m)
        assert rle.area(ours) == int(coco.area(ref))
        if m.any():  # ours is [x0, y0, x1, y1] (exclusive ends), COCO's [x, y, w, h]
            x, y, w, h = (float(v) for v in coco.toBbox(ref))
            assert rle.bbox(m) == [x, y, x + w, y + h]


def test_rle_rejects_inconsistent_counts():
    with pytest.raises(ValueError):
        rle.decode({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(ValueError):
        rle.counts_from_string("T")  # continuation bit set, nothing follows


def test_bbox_is_exclusive_pixel_box():
    m = np.zeros((10, 10), np.uint8)
    m[2:5, 3:9] = 1
    assert rle.bbox(m) == [3.0, 2.0, 9.0, 5.0]


# --------------------------------------------------------------------------- realistic files
def _write(path: Path, data: np.ndarray, crs=UTM, transform=T, nodata=None) -> Path:
    return write_scene(path, data, crs=crs, transform=transform, nodata=nodata)


def _scene(tmp_path: Path, h: int = 96, w: int = 128) -> Path:
    rng = np.random.default_rng(0)
    img = rng.integers(20, 200, (3, h, w)).astype(np.uint8)
    return _write(tmp_path / "scene.tif", img)


def test_vector_source_reprojects_repairs_and_rasterises(tmp_path):
    import geopandas as gpd
    from shapely.geometry import Polygon, box

    raster = _scene(tmp_path)
    # a building at pixel rows 10..30, cols 20..50 in UTM, written in EPSG:4326 (CRS mismatch)
    x0, y0 = T @ (20, 10)
    x1, y1 = T @ (50, 30)
    bowtie = Polygon([(T @ (80, 60)), (T @ (110, 90)), (T @ (110, 60)), (T @ (80, 90))])  # self-intersecting
    gdf = gpd.GeoDataFrame({"cls": ["building", "tank"]}, geometry=[box(x0, y1, x1, y0), bowtie], crs=UTM)
    gdf.to_crs("EPSG:4326").to_file(tmp_path / "labels.gpkg", driver="GPKG")
    src = VectorSource(str(raster), str(tmp_path / "labels.gpkg"), category_field="cls")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (scene,) = list(src.scenes())
    assert scene.report["reprojected"] is True
    assert scene.report["repaired"] == 1 and scene.report["dropped"] == 0
    assert any("repaired" in str(w.message) for w in caught)
    insts = {i.category: i for i in scene.instances(Window(0, 0, 128, 96))}
    assert set(insts) == {"building", "tank"}
    b = insts["building"].mask()
    assert abs(int(b.sum()) - 20 * 30) <= 60  # reprojection round trip moves edges by < 1 px
    assert insts["building"].bbox == pytest.approx([20, 10, 50, 30], abs=1)
    tank = insts["tank"].mask()
    assert tank[75, 82] == 1 and tank[75, 95] == 0  # two triangles of the repaired bow-tie, empty in between
    # windowed: the building is cut to the window
    cut = {i.category: i for i in scene.instances(Window(0, 0, 35, 20))}
    assert cut["building"].mask().shape == (20, 35) and cut["building"].bbox == pytest.approx([20, 10, 35, 20], abs=1)


def test_vector_source_empty_label_set_and_missing_field(tmp_path):
    import geopandas as gpd

    raster = _scene(tmp_path)
    empty = gpd.GeoDataFrame({"cls": []}, geometry=[], crs="EPSG:4326")
    empty.to_file(tmp_path / "empty.geojson", driver="GeoJSON")
    (scene,) = list(VectorSource(str(raster), str(tmp_path / "empty.geojson"), category="building").scenes())
    assert scene.instances(Window(0, 0, 64, 64)) == []
    recs = sample_records([VectorSource(str(raster), str(tmp_path / "empty.geojson"), category="building")], 64)
    assert len(recs) == 4 and all(r.instances == [] for r in recs)
    with pytest.raises(InputError):
        VectorSource(str(raster), str(tmp_path / "empty.geojson"))  # no category given


def test_vector_source_shapefile(tmp_path):
    import geopandas as gpd
    from shapely.geometry import box

    raster = _scene(tmp_path)
    x0, y0 = T @ (5, 5)
    x1, y1 = T @ (15, 25)
    gpd.GeoDataFrame({"kind": ["pool"]}, geometry=[box(x0, y1, x1, y0)], crs=UTM).to_file(tmp_path / "p.shp")
    (scene,) = list(VectorSource(str(raster), str(tmp_path / "p.shp"), category_field="kind").scenes())
    (inst,) = scene.instances(Window(0, 0, 128, 96))
    assert inst.category == "pool" and inst.area == 10 * 20


def test_mask_raster_source_components_nodata_and_warp(tmp_path):
    raster = _scene(tmp_path)
    m = np.zeros((1, 96, 128), np.uint8)
    m[0, 10:20, 10:20] = 255
    m[0, 50:70, 60:100] = 255
    m[0, 0:5, :] = 9  # nodata strip
    _write(tmp_path / "mask.tif", m, nodata=9)
    (scene,) = list(MaskRasterSource(str(raster), str(tmp_path / "mask.tif"), {255: "building"}).scenes())
    insts = scene.instances(Window(0, 0, 128, 96))
    assert sorted(i.area for i in insts) == [100, 800]
    # the same mask on a coarser grid (1 m instead of 0.5 m) is warped onto the image grid
    coarse = m[:, ::2, ::2]
    _write(tmp_path / "coarse.tif", coarse, transform=from_origin(500000.0, 4000000.0, 1.0, 1.0), nodata=9)
    (scene2,) = list(MaskRasterSource(str(raster), str(tmp_path / "coarse.tif"), {255: "building"}).scenes())
    assert scene2.report["warped"] is True
    assert sorted(i.area for i in scene2.instances(Window(0, 0, 128, 96))) == [100, 800]


def test_colour_mask_chips(tmp_path):
    from PIL import Image

    (tmp_path / "t1" / "images").mkdir(parents=True)
    (tmp_path / "t1" / "masks").mkdir(parents=True)
    img = np.full((40, 60, 3), 120, np.uint8)
    Image.fromarray(img).save(tmp_path / "t1" / "images" / "a.jpg")
    mask = np.zeros((40, 60, 3), np.uint8)  # black = unmapped -> ignored
    mask[5:15, 5:15] = (60, 16, 152)
    mask[25:35, 40:55] = (60, 16, 152)
    mask[:, 20:25] = (110, 193, 228)
    Image.fromarray(mask).save(tmp_path / "t1" / "masks" / "a.png")
    src = ColourMaskSource(str(tmp_path / "t*" / "images" / "*.jpg"), "{parent}/masks",
                           {"building": [60, 16, 152], "road": [110, 193, 228]}, min_pixels=10)
    (scene,) = list(src.scenes())
    cats = sorted((i.category, i.area) for i in scene.instances(Window(0, 0, 60, 40)))
    assert cats == [("building", 100), ("building", 150), ("road", 200)]


def test_xbd_and_box_sources(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "x_pre_disaster.png")
    label = {"metadata": {"img_name": "x_pre_disaster.png"}, "features": {"lng_lat": [], "xy": [
        {"properties": {"feature_type": "building", "subtype": "major-damage"},
         "wkt": "POLYGON ((10 10, 30 10, 30 20, 10 20, 10 10))"},
        {"properties": {"feature_type": "building"}, "wkt": "POLYGON ((40 40, 41 40, 41 40, 40 40))"}]}}
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "x_pre_disaster.json").write_text(json.dumps(label))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (scene,) = list(XBDSource(str(tmp_path), str(tmp_path / "labels")).scenes())
    assert scene.report["dropped"] == 1  # the degenerate polygon is reported, not rasterised
    (inst,) = scene.instances(Window(0, 0, 64, 64))
    assert inst.area == 200 and inst.extra["damage"] == "major-damage"
    (tmp_path / "boxes.csv").write_text("image_path,xmin,ymin,xmax,ymax,label\nx_pre_disaster.png,2,3,12,8,Tree\n")
    (bscene,) = list(BoxCSVSource(str(tmp_path / "boxes.csv")).scenes())
    (box,) = bscene.instances(Window(0, 0, 64, 64))
    assert box.category == "tree" and box.bbox == [2, 3, 12, 8] and box.area == 50


def test_export_jsonl_round_trip_is_bit_exact(tmp_path):
    rng = np.random.default_rng(3)
    img = rng.integers(100, 4000, (3, 80, 80)).astype(np.uint16)
    img[:, :10, :10] = 0
    raster = _write(tmp_path / "s2.tif", img, nodata=0)
    m = np.zeros((1, 80, 80), np.uint8)
    m[0, 30:50, 30:60] = 1
    _write(tmp_path / "cloud.tif", m)
    src = MaskRasterSource(str(raster), str(tmp_path / "cloud.tif"), {1: "cloud"}, stuff=["cloud"])
    recs = sample_records([src], 48, mode="grid", overlap=8)
    out = export_jsonl(recs, tmp_path / "out" / "data.jsonl")
    back = read_jsonl(out)
    assert len(back) == len(recs) == 4
    for a, b in zip(recs, back):
        assert np.array_equal(a.image, b.load())
        assert [i.mask_rle for i in a.instances] == [i.mask_rle for i in b.instances]
        assert Path(b.image_path).is_file()
    first = json.loads((tmp_path / "out" / "data.jsonl").read_text().splitlines()[0])
    assert not Path(first["image_path"]).is_absolute()  # relative to the JSONL file
    assert set(first) >= {"image_path", "instances", "norm"}
    # windows follow the engine's global grid (last one shifted inward)
    (scene,) = list(src.scenes())
    assert grid_windows(scene, 48, 8) == [Window(0, 0, 48, 48), Window(32, 0, 48, 48), Window(0, 32, 48, 48), Window(32, 32, 48, 48)]


def test_geopix_release_style_jsonl_loads(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((20, 30, 3), 255, np.uint8)).save(tmp_path / "img.jpg")
    m = np.zeros((20, 30), np.uint8)
    m[2:6, 3:9] = 1
    line = {"image_path": "img.jpg", "instances": [
        {"category": "storage tank", "description": "", "bbox": [3, 2, 9, 6], "mask": rle.encode(m)}]}
    (tmp_path / "g.jsonl").write_text(json.dumps(line) + "\n")
    (rec,) = read_jsonl(tmp_path / "g.jsonl")
    assert rec.load().shape == (3, 20, 30) and float(rec.load().max()) == pytest.approx(1.0)
    assert np.array_equal(rec.instances[0].mask(), m)
    (tmp_path / "bad.jsonl").write_text('{"instances": []}\n')
    with pytest.raises(InputError):
        read_jsonl(tmp_path / "bad.jsonl")


# --------------------------------------------------------------------------- instructions
def _record() -> ImageRecord:
    h = w = 64
    insts = []
    for (y, x, s, cat) in [(2, 2, 10, "building"), (40, 45, 12, "building"), (30, 0, 20, "water")]:
        m = np.zeros((h, w), np.uint8)
        m[y:y + s, x:x + s] = 1
        insts.append(Instance.from_mask(cat, m))
    return ImageRecord(image_path=None, instances=insts, image=np.zeros((3, h, w), np.float32))


def test_instruction_samples_cover_tasks_and_hold_out_templates():
    recs = [_record() for _ in range(6)]
    samples = make_samples(recs, seed=1, per_record=len(TASKS))
    assert {s.task for s in samples} == set(TASKS)
    for s in samples:
        s.check()
        assert s.answer.count(SEG) == len(s.target_masks)
        assert s.question.count(REGION) == len(s.region_masks)
    multi = [s for s in samples if s.task in ("category_seg", "referring_seg") and len(s.target_masks) > 1]
    assert multi, "several targets per answer"
    assert recs[0].instances[0].description.startswith("A ") and "upper left" in recs[0].instances[0].description
    for kind in ("category_seg", "referring_seg", "region_class", "caption"):
        assert not set(templates(kind, "train")) & set(templates(kind, "eval"))
    eval_samples = make_samples(recs, seed=1, per_record=3, split="eval")
    train_t = {t for k in ("category_seg", "referring_seg", "region_class", "region_caption", "caption", "dialogue",
                           "vqa_count", "vqa_presence") for t in templates(k, "train")}
    assert all(s.template not in train_t for s in eval_samples)
    # deterministic for a seed
    again = make_samples([_record() for _ in range(6)], seed=1, per_record=len(TASKS))
    assert [(s.question, s.answer) for s in again] == [(s.question, s.answer) for s in samples]



def test_negative_prompts_ask_for_annotated_absent_classes_with_empty_masks():
    """Absent classes a source labels exhaustively come back as empty targets; others never do."""
    recs = [_record() for _ in range(40)]
    for r in recs[:20]:
        r.meta["classes"] = ["building", "road", "water"]  # road: annotated everywhere, absent here
    empty_chip = ImageRecord(image_path=None, instances=[], meta={"classes": ["cloud"], "window": [0, 0, 32, 48]})
    samples = make_samples(recs + [empty_chip], tasks=["category_seg"], seed=3, per_record=3, negatives=0.5)
    negatives = [(s, c, m) for s in samples for c, m in zip(s.target_categories, s.target_masks)
                 if rle.area(m) == 0]
    assert negatives, "negative prompts are generated"
    for s, c, m in negatives:
        s.check()
        assert (c, s.record < 20 or s.record == 40) in (("road", True), ("cloud", True))
        assert (c == "cloud") == (s.record == 40)
        assert tuple(m["size"]) == ((32, 48) if c == "cloud" else (64, 64))
        assert c + "s" in s.question or c in s.question  # the prompt names the absent class
    # every present class still gets its full union mask
    for s in samples:
        for c, m in zip(s.target_categories, s.target_masks):
            if c in ("building", "water"):
                expect = sum(i.area for i in recs[s.record].instances if i.category == c)
                assert rle.area(m) == expect
    # a chip without meta["classes"] (labels of unknown extent) never gets a negative
    plain = make_samples(recs[20:], tasks=["category_seg"], seed=3, per_record=3, negatives=1.0)
    assert all(rle.area(m) > 0 for s in plain for m in s.target_masks)
    # negatives=0 keeps the samples of earlier versions exactly (same RNG draws)
    assert [(s.question, s.answer) for s in make_samples(recs, seed=1, per_record=2)] == \
        [(s.question, s.answer) for s in make_samples(recs, seed=1, per_record=2, negatives=0.0)]
    with pytest.raises(ValueError, match="negatives"):
        make_samples(recs, negatives=1.5)


def test_class_raster_sources_report_exhaustive_classes(tmp_path):
    raster = _scene(tmp_path)
    m = np.zeros((1, 96, 128), np.uint8)
    m[0, 10:20, 10:20] = 255
    _write(tmp_path / "mask.tif", m)
    (scene,) = MaskRasterSource(str(raster), str(tmp_path / "mask.tif"), {255: "building", 7: "water"}).scenes()
    assert scene.annotated_classes() == ["building", "water"]
    recs = list(records_from_scene(scene, [Window(0, 0, 64, 48), Window(60, 50, 60, 40)]))
    assert [r.meta["classes"] for r in recs] == [["building", "water"]] * 2
    assert [r.categories() for r in recs] == [["building"], []]
    assert recs[1].size == (40, 60)
    (partial,) = MaskRasterSource(str(raster), str(tmp_path / "mask.tif"), {255: "building"},
                                  exhaustive=False).scenes()
    assert partial.annotated_classes() is None
    assert "classes" not in next(records_from_scene(partial, [Window(0, 0, 64, 48)])).meta


# --------------------------------------------------------------------------- shared real data
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not available")
def test_every_labelled_shared_sample_loads_through_an_adapter(tmp_path):
    from geopix_tiles.training.catalog import shared_data_specs

    specs = shared_data_specs(SHARED)
    assert set(specs) >= {"dubai_aerial", "open_cities", "s2_cloud", "puerto_rico", "elevation", "xbd_joplin",
                          "neon_trees"}
    for name, spec in specs.items():
        src = build_source(spec)
        scene = next(iter(src.scenes()))
        wins = grid_windows(scene, 256)[:16]
        recs = list(records_from_scene(scene, wins))
        assert recs, name
        assert any(r.instances for r in recs), f"{name}: no instances in the first windows"
        for r in recs:
            assert r.image.shape[0] == 3 and 0.0 <= float(r.image.min()) and float(r.image.max()) <= 1.0
        if name == "elevation":
            assert scene.report["reprojected"] is True  # CRS84 polygons onto EPSG:26918
        out = export_jsonl(recs[:1], tmp_path / name / "d.jsonl")
        (back,) = read_jsonl(out)
        assert np.array_equal(back.load(), recs[0].image)
