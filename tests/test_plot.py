"""geopix_tiles.interfaces.plot.overlay: images, legend entries, stretch, decimation, bad input."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import geopandas as gpd  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import rioxarray  # noqa: E402
from shapely.geometry import box  # noqa: E402

import geopix_tiles  # noqa: E402
from geopix_tiles.errors import InputError  # noqa: E402
from geopix_tiles.interfaces.plot import _rgb_bands, overlay, stretch  # noqa: E402

from conftest import RGBN, UTM, water_scene, write_scene  # noqa: E402


@pytest.fixture
def scene(tmp_path):
    return write_scene(tmp_path / "s.tif", water_scene(96, 128, [(10, 40, 20, 70)]), descriptions=RGBN)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_overlay_probability_dataarray_one_image_and_legend_entry_per_prompt(scene):
    da = rioxarray.open_rasterio(scene)
    probs = da.geopix.segment(["water", "vegetation"], model="spectral", tile=64, overlap=8)
    ax = overlay(da, probs)
    assert isinstance(ax, matplotlib.axes.Axes)
    assert len(ax.images) == 3  # scene + one translucent layer per prompt
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["water", "vegetation"]
    water = ax.images[1].get_array()
    assert water.shape == (96, 128, 4)
    # the water box (rows 10..40, cols 20..70) is coloured, the land around it is not
    assert water[25, 45, 3] == pytest.approx(0.45)
    assert water[80, 110, 3] == 0


def test_overlay_prompts_select_and_order_layers(scene):
    da = rioxarray.open_rasterio(scene)
    probs = da.geopix.segment(["water", "vegetation"], model="spectral", tile=64, overlap=8)
    ax = overlay(da, probs, prompts=["vegetation"], alpha=0.3)
    assert len(ax.images) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["vegetation"]
    with pytest.raises(InputError, match="snow"):
        overlay(da, probs, prompts=["snow"])


def test_overlay_geotiff_masks_and_geodataframe(scene, tmp_path):
    gdf = geopix_tiles.segment(scene, ["water", "vegetation"], raster_out=tmp_path / "m.tif", tile=64, overlap=8)
    ax = overlay(scene, tmp_path / "m.tif")
    assert len(ax.images) == 3
    assert len(ax.get_legend().get_texts()) == 2
    ax2 = overlay(str(scene), gdf.to_crs(4326))  # reprojected back onto the scene
    assert len(ax2.images) == 1  # polygons are patches, not images
    assert [t.get_text() for t in ax2.get_legend().get_texts()] == ["water", "vegetation"]
    assert len(ax2.collections) >= 2
    x0, x1 = ax2.get_xlim()
    assert x0 == pytest.approx(500000.0) and x1 == pytest.approx(500064.0)


def test_overlay_thresholded_raster_and_scale_bar(scene, tmp_path):
    geopix_tiles.segment(scene, ["water"], raster_out=tmp_path / "b.tif", threshold=0.5, tile=64, overlap=8,
                         vectorize=False)
    ax = overlay(scene, tmp_path / "b.tif")
    layer = ax.images[1].get_array()
    assert layer[:, :, 3].astype(bool).sum() == 30 * 50  # exactly the water box
    labels = [t.get_text() for t in ax.texts]
    assert any(lbl.endswith(" m") for lbl in labels)  # scale bar in metres (UTM)


def test_overlay_large_scene_is_decimated(tmp_path):
    data = np.random.default_rng(0).integers(0, 255, (3, 600, 900), dtype=np.uint8)
    path = write_scene(tmp_path / "big.tif", data, crs=UTM)
    ax = overlay(path, max_pixels=300)
    assert ax.images[0].get_array().shape[:2] == (200, 300)


def test_single_band_is_grey_and_band_roles_pick_rgb():
    assert _rgb_bands(["nir", "blue", "green", "red"], 4) == [3, 2, 1]
    assert _rgb_bands([None, None, None, None], 4) == [0, 1, 2]
    assert _rgb_bands([None], 1) == [0]
    img = stretch(np.arange(100, dtype=np.float32).reshape(1, 10, 10))
    assert img.shape == (10, 10, 1) and img.min() == 0 and img.max() == 1


def test_overlay_grey_single_band(tmp_path):
    path = write_scene(tmp_path / "g.tif", np.arange(64 * 64, dtype=np.uint16).reshape(1, 64, 64))
    ax = overlay(path)
    assert ax.images[0].get_array().ndim == 2 and ax.get_legend() is None


def test_overlay_bad_input(scene):
    with pytest.raises(InputError, match="does not exist"):
        overlay("/nonexistent/scene.tif")
    with pytest.raises(InputError, match="not supported"):
        overlay(scene, masks=42)
    with pytest.raises(InputError, match="alpha"):
        overlay(scene, alpha=2)


def test_overlay_frame_without_prompt_column_is_one_group(scene):
    gdf = gpd.GeoDataFrame({"name": ["a"]}, geometry=[box(500005, 3999970, 500020, 3999990)], crs=UTM)
    ax = overlay(scene, gdf)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["regions"]


def test_prompt_colours_natural_then_palette_and_user_choice():
    from geopix_tiles.interfaces.plot import NATURAL, PALETTE, prompt_colours

    c = prompt_colours(["vegetation", "water", "ships", "cars"])
    assert c["water"] == NATURAL["water"] and c["vegetation"] == NATURAL["vegetation"]
    assert len(set(c.values())) == 4 and c["ships"] in PALETTE
    assert prompt_colours(["a", "b"], ["red", "blue"]) == {"a": "red", "b": "blue"}
    assert prompt_colours(["water"], {"water": "black"}) == {"water": "black"}
