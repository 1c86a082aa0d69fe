import numpy as np
import pytest

from geopix_tiles.core.blending import tile_weights
from geopix_tiles.errors import InputError
from geopix_tiles.core.tiling import TileGrid, axis_starts


def test_axis_starts_shift_last_tile_inward():
    assert axis_starts(1000, 256, 32) == (0, 224, 448, 672, 744)
    assert axis_starts(256, 256, 32) == (0,)
    assert axis_starts(100, 256, 32) == (0,)
    for length in (257, 500, 1023, 4096):
        s = axis_starts(length, 256, 32)
        assert s[-1] + 256 == length and all(b - a <= 224 for a, b in zip(s, s[1:]))


def test_grid_covers_every_pixel_and_small_scene_gets_one_clipped_tile():
    g = TileGrid(300, 700, 128, 16)
    cover = np.zeros((300, 700), int)
    for t in g:
        cover[t.y:t.y + t.height, t.x:t.x + t.width] += 1
    assert cover.min() >= 1
    small = TileGrid(40, 70, 128, 16)
    assert len(small) == 1 and (small.tile_height, small.tile_width) == (40, 70)


@pytest.mark.parametrize("tile,overlap", [(64, 32), (64, 40), (32, 17)])
def test_tile_must_exceed_twice_overlap(tile, overlap):
    with pytest.raises(InputError, match="larger than twice the overlap"):
        TileGrid(100, 100, tile, overlap)


@pytest.mark.parametrize("shape", [(300, 700), (129, 129), (64, 1000)])
def test_weights_positive_everywhere_and_one_at_raster_border(shape):
    g = TileGrid(*shape, 64, 16)
    total = np.zeros(shape, np.float64)
    for t in g:
        w = tile_weights(g, t)
        total[t.y:t.y + t.height, t.x:t.x + t.width] += w
    assert total.min() > 0.5
    # regular interior overlaps form a partition of unity
    inner = total[: g.row_starts[-1], : g.col_starts[-1]]
    np.testing.assert_allclose(inner, 1.0, atol=1e-6)
    # border pixels of the raster are weighted 1 by the tile that owns them
    first = tile_weights(g, g.tile_at(0, 0))
    assert first[0, :48].min() == 1.0 and first[:48, 0].min() == 1.0
    assert first[0, -1] == 0.0  # interior edge: inside the zero margin
