"""The scene-wide stretch the learned models see (``geopix_tiles.io.scene.percentile_stats``).

A pale, flat scene (white desert, salt flat, snow) keeps looking pale: its stretch's dark end is at
most half of its bright end, so its faint grain is not blown up to the full range. Ordinary scenes,
whose 2 % value is far below half their 98 % one, get the plain 2-98 % stretch as before.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from geopix_tiles import segment
from geopix_tiles.errors import InputError
from geopix_tiles.io.scene import MAX_LOW_SHARE, compute_statistics, open_scene, percentile_stats, select_bands
from conftest import write_scene

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DUBAI_COLOURS = {"vegetation": (254, 221, 58), "land": (132, 41, 246)}


def _pale_scene(path):
    """A 128 px georeferenced RGB GeoTIFF of pale sand: values 170-234 (2 % / 98 % ~0.73 of each other)."""
    return write_scene(path, np.random.default_rng(1).integers(170, 235, size=(3, 128, 128), dtype=np.uint8))


def _uniform(lo: int, hi: int, n: int = 10_000, dtype=np.uint8) -> np.ndarray:
    return np.linspace(lo, hi, n).round().astype(dtype)[None].repeat(3, 0)


def test_an_ordinary_scene_keeps_its_2_98_stretch():
    values = _uniform(0, 200)
    low, high = percentile_stats([values], 3)
    np.testing.assert_allclose(low, np.percentile(values[0], 2), atol=0.5)
    np.testing.assert_allclose(high, np.percentile(values[0], 98), atol=0.5)


def test_a_pale_flat_scene_is_not_blown_up_to_full_contrast():
    values = _uniform(160, 240)  # a white desert: 2 % at ~162, 98 % at ~238
    low, high = percentile_stats([values], 3)
    np.testing.assert_allclose(high, np.percentile(values[0], 98), atol=0.5)
    np.testing.assert_allclose(low, MAX_LOW_SHARE * high, rtol=1e-6)
    scaled = np.clip((values[0] - low[0]) / (high[0] - low[0]), 0, 1)
    assert scaled.min() > 0.3  # its darkest sand stays grey (0.34), not black (0 under the plain stretch)


def test_16_bit_and_signed_bands():
    pale = _uniform(3000, 4000, dtype=np.uint16)
    low, high = percentile_stats([pale], 3)
    np.testing.assert_allclose(low, MAX_LOW_SHARE * high, rtol=1e-6)
    # a band with negative values (e.g. dB, an index) has no "pale": its percentiles are kept
    signed = np.linspace(-20.0, -5.0, 1000, dtype=np.float32)[None]
    low, high = percentile_stats([signed], 1)
    np.testing.assert_allclose([low[0], high[0]], np.percentile(signed[0], [2, 98]), rtol=1e-5)


def test_compute_statistics_caps_a_pale_geotiff(tmp_path):
    path = _pale_scene(tmp_path / "pale.tif")
    sc = compute_statistics(select_bands(open_scene(path), (1, 2, 3)))
    np.testing.assert_allclose(sc.low, MAX_LOW_SHARE * sc.high, rtol=1e-6)
    assert np.all(sc.high >= 230)


@pytest.mark.skipif(not (SHARED / "dubai_aerial").is_dir(), reason="../shared/data is absent")
def test_held_out_white_desert_is_not_painted_as_vegetation(tmp_path):
    """Dubai tile_7 image 6 (held out; a white desert with a road, labelled land, roads, a pond and a few
    buildings, vegetation on 0.06 % in a corner): with the full 2-98 % stretch the default model painted vegetation on
    21 % of it (its sand grain blown up 3x); pale, it paints next to none, and its land is land."""
    pytest.importorskip("torch")
    image = SHARED / "dubai_aerial" / "tile_7" / "images" / "image_part_006.jpg"
    labels = np.asarray(Image.open(str(image).replace("images", "masks").replace(".jpg", ".png")).convert("RGB"))
    segment(image, ["vegetation", "land"], model="default", out=tmp_path / "o.gpkg", raster_out=tmp_path / "o.tif",
            allow_no_georef=True, resolution="native")
    with rasterio.open(tmp_path / "o.tif") as src:
        veg, land = src.read() > 127
    assert veg.shape == labels.shape[:2]
    assert (labels == DUBAI_COLOURS["vegetation"]).all(-1).mean() < 0.001
    assert veg.mean() < 0.03, veg.mean()
    truth = (labels == DUBAI_COLOURS["land"]).all(-1)
    assert (land & truth).sum() / (land | truth).sum() > 0.85


class InputProbe:
    """A model that takes the scene stretch (``scaling = "unit"``) and records the darkest value it was shown."""

    band_roles = None
    tile_size = 64
    scaling = "unit"

    def __init__(self) -> None:
        self.darkest = 1.0

    def check_prompts(self, prompts):
        pass

    def predict(self, tiles, prompts):
        self.darkest = min(self.darkest, float(tiles.min()))
        return np.repeat(tiles[:, :1], len(prompts), axis=1).astype(np.float32)


@pytest.mark.parametrize("stretch, darkest", [("auto", (0.3, 0.6)), ("full", (0.0, 0.0))])
def test_segment_shows_the_model_the_stretch_asked_for(tmp_path, stretch, darkest):
    probe = InputProbe()
    segment(_pale_scene(tmp_path / "pale.tif"), ["bright"], probe, raster_out=tmp_path / "o.tif", overlap=16,
            stretch=stretch)
    assert darkest[0] <= probe.darkest <= darkest[1], probe.darkest


def test_the_cli_offers_exactly_the_stretches_the_reader_knows():
    """The CLI lists ``--stretch`` choices itself (importing the reader at parse time costs the cold start)."""
    import argparse

    from geopix_tiles.interfaces.cli import build_parser
    from geopix_tiles.io.scene import STRETCHES

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    seen = {name: [a for a in p._actions if "--stretch" in a.option_strings] for name, p in sub.choices.items()}
    offered = {name: acts[0] for name, acts in seen.items() if acts}
    assert "segment" in offered, "segment lost its --stretch option"
    for name, act in offered.items():
        assert tuple(act.choices) == tuple(STRETCHES), name
        assert act.default == "auto", name


def test_an_unknown_stretch_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(InputError, match="--stretch 'plain'.*auto.*full"):
        segment(_pale_scene(tmp_path / "pale.tif"), ["bright"], InputProbe(), out=tmp_path / "o.gpkg",
                stretch="plain")
    assert not (tmp_path / "o.gpkg").exists()


def test_cli_stretch_full_reaches_the_default_model(tmp_path):
    """`geopix-tiles segment --stretch full` on a pale scene: the default model's probabilities differ from
    the default run's (the same scene shown at full contrast). Asked for clouds: default_v24 gives the pale
    sand as ``auto`` shows it a cloud probability of ~23 (8-bit mean) and the grain blown up to full contrast ~2;
    its water and vegetation are ~0 there under either stretch (default_v22's water, default_v18's vegetation
    differed: the prompt follows whatever the shipped model reads differently)."""
    pytest.importorskip("torch")
    from geopix_tiles.interfaces.cli import main

    scene = _pale_scene(tmp_path / "pale.tif")
    rasters = {}
    for stretch in ("auto", "full"):
        out = tmp_path / f"{stretch}.tif"
        args = ["segment", str(scene), "-p", "clouds", "--model", "default", "--out", str(tmp_path / f"{stretch}.gpkg"),
                "--raster", str(out), "--quiet", "--stretch", stretch]
        assert main(args) == 0
        with rasterio.open(out) as src:
            rasters[stretch] = src.read(1).astype(int)
    assert np.abs(rasters["auto"] - rasters["full"]).mean() > 1.0


@pytest.mark.skipif(not (SHARED / "dubai_aerial").is_dir(), reason="../shared/data is absent")
def test_asked_about_the_white_desert_the_answer_path_says_no_vegetation():
    """The replies read the scene under the same stretch as `segment`: asked about tile_7 image 6, the
    default model said "Yes, there is vegetation spread over the view ... 152 separate patches ..., about
    8.2 % of the view" under the plain stretch."""
    pytest.importorskip("torch")
    import geopix_tiles

    image = SHARED / "dubai_aerial" / "tile_7" / "images" / "image_part_006.jpg"
    chat = geopix_tiles.chat(image, "default", allow_no_georef=True)
    reply = chat.ask("Is there any vegetation?")
    assert reply.text.startswith("No"), reply.text
    assert chat.ask("Is there any bare land?").text.startswith("Yes")  # 87 % of it is labelled land


@pytest.mark.parametrize("stretch, darkest", [("auto", (0.3, 0.6)), ("full", (0.0, 0.0))])
def test_answer_paths_read_the_scene_under_the_stretch_asked_for(tmp_path, stretch, darkest):
    """`ask`, `chat` and `describe` read pixels through open_pixels: a file and the same file as a
    DataArray give the model the same numbers as `segment` would under the same ``stretch``."""
    import rioxarray
    from rasterio.windows import Window

    from geopix_tiles.answers.pixels import open_pixels

    path = _pale_scene(tmp_path / "pale.tif")
    seen = []
    for scene in (path, rioxarray.open_rasterio(path)):
        with open_pixels(scene, stretch=stretch) as px:
            pixels, _ = px.read_masked(Window(0, 0, 128, 128), (128, 128))
        seen.append(pixels)
        assert darkest[0] <= float(pixels.min()) <= darkest[1], float(pixels.min())
    np.testing.assert_allclose(seen[0], seen[1], atol=1e-6)
    with pytest.raises(InputError, match="--stretch 'none'"):
        open_pixels(path, stretch="none")


def test_the_xarray_accessor_takes_the_stretch_and_refuses_a_bad_one(tmp_path):
    import rioxarray

    import geopix_tiles.interfaces.xarray_accessor  # noqa: F401 - registers .geopix

    arr = rioxarray.open_rasterio(_pale_scene(tmp_path / "pale.tif"))
    probes = {}
    for stretch in ("auto", "full"):
        probes[stretch] = InputProbe()
        arr.geopix.segment(["bright"], probes[stretch], overlap=16, stretch=stretch).compute(scheduler="synchronous")
    assert probes["full"].darkest == 0.0 and 0.3 <= probes["auto"].darkest <= 0.6
    with pytest.raises(InputError, match="--stretch 'plain'"):
        arr.geopix.segment(["bright"], "spectral", stretch="plain")
