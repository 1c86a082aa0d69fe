"""RunOutputs: a run's raster and vector file are published together, or not at all."""
from __future__ import annotations

import numpy as np
import pyogrio
import pytest
import rasterio

from conftest import RGBN, water_scene, write_scene
from geopix_tiles.core.journal import RunJournal
from geopix_tiles.io.scene import open_scene, select_bands
from geopix_tiles.outputs.commit import RunOutputs
from geopix_tiles.outputs.raster_sink import RasterSink
from geopix_tiles.outputs.vector_sink import VectorSink


def _outputs(tmp_path, **kw) -> tuple[RunOutputs, RasterSink]:
    scene = open_scene(write_scene(tmp_path / "s.tif", water_scene(64, 96, []), descriptions=RGBN))
    dest = tmp_path / "dest"
    dest.mkdir(exist_ok=True)
    journal = RunJournal(dest / ".o.gpkg.geopix-run")
    raster = RasterSink(dest / "o.tif", dest / ".o.tif.partial.tif", scene, ["water"])
    vectors = VectorSink(journal.workdir / "parts", scene, ["water"])
    return RunOutputs(journal, raster, vectors, dest / "o.gpkg", **kw), raster


def _write_rows(raster: RasterSink) -> None:
    probs = np.full((1, 64, 96), 0.8, np.float32)  # stored as round(p x 255) = 204
    raster.write(0, probs, np.ones((64, 96), bool), 0)


def test_success_publishes_both_and_removes_the_run_folder(tmp_path):
    outputs, raster = _outputs(tmp_path)
    with outputs:
        _write_rows(raster)
        outputs.journal.save({"panel": 0}, {"x": 1})
    dest = tmp_path / "dest"
    assert sorted(p.name for p in dest.iterdir()) == ["o.gpkg", "o.tif"]
    with rasterio.open(dest / "o.tif") as r:
        assert r.read(1).min() == 204 and r.crs.to_epsg() == 32633
    assert pyogrio.read_info(dest / "o.gpkg")["features"] == 0 and pyogrio.list_layers(dest / "o.gpkg")[0][0] == "o"


def test_an_error_leaves_nothing_and_propagates(tmp_path):
    outputs, raster = _outputs(tmp_path)
    with pytest.raises(ValueError, match="model failed"):
        with outputs:
            _write_rows(raster)
            raise ValueError("model failed")
    assert list((tmp_path / "dest").iterdir()) == []


def test_a_resumable_stop_keeps_the_hidden_partial_files(tmp_path):
    outputs, raster = _outputs(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with outputs:
            _write_rows(raster)
            outputs.journal.save({"panel": 0}, {"x": 1})
            raise KeyboardInterrupt
    names = sorted(p.name for p in (tmp_path / "dest").iterdir())
    assert names == [".o.gpkg.geopix-run", ".o.tif.partial.tif"] and outputs.journal.exists()
    with rasterio.open(tmp_path / "dest" / ".o.tif.partial.tif") as r:  # closed, valid, its rows on disk
        assert r.read(1).min() == 204


def test_a_failing_vector_write_publishes_no_raster(tmp_path):
    outputs, raster = _outputs(tmp_path)
    with pytest.raises(OSError):
        with outputs:
            _write_rows(raster)
            blocker = outputs.journal.workdir / "result.gpkg"  # the vector file's temporary name, taken
            blocker.mkdir(parents=True)
            (blocker / "x").write_text("x")
    assert list((tmp_path / "dest").iterdir()) == []


def test_writer_threads_follow_the_cores_and_the_overrides(monkeypatch):
    """One compression thread and no vectorising process on 2 cores (where the model needs both), more on more."""
    from geopix_tiles.core.cores import compression_threads, vector_workers

    monkeypatch.delenv("GEOPIX_RASTER_THREADS", raising=False)
    monkeypatch.delenv("GEOPIX_VECTOR_WORKERS", raising=False)
    for cores, threads, vec4 in ((1, 1, 0), (2, 1, 0), (4, 2, 2), (16, 8, 4), (64, 8, 4)):
        monkeypatch.setattr("os.sched_getaffinity", lambda pid, n=cores: set(range(n)))
        assert (compression_threads(), vector_workers(4), vector_workers(1)) == (threads, vec4, min(vec4, 1))
    monkeypatch.setenv("GEOPIX_RASTER_THREADS", "3")
    monkeypatch.setenv("GEOPIX_VECTOR_WORKERS", "3")
    assert (compression_threads(), vector_workers(4), vector_workers(2)) == (3, 3, 2)
    monkeypatch.setenv("GEOPIX_VECTOR_WORKERS", "0")
    assert vector_workers(4) == 0
    monkeypatch.delenv("GEOPIX_VECTOR_WORKERS")  # a small scene gets none on any host, unless asked
    assert (vector_workers(4, 2000 * 2000), vector_workers(4, 8000 * 8000)) == (0, 4)
    monkeypatch.setenv("GEOPIX_VECTOR_WORKERS", "2")
    assert vector_workers(4, 100 * 100) == 2


def _checkpointed_raster(tmp_path, threads: str, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    """A 2-band raster written strip by strip with a checkpoint (close and reopen) after every strip."""
    monkeypatch.setenv("GEOPIX_RASTER_THREADS", threads)
    nodata = np.ones((4, 1030, 1030), np.uint8) * 50
    nodata[:, :, :7] = 0  # a nodata margin: the raster gets a mask band
    scene = select_bands(open_scene(write_scene(tmp_path / f"s{threads}.tif", nodata, descriptions=RGBN, nodata=0)),
                         (1, 2, 3, 4))
    assert scene.has_mask
    sink = RasterSink(tmp_path / f"o{threads}.tif", tmp_path / f".o{threads}.partial.tif", scene, ["a", "b"])
    sink.open()
    yy, xx = np.mgrid[0:1030, 0:1030].astype(np.float32)
    probs = np.stack([0.5 + 0.5 * np.sin(yy / 37 + xx / 53), 0.5 + 0.5 * np.cos(xx / 29 - yy / 61)])
    valid = nodata[0] > 0
    for y0 in range(0, 1030, 192):
        sink.write(y0, probs[:, y0:y0 + 192], valid[y0:y0 + 192])
        sink.checkpoint()
    sink.close()
    with rasterio.open(sink.tmp) as r:
        assert r.profile["compress"] == "lzw" and r.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == "2" and r.count == 2
        assert r.profile["interleave"] == "band"  # one probability surface per block: smaller and quicker (codec bench)
        return r.read(), r.read_masks(1)


def test_threaded_compression_across_checkpoints_writes_the_same_pixels(tmp_path, monkeypatch):
    """Four compression threads, across the update handles reopened at every checkpoint, write the pixels one writes."""
    one, mask1 = _checkpointed_raster(tmp_path, "1", monkeypatch)
    four, mask4 = _checkpointed_raster(tmp_path, "4", monkeypatch)
    np.testing.assert_array_equal(one, four)
    np.testing.assert_array_equal(mask1, mask4)
    assert (mask1[:, :7] == 0).all() and (mask1[:, 7:] == 255).all()
    assert one[0, 0, 10] == int(255 * (0.5 + 0.5 * np.sin(10 / 53)) + 0.5)
