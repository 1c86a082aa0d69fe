"""``mask_clouds``: ground classes are not reported under clouds, through segment, the CLI and the accessor.

``"auto"`` (the default) turns it on for a model that segments clouds and off for one without the class.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geopix_tiles import segment
from geopix_tiles.errors import InputError
from geopix_tiles.interfaces.cli import main
from conftest import RGBN, water_scene, write_scene

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT / "tests" / "data" / "default_val"
S2 = VAL / "val_02_s2_cloud_256_0.tif"  # held-out Sentinel-2 chip (B04/B03/B02), 256 px: one model tile
NAIP = ROOT / "geopix_tiles" / "data" / "naip_sample.tif"
ROLES = "red=1,green=2,blue=3"  # the chips carry no band descriptions


def _cloud_label() -> np.ndarray:
    from geopix_tiles.training import rle  # noqa: PLC0415

    rec = next(json.loads(line) for line in open(VAL / "val.jsonl") if S2.name in line)
    out = np.zeros((256, 256), bool)
    for inst in rec["instances"]:
        if inst["category"] == "cloud":
            out |= rle.decode(inst["mask"]).astype(bool)
    return out


def _raster(tmp_path: Path, name: str, prompts: list[str], **kw) -> np.ndarray:
    out = tmp_path / f"{name}.tif"
    segment(S2, prompts, model="default", raster_out=out, device="cpu", vectorize=False, collect=False,
            band_roles=ROLES, **kw)
    with rasterio.open(out) as r, rasterio.open(S2) as src:
        assert r.crs == src.crs and r.transform == src.transform
        return r.read().astype(np.float64)


def test_ground_classes_are_taken_out_from_under_real_clouds(tmp_path):
    """On the held-out Sentinel-2 chip (93 % cloud in its human label) the mask head alone paints water and
    vegetation over most of it; with ``mask_clouds`` each band is that band times the share of ground the cloud
    band leaves seen (1 up to p(cloud) 0.25, 0 from 0.75, linear between)."""
    cloud = _cloud_label()
    assert cloud.mean() > 0.9
    prompts = ["water", "vegetation", "clouds"]
    # natively the 10 m chip is one model tile, so no blending stands between the bands and their product
    plain = _raster(tmp_path, "plain", prompts, resolution="native", mask_clouds=False)
    seen = _raster(tmp_path, "seen", prompts, mask_clouds=True, resolution="native")
    assert np.array_equal(plain[2], seen[2])  # the cloud prompt itself is left as it is
    shown = np.clip((0.75 - plain[2] / 255.0) / 0.5, 0.0, 1.0)
    predicted = plain[:2] * shown  # one tile: no blending between the two
    assert np.abs(seen[:2] - predicted).max() <= 2.5  # both rounded to 1/255, the ramp's slope is 2
    for k in (0, 1):
        assert (plain[k][cloud] >= 128).mean() > 0.25  # what the mask head paints under the clouds
        assert (seen[k][cloud] >= 128).mean() < 0.05
    # without a cloud prompt the wrapper asks the model for clouds itself: the same water band
    alone = _raster(tmp_path, "alone", ["water"], mask_clouds=True, resolution="native")
    assert np.abs(alone[0] - seen[0]).max() <= 1
    # by default (auto) the chip is shown at 5 m over several tiles; the ground is still taken out
    auto = _raster(tmp_path, "auto", ["water", "vegetation"], mask_clouds=True)
    assert all((auto[k][cloud] >= 128).mean() < 0.05 for k in (0, 1))


def test_a_cloud_free_scene_keeps_its_masks(tmp_path):
    """The NAIP sample has no cloud; the diffuse low cloud probability a model spreads over it takes nothing away."""
    rasters = {}
    for mc in (False, True):
        out = tmp_path / f"n{int(mc)}.tif"
        segment(NAIP, ["water", "vegetation"], model="default", raster_out=out, device="cpu", vectorize=False,
                collect=False, mask_clouds=mc)
        with rasterio.open(out) as r:
            rasters[mc] = r.read() >= 128
    for k in (0, 1):
        a, b = rasters[False][k], rasters[True][k]
        assert a.mean() > 0.05
        assert (a & b).sum() / max(1, (a | b).sum()) > 0.97


def test_the_accessor_masks_clouds_as_segment_does(tmp_path):
    import rioxarray

    seen = _raster(tmp_path, "seen", ["water"], mask_clouds=True)
    da = rioxarray.open_rasterio(S2, chunks={"x": 256, "y": 256})
    probs = da.geopix.segment(["water"], model="default", band_roles=ROLES, mask_clouds=True)
    assert probs.attrs["mask_clouds"] == 1
    assert np.abs(np.round(probs.values[0] * 255) - seen[0]).max() <= 1


def test_a_model_without_clouds_is_refused_before_anything_is_written(tmp_path, capfd):
    scene = write_scene(tmp_path / "s.tif", water_scene(64, 64, []), descriptions=RGBN)
    with pytest.raises(InputError, match="needs a model that segments clouds"):
        segment(scene, ["water"], out=tmp_path / "o.gpkg", mask_clouds=True)
    assert main(["segment", str(scene), "-p", "water", "-o", str(tmp_path / "b.gpkg"), "--mask-clouds"]) != 0
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--mask-clouds needs a model that segments clouds" in err[0], err
    assert not any(tmp_path.glob("o.*")) and not (tmp_path / "b.gpkg").exists()
    out = tmp_path / "c.gpkg"
    assert main(["segment", str(S2), "-p", "water", "-o", str(out), "--model", "default", "--band-roles", ROLES,
                 "--mask-clouds", "-q"]) == 0
    assert "pixels under the model's clouds are taken out" in capfd.readouterr().out and out.exists()


def test_auto_is_the_default_and_masks_with_a_cloud_model(tmp_path, capfd):
    """Nothing asked: the default model's water still leaves the real clouds of the Sentinel-2 chip, exactly as
    ``mask_clouds=True`` does; ``False`` (and ``--no-mask-clouds``) paints water under them again."""
    cloud = _cloud_label()
    default = _raster(tmp_path, "default", ["water"], resolution="native")
    on = _raster(tmp_path, "on", ["water"], mask_clouds=True, resolution="native")
    off = _raster(tmp_path, "off", ["water"], mask_clouds=False, resolution="native")
    assert np.array_equal(default, on)
    assert (default[0][cloud] >= 128).mean() < 0.05 and (off[0][cloud] >= 128).mean() > 0.25
    cli = tmp_path / "cli.tif"
    assert main(["segment", str(S2), "-p", "water", "-o", str(tmp_path / "cli.gpkg"), "--raster", str(cli),
                 "--model", "default", "--band-roles", ROLES, "--resolution", "native", "--no-mask-clouds", "-q"]) == 0
    assert "pixels under the model's clouds" not in capfd.readouterr().out
    with rasterio.open(cli) as r:
        assert np.abs(r.read().astype(np.float64) - off).max() <= 1
    da = __import__("rioxarray").open_rasterio(S2, chunks={"x": 256, "y": 256})
    probs = da.geopix.segment(["water"], model="default", band_roles=ROLES, resolution="native")
    assert probs.attrs["mask_clouds"] == 1
    assert np.abs(np.round(probs.values[0] * 255) - default[0]).max() <= 1


def test_auto_leaves_a_model_without_clouds_alone(tmp_path, capfd):
    """The spectral model has no cloud class: ``auto`` runs it as before (no extra prompt, no error)."""
    scene = write_scene(tmp_path / "s.tif", water_scene(64, 64, [(10, 30, 10, 30)]), descriptions=RGBN)
    frame, stats = segment(scene, ["water"], raster_out=tmp_path / "a.tif", return_stats=True)
    assert stats.extra["mask_clouds"] is False
    _, plain = segment(scene, ["water"], raster_out=tmp_path / "b.tif", mask_clouds=False, return_stats=True)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert np.array_equal(a.read(), b.read()) and a.read(1).max() > 128
    probs = __import__("rioxarray").open_rasterio(scene).geopix.segment(["water"])
    assert probs.attrs["mask_clouds"] == 0
    assert main(["segment", str(scene), "-p", "water", "-o", str(tmp_path / "c.gpkg"), "-q"]) == 0
    assert "pixels under the model's clouds" not in capfd.readouterr().out


def test_a_bad_mask_clouds_value_is_refused_before_anything_is_written(tmp_path):
    scene = write_scene(tmp_path / "s.tif", water_scene(64, 64, []), descriptions=RGBN)
    with pytest.raises(InputError, match="mask_clouds must be True, False or 'auto'"):
        segment(scene, ["water"], out=tmp_path / "o.gpkg", mask_clouds="yes")
    assert not any(tmp_path.glob("o.*"))
