"""Shared test helpers: real GeoTIFFs written with rasterio, small enough for CI."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

UTM = "EPSG:32633"
UTM_TRANSFORM = from_origin(500000.0, 4000000.0, 0.5, 0.5)


def write_scene(path, data: np.ndarray, *, crs=UTM, transform=UTM_TRANSFORM, nodata=None, descriptions=None,
                block: int = 64, compress: str = "deflate") -> Path:
    """Write ``data [C, H, W]`` as a tiled GeoTIFF (no CRS/transform when ``crs`` is None)."""
    data = np.asarray(data)
    c, h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=c, dtype=data.dtype.name, compress=compress)
    if h >= 16 and w >= 16:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, d)
    return Path(path)


def water_scene(height: int, width: int, boxes, dtype="uint8", water=(100, 20), land=(20, 100)) -> np.ndarray:
    """4 bands red, green, blue, nir; ``boxes`` (row0, row1, col0, col1) are water (NDWI > 0)."""
    data = np.zeros((4, height, width), dtype=dtype)
    data[0] = 50
    data[1] = land[0]
    data[2] = 40
    data[3] = land[1]
    for r0, r1, c0, c1 in boxes:
        data[1, r0:r1, c0:c1] = water[0]
        data[3, r0:r1, c0:c1] = water[1]
    return data


RGBN = ["red", "green", "blue", "nir"]


def corrupt_block(path, block=(1, 1)) -> None:
    """Overwrite the compressed bytes of block ``(row, col)`` of band 1 so it fails to decode."""
    with rasterio.open(path) as src:
        off = int(src.get_tag_item(f"BLOCK_OFFSET_{block[1]}_{block[0]}", "TIFF", bidx=1))
        size = int(src.get_tag_item(f"BLOCK_SIZE_{block[1]}_{block[0]}", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(b"\xff" * size)


@pytest.fixture(scope="session")
def tiny_model_factory():
    """A fresh, seeded, random-init tiny GeoPix model in eval mode (torch imported only here)."""

    def make():
        import torch

        from geopix_tiles.model import GeoPixConfig, GeoPixModel

        torch.manual_seed(0)
        return GeoPixModel(GeoPixConfig.tiny()).eval()

    return make


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


def vector_worker_processes() -> list[int]:
    """Live child processes of this one running the vectorising worker loop."""
    me, found = os.getpid(), []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z" and b"vector_workers" in cmd:
            found.append(int(pid))
    return found
