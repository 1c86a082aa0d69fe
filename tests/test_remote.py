"""Remote scenes over HTTP with range reads, against a loopback server (127.0.0.1 only)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio

from geopix_tiles import segment
from geopix_tiles.interfaces.cli import main
from geopix_tiles.io.remote import gdal_path, is_remote
from conftest import RGBN, water_scene, write_scene
from http_range_server import RangeServer

H, W = 512, 640
BOXES = [(20, 200, 40, 300), (260, 400, 320, 600), (450, 470, 0, 640)]


@pytest.fixture(autouse=True)
def _no_gdal_http_cache_between_tests(monkeypatch):
    # each test starts with a cold curl cache, so its faults hit real requests
    monkeypatch.setenv("CPL_VSIL_CURL_NON_CACHED", "/vsicurl/http://127.0.0.1")
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.05")


@pytest.fixture
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    write_scene(root / "scene.tif", water_scene(H, W, BOXES), descriptions=RGBN, compress="none")
    server = RangeServer(root)
    yield server, root / "scene.tif"
    server.close()


def _raster(path):
    with rasterio.open(path) as r:
        return r.read(), r.crs, r.transform


def test_paths_are_mapped_onto_gdal_handlers():
    assert gdal_path("https://h/x.tif") == "/vsicurl/https://h/x.tif"
    assert gdal_path("s3://bucket/k/x.tif") == "/vsis3/bucket/k/x.tif"
    assert gdal_path("/vsis3/bucket/x.tif") == "/vsis3/bucket/x.tif" and gdal_path("a/b.tif") == "a/b.tif"
    assert is_remote("/vsicurl/http://h/x.tif") and not is_remote("x.tif")


def test_http_scene_equals_the_local_file_with_range_reads(served, tmp_path):
    server, local = served
    segment(local, ["water"], raster_out=tmp_path / "local.tif", tile=128, overlap=32, vectorize=False)
    frame = segment(f"{server.url}/scene.tif", ["water"], out=tmp_path / "remote.gpkg", raster_out=tmp_path / "r.tif",
                    tile=128, overlap=32)
    a, b = _raster(tmp_path / "local.tif"), _raster(tmp_path / "r.tif")
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
    assert len(frame) >= 3 and server.range_gets > 0  # windowed range requests, not one download
    assert os.environ["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"


def test_missing_remote_scene_is_one_line_and_writes_nothing(served, tmp_path, capfd):
    server, _ = served
    rc = main(["segment", f"{server.url}/nope.tif", "-p", "water", "--out", str(tmp_path / "x.gpkg"), "--quiet"])
    err = capfd.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "HTTP 404" in err and "check the URL" in err
    assert not list(tmp_path.iterdir()) or [p.name for p in tmp_path.iterdir()] == ["www"]


def test_transient_server_errors_are_retried(served, tmp_path):
    server, local = served
    segment(local, ["water"], raster_out=tmp_path / "local.tif", tile=128, overlap=32, vectorize=False)
    server.fail_every = 3  # every third request answers 503
    segment(f"{server.url}/scene.tif", ["water"], raster_out=tmp_path / "r.tif", tile=128, overlap=32,
            vectorize=False)
    assert np.array_equal(_raster(tmp_path / "local.tif")[0], _raster(tmp_path / "r.tif")[0])
    assert server.gets >= 6  # faults were hit and survived


def test_server_dying_mid_run_then_resume(served, tmp_path, capfd, monkeypatch):
    server, local = served
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "1")
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "2")
    segment(local, ["water"], raster_out=tmp_path / "local.tif", tile=128, overlap=32, vectorize=False)
    out, ras = tmp_path / "r.gpkg", tmp_path / "r.tif"
    server.die_after = 5  # the header and a few strips (the whole run takes ~10 requests), then nothing
    args = ["segment", f"{server.url}/scene.tif", "-p", "water", "--out", str(out), "--raster", str(ras),
            "--tile", "128", "--overlap", "32", "--quiet", "--checkpoint-seconds", "0"]
    rc = main(args)
    err = capfd.readouterr().err.strip()
    assert rc == 4 and err.count("\n") == 0 and "scene.tif" in err and "--resume" in err, err
    assert not out.exists() and not ras.exists()  # nothing half-written at the destination
    journal = tmp_path / ".r.gpkg.geopix-run"
    assert journal.is_dir()  # kept (hidden, as after Ctrl-C) so --resume continues
    server.revive()
    assert main(args + ["--resume"]) == 0, capfd.readouterr().err
    assert not journal.exists()
    assert np.array_equal(_raster(ras)[0], _raster(tmp_path / "local.tif")[0])


def test_remote_file_replaced_mid_run_stops_cleanly(served, tmp_path):
    """The server's file changes between strips (new ETag): the run stops with one line naming the
    change, before any pixel of the new version is used, and nothing is written at the destination."""
    from geopix_tiles.errors import ReadError
    from geopix_tiles.segmenters.spectral import SpectralSegmenter

    server, local = served

    class ReplacesTheFile(SpectralSegmenter):
        calls = 0

        def predict(self, tiles, prompts):
            ReplacesTheFile.calls += 1
            if ReplacesTheFile.calls == 1:  # after the first strip: someone uploads a new version
                write_scene(local, water_scene(H, W, BOXES[:1]), descriptions=RGBN, compress="none")
            return super().predict(tiles, prompts)

    out, ras = tmp_path / "r.gpkg", tmp_path / "r.tif"
    with pytest.raises(ReadError, match=r"changed on the server during the run \(etag .* -> .*\).*rerun"):
        segment(f"{server.url}/scene.tif", ["water"], model=ReplacesTheFile(), out=out, raster_out=ras, tile=128,
                overlap=32, batch_size=2)
    assert not out.exists() and not ras.exists()
    assert ReplacesTheFile.calls <= 8  # stopped within a strip or two (of 21 batches), not at the end
