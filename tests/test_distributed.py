"""dask.distributed: identical outputs, surviving a killed worker, many scenes, faults."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pyogrio
import pytest
import rasterio
from rasterio.transform import from_origin

from geopix_tiles import segment
from geopix_tiles.scale.distributed import DaskRunner, make_client
from conftest import RGBN, corrupt_block, water_scene, write_scene

BOXES = [(5, 120, 10, 30), (60, 70, 0, 250), (150, 240, 100, 200), (200, 205, 5, 60)]


class SlowNDWI:
    band_roles = ("green", "nir")
    tile_size = 64
    scaling = "reflectance"

    def __init__(self, delay=0.0):
        self.delay = delay

    def __repr__(self):
        return "SlowNDWI()"

    def check_prompts(self, prompts):
        pass

    def predict(self, tiles, prompts):
        time.sleep(self.delay)
        g, n = tiles[:, 0], tiles[:, 1]
        p = np.clip(0.5 + (g - n) / (g + n + 1e-6), 0, 1)
        return np.repeat(p[:, None], len(prompts), axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def client():
    c = make_client(workers=2)
    yield c
    cluster = c.cluster
    c.close()
    cluster.close()


@pytest.fixture
def scene(tmp_path):
    data = water_scene(256, 320, BOXES)
    data[:, 100:110, :] = 0
    return write_scene(tmp_path / "s.tif", data, nodata=0, descriptions=RGBN)


def _read(d):
    gdf = pyogrio.read_dataframe(d / "o.gpkg").sort_values(["prompt", "pixels"]).reset_index(drop=True)
    with rasterio.open(d / "o.tif") as r:
        return gdf, r.read(), r.read_masks()


def _assert_same(a, b):
    assert len(a[0]) == len(b[0]) > 0
    assert all(x.equals_exact(y, 0) for x, y in zip(a[0].geometry, b[0].geometry))
    np.testing.assert_array_equal(a[0]["score"], b[0]["score"])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])


def test_cluster_run_equals_single_process(client, scene, tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    opts = dict(tile=64, overlap=16, batch_size=3)
    segment(scene, ["water", "vegetation"], out=tmp_path / "a" / "o.gpkg", raster_out=tmp_path / "a" / "o.tif", **opts)
    segment(scene, ["water", "vegetation"], out=tmp_path / "b" / "o.gpkg", raster_out=tmp_path / "b" / "o.tif",
            remote=DaskRunner(client, "spectral"), **opts)
    _assert_same(_read(tmp_path / "a"), _read(tmp_path / "b"))


def test_killed_worker_does_not_change_the_result(client, scene, tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    opts = dict(tile=64, overlap=16, batch_size=2)
    segment(scene, "water", model=SlowNDWI(), out=tmp_path / "a" / "o.gpkg", raster_out=tmp_path / "a" / "o.tif", **opts)
    pids = client.run(os.getpid)

    def kill_one():
        time.sleep(1.0)
        os.kill(next(iter(pids.values())), signal.SIGKILL)

    killer = threading.Thread(target=kill_one)
    killer.start()
    segment(scene, "water", model=SlowNDWI(delay=0.15), out=tmp_path / "b" / "o.gpkg",
            raster_out=tmp_path / "b" / "o.tif", remote=DaskRunner(client, SlowNDWI(delay=0.15)), **opts)
    killer.join()
    assert set(client.run(os.getpid).values()) != set(pids.values())  # a worker really died (and was replaced)
    _assert_same(_read(tmp_path / "a"), _read(tmp_path / "b"))


def test_many_scenes_with_workers_and_merged_output_in_chosen_crs(tmp_path):
    write_scene(tmp_path / "utm.tif", water_scene(96, 96, [(10, 40, 10, 40)]), descriptions=RGBN)
    write_scene(tmp_path / "geo.tif", water_scene(96, 96, [(50, 90, 50, 90), (5, 10, 5, 10)]), crs="EPSG:4326",
                      transform=from_origin(14.9, 36.1, 1e-5, 1e-5), descriptions=RGBN)
    listing = tmp_path / "scenes.txt"
    listing.write_text("utm.tif\n# comment\ngeo.tif\n")
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, "-m", "geopix_tiles", "segment", str(listing), "-p", "water", "--out", str(out),
                          "--raster", str(out), "--merge", str(tmp_path / "all.gpkg"), "--merge-crs", "EPSG:4326",
                          "--workers", "2", "--tile", "64", "--overlap", "8", "-q"], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["geo.gpkg", "geo.tif", "utm.gpkg", "utm.tif"]
    assert pyogrio.read_info(out / "utm.gpkg")["crs"] == "EPSG:32633"
    merged = pyogrio.read_dataframe(tmp_path / "all.gpkg")
    assert merged.crs.to_epsg() == 4326
    assert sorted(merged["scene"]) == ["geo", "geo", "utm"]
    utm_poly = merged[merged.scene == "utm"].geometry.iloc[0]
    assert 14.9 < utm_poly.centroid.x < 15.1  # EPSG:32633 x=500000 is the 15E meridian
    assert res.stdout.count("segmented ") == 2 and "merged 3 polygons" in res.stdout


def test_skip_bad_tiles_writes_nodata_and_lists_the_block(tmp_path):
    scene = write_scene(tmp_path / "s.tif", water_scene(256, 256, [(0, 256, 0, 256)]), descriptions=RGBN)
    corrupt_block(scene, (2, 1))  # block row 2, column 1: rows 128..191, cols 64..127
    cmd = [sys.executable, "-m", "geopix_tiles", "segment", str(scene), "-p", "water", "--out", str(tmp_path / "o.gpkg"),
           "--raster", str(tmp_path / "o.tif"), "--tile", "64", "--overlap", "8", "-q"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 4 and "rows 128.." in res.stderr and not (tmp_path / "o.tif").exists()
    res = subprocess.run(cmd + ["--skip-bad-tiles"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "skipped 1 unreadable block(s)" in res.stdout and "col 64 row 128 size 64x64" in res.stdout
    with rasterio.open(tmp_path / "o.tif") as r:
        mask = r.read_masks(1)
    assert (mask[128:192, 64:128] == 0).all() and mask.sum() == 255 * (256 * 256 - 64 * 64)
    gdf = pyogrio.read_dataframe(tmp_path / "o.gpkg")
    assert len(gdf) == 1 and gdf["pixels"].iloc[0] == 256 * 256 - 64 * 64
    assert len(gdf.geometry.iloc[0].interiors) == 1


DISK_FULL = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # writes past the limit fail with EFBIG, like a full disk
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    from geopix_tiles.interfaces.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_disk_full_mid_run_cleans_up(tmp_path):
    rng = np.random.default_rng(0)
    noisy = water_scene(1024, 1024, []).astype(np.uint8)
    noisy[1] = rng.integers(0, 255, (1024, 1024))  # incompressible probabilities
    scene = write_scene(tmp_path / "s.tif", noisy, descriptions=RGBN, block=256, compress="none")
    dest = tmp_path / "dest"
    dest.mkdir()
    script = tmp_path / "full.py"
    script.write_text(DISK_FULL)
    res = subprocess.run([sys.executable, str(script), "segment", str(scene), "-p", "water", "--out",
                          str(dest / "o.gpkg"), "--raster", str(dest / "o.tif"), "-q"], capture_output=True, text=True)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "writing the outputs failed" in lines[0] and "Traceback" not in res.stderr
    assert list(dest.iterdir()) == []
