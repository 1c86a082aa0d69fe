"""Band-role resolution for scenes that do not describe colours: panchromatic input."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import write_scene
from geopix_tiles.errors import InputError
from geopix_tiles.io.scene import open_scene, resolve_bands


def test_a_single_grey_band_serves_as_red_green_and_blue(tmp_path):
    path = write_scene(tmp_path / "pan.tif", np.full((1, 64, 64), 90, np.uint8))
    scene = open_scene(path)
    assert resolve_bands(scene, ("red", "green", "blue")) == (1, 1, 1)


def test_two_undescribed_bands_still_need_band_roles(tmp_path):
    path = write_scene(tmp_path / "two.tif", np.full((2, 64, 64), 90, np.uint8))
    with pytest.raises(InputError, match="--band-roles"):
        resolve_bands(open_scene(path), ("red", "green", "blue"))
    # grey serves colour roles only: a model that needs NIR still asks for it
    one = open_scene(write_scene(tmp_path / "one.tif", np.full((1, 64, 64), 9, np.uint8)))
    with pytest.raises(InputError, match="--band-roles"):
        resolve_bands(one, ("red", "green", "blue", "nir"))
