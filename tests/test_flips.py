"""``flips``: the model averaged over mirrored views of each tile, through segment, the CLI and the accessor."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from geopix_tiles import segment
from geopix_tiles.errors import InputError
from geopix_tiles.interfaces.cli import main
from geopix_tiles.segmenters.flipped import FlipAveragedSegmenter, with_flips
from conftest import RGBN, water_scene, write_scene

ROOT = Path(__file__).resolve().parents[1]
NAIP = ROOT / "geopix_tiles" / "data" / "naip_sample.tif"
BOXES = [(10, 30, 10, 50), (40, 140, 100, 130), (150, 170, 20, 220)]


def test_the_default_model_is_averaged_over_mirrored_views_of_a_real_chip():
    """On a held-out NAIP chip: the wrapper's probabilities are the mean of the model's answers on the chip
    and on its mirror images, mirrored back; and they differ from one view's (the model is not mirror-exact)."""
    from geopix_tiles.segmenters.registry import load_segmenter

    with rasterio.open(ROOT / "tests" / "data" / "default_val" / "val_03_naip_weak_m_4709963_se_14_1_20200831_0_0.tif") as src:
        chip = src.read([1, 2, 3]).astype(np.float32)
    chip = (chip - chip.min()) / (chip.max() - chip.min())
    tiles = np.stack([chip, chip[..., ::-1].copy()])  # the chip and its left-right mirror in one batch
    seg = load_segmenter("default", device="cpu")
    prompts = ["water", "vegetation"]
    one = seg.predict(tiles, prompts)
    four = FlipAveragedSegmenter(seg, 4).predict(tiles, prompts)
    by_hand = (one + seg.predict(tiles[..., ::-1].copy(), prompts)[..., ::-1]
               + seg.predict(tiles[..., ::-1, :].copy(), prompts)[..., ::-1, :]
               + seg.predict(tiles[..., ::-1, ::-1].copy(), prompts)[..., ::-1, ::-1]) / 4
    assert four.shape == one.shape and four.dtype == np.float32
    np.testing.assert_allclose(four, by_hand, atol=1e-5)
    assert np.abs(four - one).max() > 0.05
    # the mirrored second tile's 4-view answer is the first one's, mirrored (the views are the same set)
    np.testing.assert_allclose(four[1], four[0][..., ::-1], atol=1e-4)
    assert with_flips(seg, 1) is seg


def test_segment_with_flips_stays_close_to_one_view_on_the_shipped_scene(tmp_path):
    rasters = {}
    for flips in (1, 2):
        out = tmp_path / f"f{flips}.tif"
        _, stats = segment(NAIP, ["water"], model="default", raster_out=out, device="cpu", vectorize=False,
                           collect=False, flips=flips, return_stats=True)
        assert stats.extra["flips"] == flips
        with rasterio.open(out) as r, rasterio.open(NAIP) as src:
            assert r.crs == src.crs and r.transform == src.transform
            rasters[flips] = r.read(1) >= 128
    a, b = rasters[1], rasters[2]
    iou = (a & b).sum() / max(1, (a | b).sum())
    assert a.mean() > 0.05 and 0.85 <= iou < 1.0, (a.mean(), iou)


def test_a_per_pixel_model_gives_the_same_values_with_any_number_of_views(tmp_path):
    import rioxarray

    scene = write_scene(tmp_path / "s.tif", water_scene(180, 240, BOXES), descriptions=RGBN)
    values = {}
    for flips in (1, 4):
        segment(scene, ["water"], raster_out=tmp_path / f"{flips}.tif", vectorize=False, collect=False, flips=flips)
        with rasterio.open(tmp_path / f"{flips}.tif") as r:
            values[flips] = r.read(1).astype(int)
    assert values[1].std() > 0 and np.abs(values[1] - values[4]).max() <= 1
    da = rioxarray.open_rasterio(scene, chunks={"x": 128, "y": 128})
    probs = da.geopix.segment(["water"], flips=4)
    assert probs.attrs["flips"] == 4
    assert np.abs((probs.values[0] * 255 + 0.5).astype(int) - values[4]).max() <= 1


def test_bad_flips_are_refused_before_anything_is_written(tmp_path, capfd):
    scene = write_scene(tmp_path / "s.tif", water_scene(64, 64, []), descriptions=RGBN)
    for bad in (0, 3, 8, 2.0, True, "2"):
        with pytest.raises(InputError, match="must be 1 \\(off\\), 2"):
            segment(scene, ["water"], out=tmp_path / "o.gpkg", flips=bad)
    assert main(["segment", str(scene), "-p", "water", "-o", str(tmp_path / "b.gpkg"), "--flips", "3"]) != 0
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--flips 3 must be 1 (off), 2" in err[0], err
    assert not any(tmp_path.glob("o.*")) and not (tmp_path / "b.gpkg").exists()
    assert main(["segment", str(scene), "-p", "water", "-o", str(tmp_path / "c.gpkg"), "--flips", "2", "-q"]) == 0
    assert "mean of 2 mirrored views" in capfd.readouterr().out
