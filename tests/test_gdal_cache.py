"""GDAL's block cache is bounded in megabytes, as the API says (rasterio's Env takes bytes)."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio._env import get_gdal_config
from rasterio.windows import Window
from scipy import ndimage

from geopix_tiles import segment
from geopix_tiles.answers.pixels import FilePixelSource
from geopix_tiles.io.gdal_cache import block_cache, block_row_mb
from conftest import RGBN, write_scene


def test_block_cache_is_megabytes_and_restored():
    before = get_gdal_config("GDAL_CACHEMAX")
    with block_cache(64):
        assert get_gdal_config("GDAL_CACHEMAX") == 64 << 20
    assert get_gdal_config("GDAL_CACHEMAX") == before
    # the trap this module exists for: a bare number given to rasterio's Env is bytes
    with rasterio.Env(GDAL_CACHEMAX=64):
        assert get_gdal_config("GDAL_CACHEMAX") == 64


def test_block_cache_refuses_an_empty_cache():
    with pytest.raises(ValueError, match="positive size"):
        block_cache(0)


class CacheProbe:
    """5x5 mean of band 1 per prompt; records GDAL's block cache bound while the engine predicts."""

    band_roles = None
    tile_size = 64
    scaling = "reflectance"

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def check_prompts(self, prompts):
        pass

    def predict(self, tiles, prompts):
        self.seen.add(int(get_gdal_config("GDAL_CACHEMAX")))
        out = ndimage.uniform_filter(tiles[:, 0], size=(1, 5, 5), mode="reflect") / 255.0
        return np.repeat(out[:, None], len(prompts), axis=1).astype(np.float32)


@pytest.mark.parametrize("mb, expected", [(None, 4 << 20), (8, 8 << 20)])
def test_segment_runs_under_the_cache_it_was_given(tmp_path, mb, expected):
    rng = np.random.default_rng(0)
    path = write_scene(tmp_path / "s.tif", rng.integers(0, 255, (4, 200, 200), dtype=np.uint8), block=64)
    probe = CacheProbe()
    kwargs = {} if mb is None else {"gdal_cache_mb": mb}
    frame = segment(path, ["bright"], probe, out=tmp_path / "o.gpkg", overlap=16, **kwargs)
    assert probe.seen == {expected}
    assert len(frame) > 0
    assert get_gdal_config("GDAL_CACHEMAX") != expected  # the run's bound ends with the run


def test_decimated_read_holds_two_block_rows_and_reads_the_same_pixels(tmp_path):
    yy, xx = np.mgrid[0:600, 0:1000]
    wave = (127 + 120 * np.sin(xx / 40.0) * np.cos(yy / 55.0)).astype(np.uint8)
    data = np.stack([wave, wave[::-1], wave[:, ::-1], np.full_like(wave, 200)])
    path = write_scene(tmp_path / "s.tif", data, descriptions=RGBN, block=256)
    with rasterio.open(path) as src:
        # 1,000 px wide: 4 blocks of 256 (+1 for a window off the block edge), 4 bands interleaved by pixel
        assert block_row_mb(src, Window(0, 0, 1000, 600), 3) == pytest.approx(2 * 5 * 256 * 256 * 4 / 2 ** 20)
    px = FilePixelSource(path)
    try:
        view, valid = px.read_masked(Window(0, 0, 1000, 600), (120, 200))
        with rasterio.Env():  # GDAL's own (large) cache: the bound must not change a pixel
            raw = px._src.read([1, 2, 3], window=Window(0, 0, 1000, 600), out_shape=(3, 120, 200),
                               resampling=rasterio.enums.Resampling.bilinear)
    finally:
        px.close()
    from geopix_tiles.answers.pixels import finish

    np.testing.assert_array_equal(view, finish(raw, valid, px.scene.low, px.scene.high))
    assert view.shape == (3, 120, 200) and view.std() > 0.1
