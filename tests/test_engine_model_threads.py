"""Several model threads: batches finish out of order, outputs stay those of one thread."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from scipy import ndimage

from geopix_tiles import segment
from geopix_tiles.errors import InputError
from conftest import RGBN, vector_worker_processes, water_scene, write_scene


class JitterSegmenter:
    """Box filter of band 1 whose calls take random times, so concurrent calls finish out of order."""

    band_roles = None
    tile_size = 64
    scaling = "reflectance"

    def __init__(self, calls: int, fail_on: int | None = None) -> None:
        self.calls = calls
        self.fail_on = fail_on
        self.rng = np.random.default_rng(0)
        self.threads: set[str] = set()
        self.entered = 0
        self.n = 0
        self.sizes: set[int] = set()
        self.lock = threading.Lock()

    def check_prompts(self, prompts):
        pass

    def concurrent_calls(self) -> int:
        return self.calls

    @contextlib.contextmanager
    def predictor_thread(self, count: int):
        with self.lock:
            self.entered += 1
        yield

    def predict(self, tiles, prompts):
        with self.lock:
            self.n += 1
            n = self.n
            self.threads.add(threading.current_thread().name)
            self.sizes.add(len(tiles))
            delay = float(self.rng.uniform(0, 0.02))
        if self.fail_on is not None and n == self.fail_on:
            raise InputError("tile decoder failed on purpose")
        time.sleep(delay)
        out = ndimage.uniform_filter(tiles[:, 0], size=(1, 5, 5), mode="reflect") / 255.0
        return np.repeat(out[:, None], len(prompts), axis=1).astype(np.float32)


def _scene(tmp_path):
    rng = np.random.default_rng(3)
    data = water_scene(300, 330, [])
    blobs = ndimage.gaussian_filter(rng.random((300, 330)), 5)
    data[0] = np.where(blobs > np.percentile(blobs, 65), 220, 40).astype(np.uint8)
    return write_scene(tmp_path / "s.tif", data, descriptions=RGBN)


def test_two_model_threads_write_what_one_writes(tmp_path):
    scene = _scene(tmp_path)
    one, two = JitterSegmenter(1), JitterSegmenter(2)
    opts = dict(tile=64, overlap=16, batch_size=4)
    a = segment(scene, ["x"], model=one, raster_out=tmp_path / "one.tif", **opts)
    b = segment(scene, ["x"], model=two, raster_out=tmp_path / "two.tif", **opts)
    assert len(one.threads) == 1 and two.threads == {"MainThread", "geopix-predict-1"}
    assert two.entered == 2  # each model thread set itself up
    assert max(one.sizes) == 4 and max(two.sizes) == 2  # batch_size tiles in the model at once, shared
    with rasterio.open(tmp_path / "one.tif") as r1, rasterio.open(tmp_path / "two.tif") as r2:
        np.testing.assert_array_equal(r1.read(), r2.read())
        assert r1.transform == r2.transform and r1.crs == r2.crs
    assert len(a) == len(b) > 3
    np.testing.assert_array_equal(np.sort(a["pixels"].to_numpy()), np.sort(b["pixels"].to_numpy()))


def test_vectorising_in_worker_processes_writes_what_the_vector_thread_writes(tmp_path, monkeypatch):
    """The shipped NAIP sample, four prompts, polygons joined across strips and 256 px panels, a
    checkpoint after every strip: the same features in the same order whether strips are traced
    in the engine's vector thread or in two worker processes."""
    import pyogrio

    sample = Path(__file__).resolve().parents[1] / "geopix_tiles" / "data" / "naip_sample.tif"
    frames = []
    for workers in ("0", "2"):
        monkeypatch.setenv("GEOPIX_VECTOR_WORKERS", workers)
        out = tmp_path / f"v{workers}.gpkg"
        segment(sample, ["water", "vegetation", "ndwi", "ndvi"], out=out, tile=128, collect=None,
                panel_width=256, checkpoint_seconds=0)
        frames.append(pyogrio.read_dataframe(out))
    inline, workers = frames
    assert len(inline) == len(workers) > 100 and sorted(set(inline["prompt"])) == ["ndvi", "ndwi", "vegetation", "water"]
    assert list(inline["prompt"]) == list(workers["prompt"])
    np.testing.assert_array_equal(inline["score"], workers["score"])
    assert all(a.equals_exact(b, 0) for a, b in zip(inline.geometry, workers.geometry))


def test_a_worker_failure_stops_the_run_with_its_error_and_writes_nothing(tmp_path, monkeypatch):
    """A strip a worker cannot trace (here: one whose foreground has no pixels where it says it has)
    ends the run with that error; the destination stays empty and no worker process is left."""
    from geopix_tiles.outputs import vector_workers

    monkeypatch.setenv("GEOPIX_VECTOR_WORKERS", "2")
    real = vector_workers.StripTracers.submit
    calls = []

    def broken(self, foreground, fg_probs, x0, y0):
        calls.append(y0)
        return real(self, foreground, fg_probs[:-1] if len(calls) == 3 else fg_probs, x0, y0)

    monkeypatch.setattr(vector_workers.StripTracers, "submit", broken)
    sample = Path(__file__).resolve().parents[1] / "geopix_tiles" / "data" / "naip_sample.tif"
    out = tmp_path / "x.gpkg"
    with pytest.raises(RuntimeError, match="failed in a worker process: ValueError: .*weights"):
        segment(sample, ["water", "vegetation"], out=out, raster_out=tmp_path / "x.tif", tile=128)
    assert not out.exists() and not (tmp_path / "x.tif").exists()
    assert vector_worker_processes() == []


def test_a_vectorising_worker_that_dies_stops_the_run_with_a_clear_error(tmp_path, monkeypatch):
    """A worker killed mid-run (out of memory, say): the run stops with a message naming the way out."""
    from geopix_tiles.outputs import vector_workers

    monkeypatch.setenv("GEOPIX_VECTOR_WORKERS", "1")
    real = vector_workers.StripTracers.submit

    def kill_first(self, *args):
        if not getattr(self, "killed", False):
            self.killed = True
            self._workers[0].proc.kill()
            self._workers[0].proc.wait()
        return real(self, *args)

    monkeypatch.setattr(vector_workers.StripTracers, "submit", kill_first)
    sample = Path(__file__).resolve().parents[1] / "geopix_tiles" / "data" / "naip_sample.tif"
    with pytest.raises(RuntimeError, match="worker process stopped.*GEOPIX_VECTOR_WORKERS=0"):
        segment(sample, ["water"], out=tmp_path / "x.gpkg", tile=128)
    assert not (tmp_path / "x.gpkg").exists() and vector_worker_processes() == []


def test_a_script_without_a_main_guard_runs_with_worker_processes(tmp_path):
    """The workers are not multiprocessing's: a user's script is never re-run in them."""
    import subprocess

    sample = Path(__file__).resolve().parents[1] / "geopix_tiles" / "data" / "naip_sample.tif"
    script = tmp_path / "job.py"
    script.write_text("import geopix_tiles\n"
                      f"frame = geopix_tiles.segment({str(sample)!r}, ['water', 'vegetation'], out={str(tmp_path / 'o.gpkg')!r})\n"
                      "print('polygons', len(frame))\n")
    env = dict(os.environ, GEOPIX_VECTOR_WORKERS="2")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("polygons") == 1 and int(out.stdout.split()[-1]) > 100


def test_a_failing_model_thread_stops_the_run_with_its_error(tmp_path):
    scene = _scene(tmp_path)
    for fail_on in (3, 4):  # one call from each thread, in most schedules
        out = tmp_path / f"x{fail_on}.gpkg"
        with pytest.raises(InputError, match="failed on purpose"):
            segment(scene, ["x"], model=JitterSegmenter(2, fail_on=fail_on), out=out,
                    raster_out=tmp_path / f"x{fail_on}.tif", tile=64, overlap=16, batch_size=1)
        assert not out.exists() and not (tmp_path / f"x{fail_on}.tif").exists()


def test_geopix_segmenter_shares_the_callers_threads_and_restores_them():
    from model.config import GeoPixConfig
    from model.geopix import GeoPixModel
    from model.segmenter import GeoPixSegmenter

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        seg = GeoPixSegmenter(GeoPixModel(GeoPixConfig.tiny()), device="cpu")
        assert seg.concurrent_calls() == 2
        seen = []
        setup = seg.predictor_thread(2)  # made in the caller's thread, as the engine does

        def work():
            with setup:
                seen.append(torch.get_num_threads())

        t = threading.Thread(target=work)
        t.start()
        t.join()
        with seg.predictor_thread(2):
            seen.append(torch.get_num_threads())
        assert seen == [1, 1] and torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert seg.concurrent_calls() == 1
    finally:
        torch.set_num_threads(before)


def test_batch_size_defaults_to_8_on_a_cpu_and_64_for_a_model_on_a_gpu():
    """A GPU call has a fixed host cost (274 tiles/s at 8 vs 459 at 64 on an H200), a CPU call does not."""
    from geopix_tiles.segmenters.protocol import default_batch_size
    from geopix_tiles.segmenters.registry import load_segmenter
    from model.config import GeoPixConfig
    from model.geopix import GeoPixModel
    from model.segmenter import GeoPixSegmenter

    seg = GeoPixSegmenter(GeoPixModel(GeoPixConfig.tiny()), device="cpu")
    assert default_batch_size(seg) == 8 and default_batch_size(load_segmenter("spectral")) == 8
    assert seg.autocast is False  # fp32 unless asked for, on every device
    from geopix_tiles.segmenters.checked import with_presence_check
    from geopix_tiles.segmenters.flipped import with_flips
    from geopix_tiles.segmenters.resampled import ResampledSegmenter

    wrapped = ResampledSegmenter(with_flips(with_presence_check(seg, False), 2), 0.5, None)  # as segment() wraps it
    assert default_batch_size(wrapped) == 8
    seg.device = torch.device("cuda", 0)  # where a GPU run's segmenter says it is (no CUDA needed to ask)
    assert default_batch_size(seg) == 64 and default_batch_size(wrapped) == 64


def test_model_threads_override(tmp_path, monkeypatch):
    scene = _scene(tmp_path)
    monkeypatch.setenv("GEOPIX_MODEL_THREADS", "1")
    seg = JitterSegmenter(2)
    segment(scene, ["x"], model=seg, tile=64, overlap=16, batch_size=2, vectorize=False,
            raster_out=tmp_path / "a.tif")
    assert seg.threads == {"MainThread"}
    monkeypatch.setenv("GEOPIX_MODEL_THREADS", "two")
    with pytest.raises(InputError, match="GEOPIX_MODEL_THREADS='two' is not a positive integer"):
        segment(scene, ["x"], model=seg, tile=64, overlap=16, raster_out=tmp_path / "b.tif", vectorize=False)
    assert not (tmp_path / "b.tif").exists()


def test_a_batch_finished_just_before_its_thread_exits_is_not_a_dead_thread():
    """The race seen once on Dubai tile_7 ("geopix-predict thread stopped unexpectedly"): the waiter's
    0.1 s timeout expires, the model thread fills the slot (or queue) and exits, then the waiter sees a
    dead thread. The finished batch must be taken, not turned into an error."""
    import queue
    import threading

    from geopix_tiles.core.engine import _get, _Slot

    class Dead:
        name, error = "geopix-predict", None

        def is_alive(self):
            return False

    class LateEvent:  # times out once, but is set by the time anyone looks
        def wait(self, timeout):
            return False

        def is_set(self):
            return True

    slot = _Slot("batch")
    slot.ready = LateEvent()
    assert slot.wait(threading.Event(), Dead()) == "batch"

    class LateQueue(queue.Queue):  # empty at the timed get, holding the last item right after
        def get(self, block=True, timeout=None):
            if block:
                raise queue.Empty
            return super().get(block=False)

    q = LateQueue()
    q.put_nowait("last")
    assert _get(q, threading.Event(), Dead()) == "last"
    empty = LateQueue()
    with pytest.raises(RuntimeError, match="stopped unexpectedly"):
        _get(empty, threading.Event(), Dead())
    slot = _Slot("batch")
    with pytest.raises(RuntimeError, match="stopped unexpectedly"):  # a really dead thread still fails
        slot.wait(threading.Event(), Dead())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="OS thread names are read from /proc")
def test_engine_threads_carry_their_stage_name_in_the_os():
    from geopix_tiles.core.engine import _Worker

    seen = {}

    def look():
        seen["comm"] = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()

    for name, expected in (("geopix-vector", "geopix-vector"), ("geopix-predict-1", "geopix-predict-")):
        worker = _Worker(look, name)
        worker.start()
        worker.join()
        assert worker.error is None and seen["comm"] == expected  # 15 characters at most
