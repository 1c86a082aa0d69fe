"""DataArray/Dataset accessors: same pixels as the CLI, lazy, chunking-independent."""
from __future__ import annotations

import dask.array as da
from pathlib import Path
import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr

import geopix_tiles
from geopix_tiles import segment
from conftest import RGBN, water_scene, write_scene

BOXES = [(10, 60, 20, 140), (70, 150, 90, 110), (120, 125, 0, 200)]


@pytest.fixture
def scene(tmp_path):
    data = water_scene(160, 210, BOXES)
    data[:, 0:8, 150:] = 0
    return write_scene(tmp_path / "s.tif", data, nodata=0, descriptions=RGBN)


def _cli_raster(scene, tmp_path, **opts):
    segment(scene, ["water", "vegetation"], raster_out=tmp_path / "cli.tif", vectorize=False, **opts)
    with rasterio.open(tmp_path / "cli.tif") as r:
        return r.read(), r.read_masks(1) > 0


@pytest.mark.parametrize("chunks", [{"x": 50, "y": 37}, {"x": 210, "y": 160}, {"x": 64, "y": 100}])
def test_accessor_equals_cli_raster_for_any_chunking(scene, tmp_path, chunks):
    opts = dict(tile=64, overlap=16, batch_size=3)
    cli, valid = _cli_raster(scene, tmp_path, **opts)
    arr = rioxarray.open_rasterio(scene, chunks=chunks)
    probs = arr.geopix.segment(["water", "vegetation"], **opts)
    assert probs.dims == ("prompt", "y", "x") and isinstance(probs.data, da.Array)
    assert probs.rio.crs == arr.rio.crs and probs.rio.transform() == arr.rio.transform()
    np.testing.assert_array_equal(probs["x"], arr["x"])
    got = (probs.values * np.float32(255) + np.float32(0.5)).astype(np.uint8)
    np.testing.assert_array_equal(got[:, valid], cli[:, valid])


def test_in_memory_array_and_dataset(scene, tmp_path):
    cli, valid = _cli_raster(scene, tmp_path, tile=64, overlap=16)
    arr = rioxarray.open_rasterio(scene).load()
    got = arr.geopix.segment(["water", "vegetation"], tile=64, overlap=16).values
    np.testing.assert_array_equal((got * np.float32(255) + np.float32(0.5)).astype(np.uint8)[:, valid], cli[:, valid])
    ds = xr.Dataset({name: arr.isel(band=i, drop=True) for i, name in enumerate(RGBN)})
    ds = ds.rio.write_crs(arr.rio.crs)
    for v in ds.data_vars:
        ds[v] = ds[v].rio.write_nodata(0)
    from_ds = ds.geopix.segment("water", tile=64, overlap=16).values[0]
    np.testing.assert_array_equal(from_ds, got[0])


def test_an_array_without_band_roles_is_told_the_python_fix(scene):
    """A bare array names itself and the keyword to pass, not a file and a CLI flag."""
    from geopix_tiles.errors import InputError

    bare = xr.DataArray(np.zeros((4, 32, 32), np.uint16), dims=("band", "y", "x"),
                        coords={"band": [1, 2, 3, 4], "y": np.arange(32.0), "x": np.arange(32.0)})
    with pytest.raises(InputError) as err:
        bare.geopix.segment("water")
    msg = str(err.value)
    assert "'the DataArray' does not describe" in msg and "band_roles={'green': 1, 'nir': 2}" in msg
    assert "--band-roles" not in msg
    probs = bare.geopix.segment("water", band_roles={"green": 2, "nir": 4}, tile=32, overlap=0)
    assert probs.shape == (1, 32, 32)


def test_building_the_graph_reads_no_pixels(scene):
    arr = rioxarray.open_rasterio(scene, chunks={"x": 64, "y": 64})

    def explode(block):
        raise AssertionError("pixels were read while building the graph")

    poisoned = arr.copy(data=arr.data.map_blocks(explode, dtype=arr.dtype))
    probs = poisoned.geopix.segment("water", tile=64, overlap=16)
    assert isinstance(probs.data, da.Array)
    with pytest.raises(AssertionError, match="pixels were read"):
        probs.compute()


def test_to_polygons_matches_cli_polygons(scene, tmp_path):
    cli = segment(scene, "water", tile=64, overlap=16)
    probs = rioxarray.open_rasterio(scene, chunks={"x": 80, "y": 45}).geopix.segment("water", tile=64, overlap=16)
    gdf = probs.geopix.to_polygons()
    assert len(gdf) == len(cli) == 2 and gdf.crs == cli.crs
    assert sorted(gdf["pixels"]) == sorted(cli["pixels"])
    assert sorted(np.round(gdf.area, 6)) == sorted(np.round(cli.area, 6))


def test_rgb_tagged_only_by_colour_interpretation_works_in_the_accessor(tmp_path):
    """Issue 13: an RGB GeoTIFF with colour interpretation but no band descriptions (like rasterio's
    RGB.byte.tif) gives the accessor the same band roles as the CLI, also for a reordered subset."""
    pytest.importorskip("torch")
    from rasterio.enums import ColorInterp

    rng = np.random.default_rng(0)
    data = rng.integers(0, 255, (3, 96, 120), dtype=np.uint8)
    path = write_scene(tmp_path / "rgb.tif", data)
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    arr = rioxarray.open_rasterio(path, chunks={"x": 50, "y": 40})
    assert arr.attrs.get("long_name") is None  # nothing but the colour tags says which band is which
    from geopix_tiles.io.arrays import colorinterp

    assert colorinterp(arr) == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    assert colorinterp(arr.isel(band=[2, 0])) == (ColorInterp.blue, ColorInterp.red)
    # (0.5 m pixels: read natively here, the auto resolution is tested in test_resolution.py)
    probs = arr.geopix.segment(["water"], model="default", tile=64, overlap=16, resolution="native").values
    assert probs.shape == (1, 96, 120) and np.isfinite(probs).all()
    # reordered bands still resolve to red/green/blue by their tags: the same answer
    again = arr.isel(band=[2, 1, 0]).geopix.segment(["water"], model="default", tile=64, overlap=16,
                                                    resolution="native").values
    np.testing.assert_allclose(again, probs, atol=1e-6)


def test_default_model_accessor_equals_cli_on_a_real_scene_with_misaligned_chunks(tmp_path):
    """Issue 13: with scene-wide unit scaling (the default model) the accessor uses the CLI's own
    statistics, so a real scene chunked across tile boundaries gives the CLI's raster pixel for pixel."""
    pytest.importorskip("torch")
    scene = Path(geopix_tiles.__file__).parent / "data" / "naip_sample.tif"
    segment(scene, ["water", "vegetation"], model="default", raster_out=tmp_path / "cli.tif", vectorize=False,
            collect=False, device="cpu")
    with rasterio.open(tmp_path / "cli.tif") as r:
        cli, valid = r.read(), r.read_masks(1) > 0
    arr = rioxarray.open_rasterio(scene, chunks={"x": 333, "y": 250})  # crosses the 256 px tiles
    probs = arr.geopix.segment(["water", "vegetation"], model="default", device="cpu").values
    got = (probs * np.float32(255) + np.float32(0.5)).astype(np.uint8)
    assert valid.mean() > 0.9
    # equal up to float rounding: a tile's float32 logits depend slightly on the batch it ran in
    # (BLAS blocking), and the blocks batch tiles differently from the CLI's rows
    diff = np.abs(got[:, valid].astype(int) - cli[:, valid].astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4, ((diff > 0).sum(), diff.max())
    # the same statistics as the CLI's, not an estimate from a strided sample
    from geopix_tiles.io.scene import compute_statistics, open_scene, select_bands
    from geopix_tiles.io.arrays import scene_statistics

    ref = compute_statistics(select_bands(open_scene(scene), (1, 2, 3)))
    low, high = scene_statistics(arr, (1, 2, 3)).compute()
    np.testing.assert_array_equal(low, ref.low) and np.testing.assert_array_equal(high, ref.high)


def _native_threads() -> int:
    """OS threads of this process that Python does not know of (OpenMP teams, GDAL's, ...)."""
    import os
    import threading

    python = {t.native_id for t in threading.enumerate()}
    return sum(int(t) not in python for t in os.listdir("/proc/self/task"))


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc")
def test_accessor_compute_leaves_no_thread_teams_in_dask_s_pool_threads():
    """Dask's worker threads live as long as the process; a torch op run in one keeps an OpenMP team
    there for good. Two such teams on two cores made the notebook's next training step 2.6x slower
    (``benchmarks/results/pool_threads.md``), so the model computes on one thread in a pool thread."""
    torch = pytest.importorskip("torch")
    import dask

    if torch.get_num_threads() < 2:
        pytest.skip("one compute thread: no teams to leave")
    scene = Path(geopix_tiles.__file__).parent / "data" / "naip_sample.tif"
    arr = rioxarray.open_rasterio(scene, chunks={"x": 333, "y": 250})
    with dask.config.set(scheduler="synchronous"):  # in this thread: the model, GDAL and the main team start
        ref = arr.geopix.segment(["water"], model="default", device="cpu").values
    before = _native_threads()
    with dask.config.set(scheduler="threads", num_workers=2):
        got = arr.geopix.segment(["water"], model="default", device="cpu").values
    assert _native_threads() == before
    # one compute thread gives the same pixels as the main thread's two (float rounding aside)
    assert np.abs(got - ref).max() < 2e-3 and (got > 0.5).mean() > 0.01


@pytest.mark.parametrize("first", ["geopix_tiles", "xarray", "find_spec"])
def test_accessors_register_whichever_is_imported_first(first):
    """`import geopix_tiles` no longer imports xarray/pandas (0.6 s of a CLI run), yet DataArray.geopix,
    Dataset.geopix and DataFrame.geopix exist as soon as both are imported, in either order.

    ``find_spec``: an availability check (``importlib.util.find_spec("xarray")``, as dask makes)
    between the two imports used to consume the pending registration, so the accessor tests failed
    whenever an earlier test in the same process had made one."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import sys
        if {first!r} in ("geopix_tiles", "find_spec"):
            import geopix_tiles
            assert "xarray" not in sys.modules and "pandas" not in sys.modules
        if {first!r} == "find_spec":
            import importlib.util
            assert importlib.util.find_spec("xarray") and importlib.util.find_spec("pandas")
            assert "xarray" not in sys.modules
        import numpy as np, pandas, xarray
        import geopix_tiles
        a = xarray.DataArray(np.zeros((3, 4, 4)), dims=("band", "y", "x"))
        print(type(a.geopix).__name__, type(a.to_dataset(dim="band").geopix).__name__,
              type(pandas.DataFrame({{"a": [1]}}).geopix).__name__)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1500:]
    assert out.stdout.split() == ["GeopixDataArrayAccessor", "GeopixDatasetAccessor", "GeopixFrameAccessor"]
