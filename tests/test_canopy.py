"""``cut_canopy``: what tree cover hides from above is not reported as a building or water.

Through segment, the CLI, the accessor and replies in words, on real chips; the gain on an unseen sensor
and place (xBD Joplin, scored only) when ``../shared`` is there.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geopix_tiles import segment
from geopix_tiles.errors import InputError
from geopix_tiles.interfaces.cli import main
from geopix_tiles.segmenters.canopy import CANOPY_MAX_PIXEL_M
from conftest import RGBN, water_scene, write_scene

ROOT = Path(__file__).resolve().parents[1]
# UC Merced "medium residential" (0.3 m, public domain, tests/data/uc_merced/ATTRIBUTION.md): houses under
# street trees, 256 px, so natively one model tile and no blending between the bands
HOUSES = ROOT / "tests" / "data" / "uc_merced" / "mediumresidential63.jpg"
NAIP = ROOT / "geopix_tiles" / "data" / "naip_sample.tif"  # 5 m
S2 = ROOT / "tests" / "data" / "default_val" / "val_02_s2_cloud_256_0.tif"  # 10 m
PROMPTS = ["buildings", "water", "vegetation", "roads"]


def _raster(tmp_path: Path, name: str, scene: Path, prompts: list[str], **kw) -> np.ndarray:
    out = tmp_path / f"{name}.tif"
    segment(scene, prompts, model="default", raster_out=out, device="cpu", vectorize=False, collect=False,
            allow_no_georef=True, **kw)
    with rasterio.open(out) as r:
        return r.read().astype(np.float64)


def test_buildings_and_water_leave_what_the_model_sees_as_tree_cover(tmp_path):
    """Each building and water band becomes itself times the share of the pixel the vegetation band leaves
    seen (1 up to p 0.25, 0 from 0.75); vegetation and roads are left exactly as they were."""
    # clouds off on both sides: the cloud mask multiplies every band, the vegetation band the cut reads included
    plain = _raster(tmp_path, "plain", HOUSES, PROMPTS, resolution="native", cut_canopy=False, mask_clouds=False)
    cut = _raster(tmp_path, "cut", HOUSES, PROMPTS, resolution="native", cut_canopy=True, mask_clouds=False)
    veg = plain[2] / 255.0
    assert np.array_equal(plain[2:], cut[2:])
    seen = np.clip((0.75 - veg) / 0.5, 0.0, 1.0)
    assert np.abs(cut[:2] - plain[:2] * seen).max() <= 2.5  # both rounded to 1/255, the ramp's slope is 2
    # the model paints buildings under the crowns of this street (a real overlap), and the cut takes them out
    crowns = plain[2] >= 140
    assert ((plain[0] >= 128) & crowns).sum() > 200
    assert ((cut[0] >= 128) & crowns).sum() == 0
    # buildings the trees do not cover stay
    open_roofs = (plain[0] >= 128) & (plain[2] < 64)
    assert open_roofs.sum() > 500 and (cut[0][open_roofs] >= 128).all()
    # asked for buildings alone, the wrapper asks the model for vegetation itself: the same band
    alone = _raster(tmp_path, "alone", HOUSES, ["buildings"], resolution="native", cut_canopy=True, mask_clouds=False)
    assert np.abs(alone[0] - cut[0]).max() <= 1


def test_auto_cuts_on_fine_scenes_and_not_on_coarse_ones(tmp_path, capfd):
    """On by default where crowns are objects (the 5 m NAIP sample, a chip of unknown pixel size), off on a
    10 m Sentinel-2 chip, where vegetation is a share of mixed pixels and cutting took real shore water away."""
    assert 5.0 <= CANOPY_MAX_PIXEL_M < 10.0
    for scene, on in ((NAIP, True), (HOUSES, True), (S2, False)):
        roles = "red=1,green=2,blue=3" if scene == S2 else None  # the chip carries no band descriptions
        _, stats = segment(scene, ["water", "roads"], model="default", raster_out=tmp_path / "a.tif", device="cpu",
                           vectorize=False, collect=False, overwrite=True, return_stats=True, allow_no_georef=True,
                           band_roles=roles)
        assert stats.extra["cut_canopy"] == (["water"] if on else []), scene.name
    default = _raster(tmp_path, "default", HOUSES, ["buildings"], resolution="native")
    on = _raster(tmp_path, "on", HOUSES, ["buildings"], resolution="native", cut_canopy=True)
    assert np.array_equal(default, on)
    # True insists, also on a coarse scene
    _, stats = segment(S2, ["water"], model="default", raster_out=tmp_path / "s.tif", device="cpu", vectorize=False,
                       collect=False, return_stats=True, cut_canopy=True, band_roles="red=1,green=2,blue=3")
    assert stats.extra["cut_canopy"] == ["water"]
    # the CLI says what it did, and --no-cut-canopy keeps every pixel
    cli = tmp_path / "cli.tif"
    assert main(["segment", str(NAIP), "-p", "water", "-o", str(tmp_path / "c.gpkg"), "--raster", str(cli),
                 "--model", "default", "-q"]) == 0
    assert "pixels the model sees as vegetation are taken out of 'water'" in capfd.readouterr().out
    assert main(["segment", str(NAIP), "-p", "water", "-o", str(tmp_path / "d.gpkg"), "--raster",
                 str(tmp_path / "d.tif"), "--model", "default", "--no-cut-canopy", "-q"]) == 0
    assert "seen as vegetation" not in capfd.readouterr().out
    with rasterio.open(cli) as a, rasterio.open(tmp_path / "d.tif") as b:
        cut, kept = a.read(1) >= 128, b.read(1) >= 128
        assert a.crs == b.crs and a.transform == b.transform
    assert cut.sum() < kept.sum() and not (cut & ~kept).any()  # only ever takes pixels away


def test_the_accessor_cuts_as_segment_does(tmp_path):
    import rioxarray

    seg = _raster(tmp_path, "seg", NAIP, ["water"])
    da = rioxarray.open_rasterio(NAIP, chunks={"x": 512, "y": 512})
    probs = da.geopix.segment(["water"], model="default")
    assert probs.attrs["cut_canopy"] == 1
    assert np.abs(np.round(probs.values[0] * 255) - seg[0]).max() <= 1


def test_a_model_without_vegetation_or_a_bad_value_is_refused_before_anything_is_written(tmp_path, capfd):
    scene = write_scene(tmp_path / "s.tif", water_scene(64, 64, [(10, 30, 10, 30)]), descriptions=RGBN)
    _, stats = segment(scene, ["water"], raster_out=tmp_path / "a.tif", return_stats=True)  # spectral: auto is off
    assert stats.extra["cut_canopy"] == []
    with pytest.raises(InputError, match="needs a model that segments vegetation"):
        segment(scene, ["water"], out=tmp_path / "o.gpkg", cut_canopy=True)
    with pytest.raises(InputError, match="cut_canopy must be True, False or 'auto'"):
        segment(scene, ["water"], out=tmp_path / "o.gpkg", cut_canopy="yes")
    assert main(["segment", str(scene), "-p", "water", "-o", str(tmp_path / "b.gpkg"), "--cut-canopy"]) != 0
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cut-canopy needs a model that segments vegetation" in err[0], err
    assert not any(tmp_path.glob("o.*")) and not (tmp_path / "b.gpkg").exists()


def test_replies_in_words_count_the_buildings_segment_draws():
    """A chat reply's building mask is the model's mask without its vegetation mask (the hard form of segment's
    cut), the areas in words come from it, and a segment request returns the same pixels; a view of coarse
    pixels cuts nothing."""
    import torch

    from geopix_tiles.model.dialogue import View
    from geopix_tiles.segmenters.registry import load_answer_model
    from geopix_tiles.training.dialogue_heads import chip_pixels

    model = load_answer_model("default", "cpu")
    x = torch.from_numpy(chip_pixels(HOUSES, 256))
    view = View(model, model.encode_images(x[None]))
    seg = model.chat(view, "Please segment the buildings.")
    area = model.chat(view, "How much of the image is buildings?")
    raw = view.logits([seg.prompts[0]])[0] > 0
    veg = view.canopy()
    assert (raw & veg).sum() > 200  # the model paints buildings under these crowns
    mask = seg.masks[0].numpy()
    assert np.array_equal(mask, raw & ~veg)
    assert np.array_equal(area.masks[0].numpy(), mask) and area.facts[0].pixels == int(mask.sum())
    coarse = View(model, view.encoding)
    coarse.canopy_cut = False  # as a conversation sets it on a view of pixels coarser than CANOPY_MAX_PIXEL_M
    assert not coarse.canopy().any()
    assert np.array_equal(model.chat(coarse, "Please segment the buildings.").masks[0].numpy(), raw)


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "xbd_joplin").is_dir(), reason="needs ../shared/data")
def test_the_cut_raises_building_iou_on_an_unseen_sensor_and_place(tmp_path):
    """xBD Joplin (QuickBird, US suburbs; CC BY-NC-SA, scored only, never trained on), both post-disaster images:
    the default model paints blobs that swallow house, yard and street trees; the cut takes the trees out.
    Measured over all four images: IoU 0.311 -> 0.338, precision 0.42 -> 0.51 (benchmarks/results/canopy.md)."""
    spec = importlib.util.spec_from_file_location("resolution", ROOT / "benchmarks" / "resolution.py")
    res = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(res)
    counts = {True: [0, 0], False: [0, 0]}
    for label in sorted((res.XBD / "labels").glob("*post_disaster.json")):
        path, truth = res.georeferenced(label, tmp_path)
        for cut in (True, False):
            out = tmp_path / f"{label.stem}_{cut}.tif"
            segment(path, ["buildings"], model="default", raster_out=out, device="cpu", vectorize=False,
                    collect=False, cut_canopy=cut)
            with rasterio.open(out) as r:
                mask = r.read(1) >= 128
            counts[cut][0] += int((mask & truth).sum())
            counts[cut][1] += int((mask | truth).sum())
    iou = {k: i / u for k, (i, u) in counts.items()}
    assert iou[False] > 0.3 and iou[True] >= iou[False] + 0.02, iou
