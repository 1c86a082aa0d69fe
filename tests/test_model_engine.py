"""End to end: the GeoPix segmenter through ``geopix_tiles.segment`` on a small GeoTIFF."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

import geopix_tiles
from geopix_tiles.model import GeoPixConfig, GeoPixModel


def _scene(path: Path, h: int = 200, w: int = 168) -> Path:
    rng = np.random.default_rng(0)
    data = (rng.random((3, h, w)) * 2000).astype("uint16")
    data[:, 40:120, 30:90] += 3000  # a bright block so the scene has structure
    profile = dict(driver="GTiff", height=h, width=w, count=3, dtype="uint16", crs="EPSG:32633",
                   transform=from_origin(500000, 4600000, 10, 10))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(("red", "green", "blue"), start=1):
            dst.set_band_description(i, name)
    return path


def test_segmenter_runs_through_the_engine(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = GeoPixModel(GeoPixConfig.tiny()).eval()
    seg = model.as_segmenter(device="cpu")
    scene = _scene(tmp_path / "scene.tif")
    raster = tmp_path / "probs.tif"
    gdf = geopix_tiles.segment(scene, ["buildings", "water"], model=seg, out=tmp_path / "out.gpkg",
                               raster_out=raster, tile=128, overlap=32, batch_size=3)
    assert gdf.crs is not None and gdf.crs.to_epsg() == 32633
    with rasterio.open(scene) as src:
        transform = src.transform
    with rasterio.open(raster) as src:
        assert src.count == 2 and (src.height, src.width) == (200, 168)
        assert src.crs.to_epsg() == 32633 and src.transform == transform
        probs = src.read()
        scale = 255.0 if src.dtypes[0] == "uint8" else 1.0
    assert probs.std() > 0  # not constant
    assert not np.array_equal(probs[0], probs[1])  # one band per prompt, different answers
    # the polygons of each prompt, burnt back through the scene's transform, are its raster's
    # pixels at p >= 0.5 (same georeferencing, same threshold, nothing lost between the two sinks)
    from rasterio.features import rasterize

    for band, prompt in enumerate(["buildings", "water"]):
        fg = probs[band] / scale >= 0.5
        shapes = gdf[gdf.prompt == prompt].geometry
        burnt = rasterize(shapes, out_shape=fg.shape, transform=transform) > 0 if len(shapes) else np.zeros_like(fg)
        union = (burnt | fg).sum()
        assert (burnt & fg).sum() / union > 0.97, (prompt, (burnt & fg).sum(), union)
        assert fg.sum() > 1000, prompt  # (the seeded random model paints most of the scene)


def test_checkpoint_folder_runs_through_the_engine(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = GeoPixModel(GeoPixConfig.tiny()).save_pretrained(tmp_path / "ckpt")
    scene = _scene(tmp_path / "scene.tif", 96, 96)
    raster = tmp_path / "probs.tif"
    geopix_tiles.segment(scene, ["roads"], model=str(ckpt), raster_out=raster, device="cpu", tile=96, overlap=0,
                         vectorize=False)
    with rasterio.open(raster) as src:
        assert src.count == 1 and src.read().shape == (1, 96, 96)
    # the model's own prompt check runs before any tile is read
    with pytest.raises(geopix_tiles.errors.InputError, match="reserved token"):
        geopix_tiles.segment(scene, ["<image> roads"], model=str(ckpt), device="cpu", vectorize=False,
                             raster_out=tmp_path / "bad.tif")


def test_one_cache_holds_a_checkpoint_and_its_segmenter(tmp_path: Path) -> None:
    """load_segmenter reuses the wrapper of load_geopix's model; both go when the checkpoint does."""
    from geopix_tiles.segmenters.registry import load_geopix, load_segmenter

    torch.manual_seed(0)
    a, b = tmp_path / "a", tmp_path / "b"
    GeoPixModel(GeoPixConfig.tiny()).save_pretrained(a)
    GeoPixModel(GeoPixConfig.tiny()).save_pretrained(b)
    seg = load_segmenter(str(a), device="cpu")
    assert load_segmenter(str(a), device="cpu") is seg and seg.model is load_geopix(str(a), device="cpu")
    other = load_segmenter(str(b), device="cpu")  # one checkpoint at a time: a's model and wrapper go
    assert other is not seg and other.model is not seg.model
    again = load_segmenter(str(a), device="cpu")
    assert again is not seg and again.model is not seg.model
    st = (a / "model.safetensors").stat()
    os.utime(a / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # re-saved weights
    assert load_segmenter(str(a), device="cpu") is not again
