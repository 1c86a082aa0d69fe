"""The CLI: happy path, and every bad input gives one line, a non-zero exit and an untouched destination."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyogrio
import pytest
import rasterio
import rasterio.shutil

from conftest import RGBN, corrupt_block, water_scene, write_scene

REPO = Path(__file__).resolve().parents[1]

CLI = [sys.executable, "-m", "geopix_tiles"]


def run(*args, cwd=None):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture
def scene(tmp_path):
    return write_scene(tmp_path / "scene.tif", water_scene(200, 300, [(20, 120, 30, 90), (150, 190, 100, 290)]),
                       descriptions=RGBN)


def test_segment_cli_writes_outputs_and_summary(tmp_path, scene):
    out = tmp_path / "out" / "water.gpkg"
    out.parent.mkdir()
    res = run("segment", scene, "--prompt", "water", "--out", out, "--raster", tmp_path / "out" / "water.tif",
              "--tile", 128, "--overlap", 16, "--threshold", 0.5, "--cog")
    assert res.returncode == 0, res.stderr
    assert "segmented scene.tif" in res.stdout and "2 polygons" in res.stdout
    assert "tile" in res.stderr  # progress bar
    assert len(pyogrio.read_dataframe(out)) == 2
    with rasterio.open(tmp_path / "out" / "water.tif") as r:
        assert r.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert sorted(p.name for p in out.parent.iterdir()) == ["water.gpkg", "water.tif"]


def test_band_roles_flag(tmp_path):
    data = water_scene(64, 64, [(0, 32, 0, 64)])[[3, 1, 2, 0]]  # nir, green, blue, red; no descriptions
    scene = write_scene(tmp_path / "s.tif", data)
    res = run("segment", scene, "-p", "water", "--out", tmp_path / "o.gpkg")
    assert res.returncode != 0 and "--band-roles" in res.stderr
    res = run("segment", scene, "-p", "water", "--out", tmp_path / "o.gpkg", "--band-roles", "nir=1,green=2")
    assert res.returncode == 0, res.stderr
    assert pyogrio.read_dataframe(tmp_path / "o.gpkg")["pixels"].tolist() == [32 * 64]


def _bad_inputs(tmp_path, scene):
    nogeo = write_scene(tmp_path / "nogeo.tif", water_scene(32, 32, []), crs=None, descriptions=RGBN)
    notraster = tmp_path / "notes.tif"
    notraster.write_text("this is not a raster")
    corrupt = write_scene(tmp_path / "corrupt.tif", water_scene(256, 256, [(0, 10, 0, 10)]), descriptions=RGBN)
    corrupt_block(corrupt, (2, 2))
    plain = write_scene(tmp_path / "plain.tif", water_scene(256, 256, [(0, 10, 0, 10)]), descriptions=RGBN,
                        compress="none")
    truncated = tmp_path / "trunc.tif"  # COG layout: headers first, so it opens and fails mid-run
    rasterio.shutil.copy(plain, truncated, driver="COG", compress="NONE", blocksize=64, overviews="NONE")
    with open(truncated, "r+b") as f:
        f.truncate(os.path.getsize(truncated) // 2)
    broken_header = tmp_path / "header.tif"
    broken_header.write_bytes(plain.read_bytes()[: os.path.getsize(plain) // 2])
    existing = tmp_path / "dest" / "exists.gpkg"
    existing.parent.mkdir(exist_ok=True)
    existing.write_text("keep me")
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    d = tmp_path / "dest"
    return {
        "missing file": ([tmp_path / "nope.tif", "-p", "water"], "does not exist"),
        "not a raster": ([notraster, "-p", "water"], "not a raster"),
        "no georeference": ([nogeo, "-p", "water"], "--allow-no-georef"),
        "band out of range": ([scene, "-p", "water", "--band-roles", "green=2,nir=9"], "out of range"),
        "bands out of range": ([scene, "-p", "water", "--bands", "0,2"], "out of range"),
        "missing band role": ([nogeo, "-p", "bare soil", "--allow-no-georef"], "swir1"),
        "empty prompt": ([scene, "-p", " "], "empty"),
        "unknown prompt": ([scene, "-p", "lava"], "known prompts"),
        "tile <= 2 x overlap": ([scene, "-p", "water", "--tile", 64, "--overlap", 32], "twice the overlap"),
        "bad threshold": ([scene, "-p", "water", "--threshold", 3], "out of range"),
        "bad band roles syntax": ([scene, "-p", "water", "--band-roles", "green"], "ROLE=INDEX"),
        "unknown model": ([scene, "-p", "water", "--model", "nosuchmodel"], "unknown model"),
        "corrupt block": ([corrupt, "-p", "water", "--tile", 64, "--overlap", 8], "corrupt"),
        "truncated tiff": ([truncated, "-p", "water", "--tile", 64, "--overlap", 8], "corrupt or truncated"),
        "truncated header": ([broken_header, "-p", "water"], "corrupt or truncated"),
    }, d, existing, readonly


def test_bad_inputs_fail_cleanly(tmp_path, scene):
    cases, dest, existing, readonly = _bad_inputs(tmp_path, scene)
    for name, (args, needle) in cases.items():
        before = sorted(p.name for p in dest.iterdir())
        res = run("segment", *args, "--out", dest / "o.gpkg", "--raster", dest / "o.tif", "--quiet")
        assert res.returncode != 0, name
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("geopix-tiles: error:"), (name, res.stderr)
        assert "Traceback" not in res.stderr and needle in lines[0], (name, lines[0])
        assert sorted(p.name for p in dest.iterdir()) == before, name  # nothing written, no temp left
    res = run("segment", scene, "-p", "water", "--out", existing)
    assert res.returncode != 0 and "--overwrite" in res.stderr and existing.read_text() == "keep me"
    if os.geteuid() != 0:  # root ignores permissions
        res = run("segment", scene, "-p", "water", "--out", readonly / "o.gpkg")
        assert res.returncode != 0 and "not writable" in res.stderr
    res = run("segment", scene, "-p", "water", "--out", tmp_path / "nodir" / "o.gpkg")
    assert res.returncode != 0 and "does not exist" in res.stderr
    res = run("segment", scene, "-p", "water", "--out", existing, "--overwrite")
    assert res.returncode == 0 and len(pyogrio.read_dataframe(existing)) == 2


def test_allow_no_georef_gives_pixel_coordinates(tmp_path):
    scene = write_scene(tmp_path / "s.tif", water_scene(64, 64, [(0, 10, 0, 20)]), crs=None, descriptions=RGBN)
    res = run("segment", scene, "-p", "water", "--out", tmp_path / "o.gpkg", "--allow-no-georef")
    assert res.returncode == 0, res.stderr
    gdf = pyogrio.read_dataframe(tmp_path / "o.gpkg")
    assert gdf.crs is None and gdf.geometry.iloc[0].bounds == (0.0, 0.0, 20.0, 10.0)


def test_demo_runs_on_shipped_sample(tmp_path):
    res = run("demo", "--out-dir", tmp_path / "outputs")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "outputs" / "naip_sample.png").stat().st_size > 10_000
    gdf = pyogrio.read_dataframe(tmp_path / "outputs" / "naip_sample.gpkg")
    # which prompts find something is the model's business (the card documents it); the
    # contract is: polygons for the default prompts only, in the scene's CRS, one band per prompt
    assert len(gdf) > 0 and set(gdf["prompt"]) <= {"water", "vegetation"}
    assert gdf.crs.to_epsg() == 26914
    assert (gdf["area_m2"] >= 100).all()
    with rasterio.open(tmp_path / "outputs" / "naip_sample.tif") as ds, \
            rasterio.open(REPO / "geopix_tiles" / "data" / "naip_sample.tif") as src:
        assert ds.descriptions == ("water", "vegetation")
        assert ds.crs == src.crs and ds.transform == src.transform and ds.shape == src.shape


def test_version_flag_and_python_m(capfd):
    import subprocess
    import sys

    import geopix_tiles

    out = subprocess.run([sys.executable, "-m", "geopix_tiles", "--version"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"geopix-tiles {geopix_tiles.__version__}"


def test_verbose_flag_is_accepted_before_the_command(tmp_path, capfd, monkeypatch):
    import os

    from geopix_tiles.interfaces.cli import main

    monkeypatch.delenv("GEOPIX_VERBOSE", raising=False)
    assert main(["-v", "segment", str(tmp_path / "none.tif"), "-p", "water", "--out", str(tmp_path / "o.gpkg")]) == 2
    assert "does not exist" in capfd.readouterr().err
    assert "GEOPIX_VERBOSE" not in os.environ  # -v is for this run only: nothing leaks into later runs


def test_one_scene_segment_process_writes_without_dataframe_stacks(tmp_path, scene):
    """The console entry's segment writes its GeoPackage without importing geopandas/pandas/pyarrow
    (~70 MB of a run's RSS) and exits with main's code; the layer is the one the API writes."""
    probe = ("import sys; from geopix_tiles.interfaces import cli; m = cli.main; "
             "cli.main = lambda: (m(), print('loaded', sorted(x for x in ('geopandas', 'pandas', 'pyarrow') "
             "if x in sys.modules)))[0]; cli.run()")
    out = tmp_path / "water.gpkg"
    res = subprocess.run([sys.executable, "-c", probe, "segment", str(scene), "-p", "water", "--out", str(out),
                          "--tile", "128", "--overlap", "16", "-q"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "loaded []" in res.stdout
    from geopix_tiles import segment

    ref = segment(scene, ["water"], tile=128, overlap=16)
    got = pyogrio.read_dataframe(out)
    assert len(got) == len(ref) == 2 and got.crs == ref.crs
    assert sorted(got.geometry.area.round(6)) == sorted(ref.geometry.area.round(6))
    # a failing run still exits non-zero through the same entry
    bad = subprocess.run([sys.executable, "-c", probe, "segment", str(tmp_path / "none.tif"), "-p", "water",
                          "--out", str(tmp_path / "x.gpkg")], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "does not exist" in bad.stderr and not (tmp_path / "x.gpkg").exists()
