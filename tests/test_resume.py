"""Interrupted runs resume to exactly the uninterrupted result; the destination is never half-written."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio

from geopix_tiles import segment
from geopix_tiles.errors import InputError
from conftest import RGBN, water_scene, write_scene

BOXES = [(5, 120, 10, 30), (60, 70, 0, 250), (150, 240, 100, 200), (200, 205, 5, 60), (30, 230, 230, 236)]


class Flaky:
    """Spectral-like model (NDWI) that can be told to die after some batches."""

    band_roles = ("green", "nir")
    tile_size = 64
    scaling = "reflectance"

    def __init__(self, fail_after=None):
        self.fail_after = fail_after
        self.calls = 0

    def __repr__(self):
        return "Flaky()"

    def check_prompts(self, prompts):
        pass

    def predict(self, tiles, prompts):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise KeyboardInterrupt
        g, n = tiles[:, 0], tiles[:, 1]
        p = np.clip(0.5 + (g - n) / (g + n + 1e-6) * 0.7, 0, 1)
        return np.repeat(p[:, None], len(prompts), axis=1).astype(np.float32)


def _outputs(d):
    gdf = pyogrio.read_dataframe(d / "o.gpkg").sort_values(["prompt", "pixels", "score"]).reset_index(drop=True)
    with rasterio.open(d / "o.tif") as r:
        return gdf, r.read(), r.read_masks()


@pytest.fixture
def scene(tmp_path):
    data = water_scene(256, 256, BOXES)
    data[:, 100:110, :] = 0
    return write_scene(tmp_path / "s.tif", data, nodata=0, descriptions=RGBN)


def test_resume_after_interrupt_equals_uninterrupted(tmp_path, scene):
    ref, run = tmp_path / "ref", tmp_path / "run"
    ref.mkdir(), run.mkdir()
    opts = dict(tile=64, overlap=16, batch_size=2, checkpoint_seconds=0)
    segment(scene, ["water", "w2"], model=Flaky(), out=ref / "o.gpkg", raster_out=ref / "o.tif", **opts)
    with pytest.raises(KeyboardInterrupt):
        segment(scene, ["water", "w2"], model=Flaky(fail_after=11), out=run / "o.gpkg", raster_out=run / "o.tif", **opts)
    assert not (run / "o.gpkg").exists() and not (run / "o.tif").exists()
    journal = json.loads((run / ".o.gpkg.geopix-run" / "journal.json").read_text())
    assert 0 < journal["done_row"] < 5
    with pytest.raises(Exception, match="already exists|cannot be resumed"):
        segment(scene, ["water"], model=Flaky(), out=run / "o.gpkg", raster_out=run / "o.tif", resume=True, **opts)
    segment(scene, ["water", "w2"], model=Flaky(), out=run / "o.gpkg", raster_out=run / "o.tif", resume=True, **opts)
    a, b = _outputs(ref), _outputs(run)
    assert len(a[0]) == len(b[0]) > 3
    assert all(x.equals_exact(y, 0) for x, y in zip(a[0].geometry, b[0].geometry))
    np.testing.assert_array_equal(a[0][["pixels"]].values, b[0][["pixels"]].values)
    np.testing.assert_allclose(a[0]["score"], b[0]["score"], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert sorted(p.name for p in run.iterdir()) == ["o.gpkg", "o.tif"]


def test_resume_with_other_options_is_refused(tmp_path, scene):
    opts = dict(tile=64, overlap=16, batch_size=2, checkpoint_seconds=0)
    with pytest.raises(KeyboardInterrupt):
        segment(scene, "water", model=Flaky(fail_after=8), out=tmp_path / "o.gpkg", **opts)
    with pytest.raises(InputError, match="cannot be resumed: its --overlap differs from this command"):
        segment(scene, "water", model=Flaky(), out=tmp_path / "o.gpkg", resume=True, tile=64, overlap=8)


KILL_SCRIPT = textwrap.dedent("""
    import sys, time, numpy as np
    sys.path.insert(0, {tests!r})
    from test_resume import Flaky
    from geopix_tiles import segment

    class Slow(Flaky):
        def predict(self, tiles, prompts):
            time.sleep(0.05)
            return super().predict(tiles, prompts)

    segment({scene!r}, ["water"], model=Slow(), out=sys.argv[1] + "/o.gpkg", raster_out=sys.argv[1] + "/o.tif",
            tile=64, overlap=16, batch_size=1, checkpoint_seconds=0, resume=len(sys.argv) > 2)
""")


@pytest.mark.parametrize("kill_at_row", [1, 3])
def test_sigkill_then_resume(tmp_path, scene, kill_at_row):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(tests=os.path.dirname(__file__), scene=str(scene)))
    ref, run = tmp_path / "ref", tmp_path / "run"
    ref.mkdir(), run.mkdir()
    subprocess.run([sys.executable, str(script), str(ref)], check=True)
    proc = subprocess.Popen([sys.executable, str(script), str(run)])
    journal = run / ".o.gpkg.geopix-run" / "journal.json"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if json.loads(journal.read_text())["done_row"] >= kill_at_row:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "o.gpkg").exists() and not (run / "o.tif").exists()
    subprocess.run([sys.executable, str(script), str(run), "--resume"], check=True)
    a, b = _outputs(ref), _outputs(run)
    assert len(a[0]) == len(b[0])
    assert all(x.equals_exact(y, 0) for x, y in zip(a[0].geometry, b[0].geometry))
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])


@pytest.mark.parametrize("split, workers", [(False, "0"), (True, "0"), (False, "2")])
def test_resume_across_panels_equals_uninterrupted(tmp_path, monkeypatch, split, workers):
    """Interrupted in the second panel and resumed: the outputs of one uninterrupted run, also when
    strips are traced in worker processes (``workers``; the interrupted run's workers are stopped)."""
    monkeypatch.setenv("GEOPIX_VECTOR_WORKERS", workers)
    data = water_scene(256, 700, BOXES + [(30, 200, 240, 520)])
    data[:, 100:110, :] = 0
    scene = write_scene(tmp_path / "wide.tif", data, nodata=0, descriptions=RGBN)
    ref, run = tmp_path / "ref", tmp_path / "run"
    ref.mkdir(), run.mkdir()
    opts = dict(tile=64, overlap=16, batch_size=2, checkpoint_seconds=0, panel_width=200,  # -> 256 (block width)
                split_objects=split)
    segment(scene, ["water"], model=Flaky(), out=ref / "o.gpkg", raster_out=ref / "o.tif", **opts)
    with pytest.raises(KeyboardInterrupt):  # dies in the second panel
        segment(scene, ["water"], model=Flaky(fail_after=30), out=run / "o.gpkg", raster_out=run / "o.tif", **opts)
    journal = json.loads((run / ".o.gpkg.geopix-run" / "journal.json").read_text())
    assert journal["panel"] >= 1
    if workers != "0":
        from conftest import vector_worker_processes

        assert vector_worker_processes() == []  # the stopped run left no worker behind
    segment(scene, ["water"], model=Flaky(), out=run / "o.gpkg", raster_out=run / "o.tif", resume=True, **opts)
    a, b = _outputs(ref), _outputs(run)
    assert len(a[0]) == len(b[0]) > 3
    assert all(x.equals_exact(y, 0) for x, y in zip(a[0].geometry, b[0].geometry))
    np.testing.assert_array_equal(a[1], b[1])


def test_a_second_run_to_the_same_destination_is_refused(tmp_path, scene):
    """Issue 15: two runs writing one output; the second refuses and touches nothing of the first."""
    from geopix_tiles.errors import OutputError

    out = tmp_path / "o.gpkg"
    lock = tmp_path / ".o.gpkg.lock"
    run = tmp_path / ".o.gpkg.geopix-run"
    run.mkdir()
    (run / "journal.json").write_text("{}")  # the first run's state
    lock.write_text(str(os.getppid()))  # a live process holds the destination
    with pytest.raises(OutputError, match=r"another geopix-tiles run \(pid \d+\) is writing"):
        segment(scene, "water", out=out, tile=64, overlap=16)
    assert (run / "journal.json").read_text() == "{}" and lock.exists() and not out.exists()
    lock.write_text("999999999")  # its process is gone: the lock is stale and taken over
    segment(scene, "water", out=out, tile=64, overlap=16)
    assert out.exists() and not lock.exists()


def test_input_folder_is_never_written(tmp_path, scene):
    """Inputs may sit in read-only folders (archives, mounted buckets): a run, an interrupted run
    and its resume leave the scene's folder byte for byte as it was (journal, temporaries and
    locks live beside the outputs). Root ignores chmod here, so the folder's state is compared."""
    import shutil

    src_dir = tmp_path / "archive"
    src_dir.mkdir()
    src = Path(shutil.copy(scene, src_dir / "scene.tif"))

    def state():
        return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in src_dir.iterdir())

    before = state()
    out = tmp_path / "out"
    out.mkdir()
    opts = dict(tile=64, overlap=16, batch_size=2, checkpoint_seconds=0)
    with pytest.raises(KeyboardInterrupt):
        segment(src, "water", model=Flaky(fail_after=6), out=out / "o.gpkg", raster_out=out / "o.tif", **opts)
    assert state() == before
    segment(src, "water", model=Flaky(), out=out / "o.gpkg", raster_out=out / "o.tif", resume=True, **opts)
    assert state() == before
    assert sorted(p.name for p in out.iterdir()) == ["o.gpkg", "o.tif"]
