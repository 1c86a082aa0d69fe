"""The shipped default GeoPix checkpoint (geopix_tiles/data/default_model/, see MODEL_CARD.md).

Offline only. The quality floor runs on held-out validation chips shipped in
tests/data/default_val/ (never seen in training: training/splits/default_v2.json holds out whole
scenes - Dubai tile_7, the NAIP 2020 date - and blocks of single scenes); checks that re-cut
validation data from ../shared/data are skipped when that folder is absent. Open vocabulary:
held-out paraphrases (never in the training vocabulary) must reach 0.9 of the class name's IoU,
and concepts no source contains must paint next to nothing, also on unseen UC Merced forest.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "geopix_tiles" / "data" / "default_model"
VAL_CHIPS = REPO / "tests" / "data" / "default_val" / "val.jsonl"
SHARED = REPO.parent / "shared" / "data"
UC = REPO / "tests" / "data" / "uc_merced"
PARAPHRASE_RATIO = 0.9  # issue 11: a paraphrase reaches at least 0.9 of the class name's IoU
PAN_VEGETATION_IOU = 0.3  # grey input loses the colour cue; placeholder until measured
PROMPTS = ["buildings", "roads", "water", "vegetation", "land", "clouds"]
CLASSES = ["building", "road", "water", "vegetation", "land", "cloud"]
#: floors well below the measured values in training_record.json / MODEL_CARD.md (a broken or
#: untrained checkpoint scores near 0 on these; the shipped one is far above)
FLOOR_SHIPPED_CHIPS_CIOU = 0.60  # measured 0.66 (default_v2, 4 chips of split v2: Dubai tile_7, Open Cities, S2, NAIP 2020)
FLOOR_SHARED_CIOU = 0.60  # measured 0.85 (default_v2 on Dubai tile_7 image_part_005)
FLOOR_OPEN_CITIES_BUILDING_IOU = 0.55  # measured 0.80 (default_v2) on the held-out Open Cities block


@pytest.fixture(scope="module")
def model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from geopix_tiles.model import GeoPixModel

    return GeoPixModel.from_pretrained("default")


def test_checkpoint_files_and_size():
    files = {p.name for p in SHIPPED.iterdir()}
    assert {"config.json", "model.safetensors", "training_record.json"} <= files
    assert "tokenizer.json" in files or "tokenizer_config.json" in files
    total = sum(p.stat().st_size for p in SHIPPED.iterdir() if p.is_file())
    assert total <= 30 * 1024 * 1024, f"default checkpoint is {total / 2**20:.1f} MB (limit 30 MB)"
    rec = json.loads((SHIPPED / "training_record.json").read_text())
    assert rec["data_manifest"] and rec["validation_metrics"]["per_class_iou"]
    # the record reproduces the model: its seed and config file are the recipe's, the config's start
    # checkpoint is the v2 base the recipe extracts from git
    cfg_file = REPO / rec["config_file"]
    assert cfg_file.is_file() and rec["name"] == f"geopix-tiles {cfg_file.stem}"
    assert rec["seed"] == rec["config"]["seed"] == int(re.search(r"^seed: (\d+)", cfg_file.read_text(), re.M).group(1))
    assert "xbd_joplin" not in {f["path"].split("/")[0] for f in rec["data_manifest"]}


def test_loads_offline_in_a_fresh_process(tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    code = ("from geopix_tiles.model import GeoPixModel; m = GeoPixModel.from_pretrained('default'); "
            "print(m.config.tile_size)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("256")


def test_answers_every_required_prompt(model):
    """Every class prompt answers, and on each real chip the prompt of its largest labelled class is
    the most confident one over that class's pixels (the words choose the mask).

    Chips whose largest class is a sliver (< 5 % of the chip) are not a test of that: the Open Cities
    chip's only label is 1.7 % of a corrugated roof's edge in its corner, the rest of the roof unlabelled
    (looked at, 2026-12-07); default_v18 put "buildings" first there by 0.47 to 0.37, default_v22 "bare
    land" by 0.47 to 0.30."""
    from geopix_tiles.training.records import read_jsonl

    records = [r for r in read_jsonl(VAL_CHIPS) if r.instances]
    images = torch.stack([torch.from_numpy(np.ascontiguousarray(r.load()[:3], dtype=np.float32)) for r in records])
    logits = model.segment(images, PROMPTS)
    assert logits.shape == (len(records), len(PROMPTS), 256, 256) and torch.isfinite(logits).all()
    checked = 0
    for r, lg in zip(records, logits):
        areas: dict[str, np.ndarray] = {}
        for inst in r.instances:
            m = inst.mask().astype(bool)
            areas[inst.category] = areas.get(inst.category, np.zeros_like(m)) | m
        largest = max(areas, key=lambda c: areas[c].sum())
        if areas[largest].mean() < 0.05:
            continue
        checked += 1
        inside = torch.from_numpy(areas[largest])
        conf = torch.sigmoid(lg)[:, inside].mean(1)
        assert int(conf.argmax()) == CLASSES.index(largest), (r.image_path, largest, conf.tolist())
    assert checked >= len(records) - 2, checked


def test_region_classification_returns_a_known_class(model):
    """The Aquila-plus path on a held-out chip: each given region mask -> one of the class names."""
    from geopix_tiles.training import rle
    from geopix_tiles.training.records import read_jsonl

    r = read_jsonl(VAL_CHIPS)[0]
    img = torch.from_numpy(np.ascontiguousarray(r.load()[:3], dtype=np.float32))[None]
    masks = torch.from_numpy(np.stack([rle.decode(i.mask_rle) for i in r.instances[:3]]).astype(bool))[None]
    texts = model.describe(img, masks)
    assert len(texts) == 1 and len(texts[0]) == masks.shape[1]
    for t in texts[0]:
        assert t.strip().rstrip(".").lower() in CLASSES, t


def _ciou(model, records) -> tuple[float, dict]:
    from geopix_tiles.training import rle
    from geopix_tiles.training.instruct import plural
    from geopix_tiles.training.metrics import SegmentationMeter

    meter = SegmentationMeter()
    for r in records:
        img = torch.from_numpy(np.ascontiguousarray(r.load()[:3], dtype=np.float32))[None]
        cats = sorted({i.category for i in r.instances})
        logits = model.segment(img, [plural(c) for c in cats])[0]
        for k, c in enumerate(cats):
            target = np.zeros(logits.shape[-2:], bool)
            for inst in r.instances:
                if inst.category == c:
                    target |= rle.decode(inst.mask_rle).astype(bool)
            meter.add((logits[k] > 0).numpy(), target, c)
    return meter.ciou, meter.per_class_iou()


def test_quality_floor_on_shipped_validation_chips(model):
    from geopix_tiles.training.records import read_jsonl

    records = read_jsonl(VAL_CHIPS)
    assert records, "tests/data/default_val/val.jsonl is empty"
    ciou, per_class = _ciou(model, records)
    assert ciou >= FLOOR_SHIPPED_CHIPS_CIOU, (ciou, per_class)


@pytest.mark.skipif(not (SHARED / "dubai_aerial").is_dir(), reason="../shared/data is absent")
def test_quality_floor_on_a_held_out_shared_image(model):
    """Re-cut one validation image of the fixed split from ../shared/data and score it."""
    from geopix_tiles.training.adapters import build_source
    from geopix_tiles.training.catalog import DUBAI_COLOURS
    from geopix_tiles.training.windows import grid_windows, records_from_scene

    split = json.loads((REPO / "training" / "splits" / "default_v2.json").read_text())
    image = "dubai_aerial/tile_7/images/image_part_005.jpg"
    assert image in split["val_images"]
    src = build_source({"type": "colour_mask", "images": str(SHARED / image), "masks": "{parent}/masks",
                        "colours": DUBAI_COLOURS, "ignore": ["unlabeled"], "stuff": ["land"], "name": "dubai_aerial"})
    scene = next(iter(src.scenes()))
    records = list(records_from_scene(scene, grid_windows(scene, 256)[:4]))
    ciou, per_class = _ciou(model, records)
    assert ciou >= FLOOR_SHARED_CIOU, (ciou, per_class)


def test_demo_is_right_water_and_vegetation_agree_with_ndwi_and_ndvi(tmp_path):
    """The README's main job: on the NAIP sample, water ~ NDWI > 0.2 and vegetation ~ NDVI > 0.3."""
    import geopandas as gpd
    import rasterio

    from geopix_tiles.interfaces.cli import DEFAULT_SCENE, main

    rc = main(["demo", "--out-dir", str(tmp_path), "--model", "default", "--device", "cpu"])
    assert rc in (0, None)
    gpkg, tif = tmp_path / "naip_sample.gpkg", tmp_path / "naip_sample.tif"
    assert gpkg.is_file() and tif.is_file() and (tmp_path / "naip_sample.png").is_file()
    with rasterio.open(DEFAULT_SCENE) as src:
        r, g, _, n = src.read().astype(np.float32)
        valid = src.read_masks(1) > 0
        crs, transform = src.crs, src.transform
    with rasterio.open(tif) as ds:
        assert ds.crs == crs and ds.transform == transform
        bands = {d: i + 1 for i, d in enumerate(ds.descriptions)}
        water = ds.read(bands["water"]) >= 128
        veg = ds.read(bands["vegetation"]) >= 128
    with np.errstate(divide="ignore", invalid="ignore"):
        ndwi = np.where(g + n > 0, (g - n) / (g + n), 0) > 0.2
        ndvi = np.where(n + r > 0, (n - r) / (n + r), 0) > 0.3

    def iou(a, b):
        a, b = a & valid, b & valid
        return float((a & b).sum()) / max(float((a | b).sum()), 1.0)

    assert iou(water, ndwi) >= 0.7, iou(water, ndwi)
    assert iou(veg, ndvi) >= 0.6, iou(veg, ndvi)
    gdf = gpd.read_file(gpkg)
    assert {"water", "vegetation"} <= set(gdf["prompt"])
    assert gdf.crs == crs


def test_cli_answers_free_text_with_two_model_threads_in_a_fresh_process(tmp_path):
    """Prompts outside the text bank load MiniLM; with two model threads they used to load it in
    both at once and the run died ("cannot import name 'AutoModel'"). A fresh process, so no
    earlier test has MiniLM loaded already."""
    import subprocess
    import sys

    import geopandas as gpd
    import rasterio

    from geopix_tiles.interfaces.cli import DEFAULT_SCENE

    out = tmp_path / "o.gpkg"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GEOPIX_MODEL_THREADS": "2", "OMP_NUM_THREADS": "2"}
    run = subprocess.run([sys.executable, "-m", "geopix_tiles", "segment", str(DEFAULT_SCENE), "-o", str(out),
                          "--model", "default", "--quiet", "-p", "the small houses near the road", "-p", "wind turbines",
                          "-p", "water bodies"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    gdf = gpd.read_file(out)
    with rasterio.open(DEFAULT_SCENE) as src:
        assert gdf.crs == src.crs
        total = src.width * src.height
    by = gdf.groupby("prompt")["pixels"].sum()
    assert by.get("water bodies", 0) > 0.05 * total  # the sample's lakes (as "water": ~20 % of it)
    assert by.get("wind turbines", 0) < 0.01 * total  # never taught: next to nothing


def test_held_out_paraphrases_reach_the_class_names_iou(model):
    """Words never used in training ("houses", "rooftops", "greenery", ...) land where their meaning is."""
    from geopix_tiles.training.prompt_eval import evaluate_prompts
    from geopix_tiles.training.records import read_jsonl

    res = evaluate_prompts(model, read_jsonl(VAL_CHIPS))
    checked = 0
    for q, r in res["paraphrases"].items():
        if r["canonical_iou"] is None or r["canonical_iou"] < 0.2:
            continue  # a class these few chips hardly score: the ratio would be noise
        checked += 1
        # free text ("the small houses near the road") included: it is read by its subject
        # (model/prompt_subject.py); measured 1.015 on the validation split (0.81 before)
        assert r["iou"] >= PARAPHRASE_RATIO * r["canonical_iou"], (q, r)
    assert checked >= 4, res["paraphrases"]


def test_unknown_concepts_return_next_to_nothing(model):
    """Prompts for things no training source contains paint < 1 % of the pixels, on held-out and unseen chips."""
    from PIL import Image

    from geopix_tiles.training.records import read_jsonl
    from geopix_tiles.training.vocabulary import HELD_OUT_UNRELATED

    chips = [torch.from_numpy(np.asarray(Image.open(UC / f).convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
             for f in ("forest61.jpg", "forest01.jpg")]
    chips += [torch.from_numpy(np.ascontiguousarray(r.load()[:3], dtype=np.float32)) for r in read_jsonl(VAL_CHIPS)]
    images = torch.stack(chips)
    painted = (model.segment(images, list(HELD_OUT_UNRELATED)) > 0).float().mean((0, 2, 3))
    assert float(painted.max()) < 0.01, dict(zip(HELD_OUT_UNRELATED, painted.tolist()))
    forest = (model.segment(images[:2], ["wind turbines", "vegetation", "forest"]) > 0).float().mean((0, 2, 3))
    assert float(forest[0]) < 0.01 and float(forest[1]) > 0.5 and float(forest[2]) > 0.5, forest.tolist()


@pytest.mark.skipif(not (SHARED / "open_cities").is_dir(), reason="../shared/data is absent")
def test_buildings_on_the_held_out_open_cities_block(model):
    """The `buildings` prompt on the validation block of the split (never trained on)."""
    from geopix_tiles.core.tiling import TileGrid
    from geopix_tiles.training.adapters import build_source
    from geopix_tiles.training.catalog import shared_data_specs
    from geopix_tiles.training.windows import records_from_scene

    split = json.loads((REPO / "training" / "splits" / "default_v2.json").read_text())
    y0, x0, y1, x1 = split["val_blocks"]["open_cities"]["yx_box"]
    scene = next(iter(build_source(shared_data_specs(SHARED)["open_cities"]).scenes()))
    from rasterio.windows import Window

    wins = [Window(x0 + t.x, y0 + t.y, t.width, t.height) for t in TileGrid(y1 - y0, x1 - x0, int(split["tile"]), 0)]
    records = list(records_from_scene(scene, wins))
    assert len(records) >= 2
    _, per_class = _ciou(model, [r for r in records if r.instances])
    assert per_class["building"] >= FLOOR_OPEN_CITIES_BUILDING_IOU, per_class


def test_a_panchromatic_scene_runs_as_grey_rgb(tmp_path):
    """A single grey band (e.g. a 0.3 m panchromatic city scene) needs no --band-roles for the RGB model."""
    import rasterio

    import geopix_tiles
    from geopix_tiles.interfaces.cli import DEFAULT_SCENE

    with rasterio.open(DEFAULT_SCENE) as src:
        r, g, b, n = src.read().astype(np.float32)
        profile = src.profile
        veg_ndvi = (np.where(n + r > 0, (n - r) / (n + r), 0) > 0.3) & (src.read_masks(1) > 0)
    grey = (0.299 * r + 0.587 * g + 0.114 * b).round().astype(np.uint8)[None]
    profile.update(count=1)
    pan = tmp_path / "pan.tif"
    with rasterio.open(pan, "w", **profile) as dst:
        dst.write(grey)
    gdf = geopix_tiles.segment(str(pan), ["vegetation"], model="default", raster_out=str(tmp_path / "m.tif"),
                               device="cpu")
    with rasterio.open(tmp_path / "m.tif") as ds:
        assert ds.crs == profile["crs"] and ds.transform == profile["transform"]
        veg = ds.read(1) >= 128
    iou = float((veg & veg_ndvi).sum()) / max(float((veg | veg_ndvi).sum()), 1.0)
    assert iou >= PAN_VEGETATION_IOU, iou
    assert len(gdf) and set(gdf["prompt"]) == {"vegetation"}


def test_referring_phrases_keep_their_own_meaning_through_the_text_bank(model):
    """A phrase naming a place is read as trained, not as the category phrase nearest to it."""
    from geopix_tiles.model.text_encoder import prompt_encoder

    ref = "the large area of land at the center, with roads to the east"
    emb, share = model.prompt_meaning([ref, "streets"])
    raw = torch.from_numpy(prompt_encoder().encode([ref, "streets"])).float()
    assert torch.allclose(emb[0], raw[0], atol=1e-5) and float(share[0]) == 1.0
    assert float(torch.dot(emb[1], raw[1])) < 0.99  # a new category word is still grounded on the bank


def test_evaluate_on_the_shipped_chips_with_referring_prompts(model):
    """The project evaluator (category + single-instance referring prompts) on the held-out chips.

    Before referring phrases bypassed the text bank every "the building in the lower left" painted
    all buildings: cIoU 0.50 / 0.56 (seeds 0 / 1) against 0.69 / 0.67 after (default_v2, 2026-12-03);
    default_v18 0.657 / 0.658, default_v22 0.644 / 0.661 (on all 667 held-out chips 0.791 -> 0.792).
    """
    from geopix_tiles.training.evaluate import evaluate_model
    from geopix_tiles.training.records import read_jsonl

    recs = read_jsonl(VAL_CHIPS)
    for seed in (0, 1):
        r = evaluate_model(model, recs, seed=seed, samples_per_image=4, semantic=False)
        assert r["ciou"] >= 0.62, (seed, r["ciou"], r["per_class_iou"])
