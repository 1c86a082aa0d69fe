"""The bad-input catalogue: every case fails with one line naming the problem, a non-zero exit
(CLI) or a GeopixError subclass (Python), no traceback, and nothing written at the destination."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import geopix_tiles
from geopix_tiles.errors import GeopixError, InputError, OutputError
from conftest import RGBN, water_scene, write_scene


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    f = {"dir": d}
    f["scene"] = write_scene(d / "scene.tif", water_scene(96, 96, [(10, 40, 10, 40)]), descriptions=RGBN)
    f["nogeo"] = write_scene(d / "nogeo.tif", water_scene(32, 32, []), crs=None, descriptions=RGBN)
    f["text"] = d / "notes.tif"
    f["text"].write_text("not a raster")
    f["pickle_file"] = d / "model.pt"
    f["pickle_file"].write_bytes(b"\x80\x04K\x01.")
    ck = d / "pickled_ckpt"
    ck.mkdir()
    (ck / "config.json").write_text("{}")
    (ck / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")
    f["pickled_ckpt"] = ck
    remote = d / "remote_ckpt"
    remote.mkdir()
    (remote / "config.json").write_text(json.dumps({"trust_remote_code": True, "auto_map": {"AutoModel": "x.Y"}}))
    (remote / "model.safetensors").write_bytes(b"")
    f["remote_ckpt"] = remote
    escape = d / "escape_ckpt"
    escape.mkdir()
    (escape / "config.json").write_text(json.dumps({"llm_path": "../../etc"}))
    (escape / "model.safetensors").write_bytes(b"")
    f["escape_ckpt"] = escape
    noconf = d / "noconf_ckpt"
    noconf.mkdir()
    f["noconf_ckpt"] = noconf
    badjson = d / "badjson_ckpt"
    badjson.mkdir()
    (badjson / "config.json").write_text("{not json")
    (badjson / "model.safetensors").write_bytes(b"")
    f["badjson_ckpt"] = badjson
    f["yaml_bad"] = d / "bad.yaml"
    f["yaml_bad"].write_text("steps: [1, 2\n")
    f["yaml_unknown"] = d / "unknown.yaml"
    f["yaml_unknown"].write_text("data:\n  train: x.jsonl\nfrobnicate: 3\n")
    f["regions_empty"] = d / "empty.gpkg"
    f["regions_empty"].write_bytes(b"")
    f["exists"] = d / "exists.gpkg"
    f["exists"].write_text("keep")
    return f


def cli_cases(f):
    s = f["scene"]
    return {
        # rasters
        "missing scene": (["segment", f["dir"] / "nope.tif", "-p", "water"], "does not exist"),
        "not a raster": (["segment", f["text"], "-p", "water"], "not a raster"),
        "raster without georeference": (["segment", f["nogeo"], "-p", "water"], "--allow-no-georef"),
        "band out of range": (["segment", s, "-p", "water", "--band-roles", "green=2,nir=7"], "out of range"),
        "band role the scene lacks": (["segment", s, "-p", "snow"], "swir1"),
        "glob matching nothing": (["segment", str(f["dir"] / "*.nothing"), "-p", "water"], "matches no file"),
        # prompts
        "empty prompt": (["segment", s, "-p", ""], "empty"),
        "unknown spectral prompt": (["segment", s, "-p", "unicorns"], "known prompts"),
        "a learned class asked of the spectral default": (["segment", s, "-p", "buildings"], "add --model default"),
        "duplicate prompt": (["segment", s, "-p", "water", "-p", "water"], "twice"),
        # options
        "tile <= 2 x overlap": (["segment", s, "-p", "water", "--tile", "64", "--overlap", "40"], "twice the overlap"),
        "threshold out of range": (["segment", s, "-p", "water", "--threshold", "1.5"], "out of range"),
        "negative min-area": (["segment", s, "-p", "water", "--min-area", "-1"], "out of range"),
        "batch size 0": (["segment", s, "-p", "water", "--batch-size", "0"], "out of range"),
        "malformed band roles": (["segment", s, "-p", "water", "--band-roles", "nir:4"], "ROLE=INDEX"),
        "zero workers": (["segment", s, "-p", "water", "--workers", "0"], "at least 1"),
        "bad merge CRS": (["segment", s, "-p", "water", "--merge", f["dir"] / "m.gpkg", "--merge-crs", "EPSG:0"],
                          "not a CRS"),
        # checkpoints / models
        "unknown model name": (["segment", s, "-p", "water", "--model", "gpt-9"], "unknown model"),
        "model given as a pickle file": (["segment", s, "-p", "water", "--model", f["pickle_file"]], "file"),
        "checkpoint with pickled weights": (["segment", s, "-p", "building", "--model", f["pickled_ckpt"]], "pickle"),
        "checkpoint asking for remote code": (["segment", s, "-p", "building", "--model", f["remote_ckpt"]],
                                              "remote code"),
        "checkpoint path escaping its folder": (["segment", s, "-p", "building", "--model", f["escape_ckpt"]],
                                                "outside the checkpoint"),
        "checkpoint without config": (["segment", s, "-p", "building", "--model", f["noconf_ckpt"]], "config.json"),
        "checkpoint with corrupt config": (["segment", s, "-p", "building", "--model", f["badjson_ckpt"]], "JSON"),
        # configs
        "training config missing": (["train", f["dir"] / "missing.yaml"], "does not exist"),
        "training config not YAML": (["train", f["yaml_bad"]], "not valid YAML"),
        "training config unknown key": (["train", f["yaml_unknown"]], "unknown key"),
        # vectors
        "regions file not a GeoPackage": (["describe", s, f["regions_empty"], "--out", "OUT"], "vector file"),
    }


@pytest.mark.parametrize("name", list(cli_cases({k: Path("x") for k in (
    "dir", "scene", "nogeo", "text", "pickle_file", "pickled_ckpt", "remote_ckpt", "escape_ckpt", "noconf_ckpt",
    "badjson_ckpt", "yaml_bad", "yaml_unknown", "regions_empty", "exists")})))
def test_cli_bad_input(files, tmp_path, name):
    args, needle = cli_cases(files)[name]
    dest = tmp_path / "dest"
    dest.mkdir()
    args = [str(dest / "o.gpkg") if a == "OUT" else str(a) for a in args]
    if args[0] == "segment" and "--out" not in args:
        args += ["--out", str(dest / "o.gpkg"), "--raster", str(dest / "o.tif")]
    res = subprocess.run([sys.executable, "-m", "geopix_tiles", *args, *(["-q"] if args[0] == "segment" else [])],
                         capture_output=True, text=True, timeout=300)
    lines = res.stderr.strip().splitlines()
    assert res.returncode != 0, name
    assert len(lines) == 1 and lines[0].startswith("geopix-tiles: error:"), (name, res.stderr)
    assert "Traceback" not in res.stderr
    assert needle in lines[0], (name, lines[0])
    assert list(dest.iterdir()) == [], name


def test_cli_existing_output_is_kept(files):
    res = subprocess.run([sys.executable, "-m", "geopix_tiles", "segment", str(files["scene"]), "-p", "water",
                          "--out", str(files["exists"]), "-q"], capture_output=True, text=True)
    assert res.returncode == 3 and "--overwrite" in res.stderr and files["exists"].read_text() == "keep"


def api_cases(f):
    s = f["scene"]
    return {
        "no prompts": (lambda: geopix_tiles.segment(s, []), InputError, "no prompt"),
        "prompt not text": (lambda: geopix_tiles.segment(s, [3]), InputError, "empty"),
        "bands not numbers": (lambda: geopix_tiles.segment(s, "water", bands="a,b"), InputError, "band numbers"),
        "wrong number of bands": (lambda: geopix_tiles.segment(s, "water", bands=[2]), InputError, "needs 2"),
        "model object without predict": (lambda: geopix_tiles.segment(s, "water", model=object()), InputError,
                                         "predict"),
        "bad device": (lambda: geopix_tiles.segment(s, "water", device="tpu"), InputError, "device"),
        "out with wrong suffix": (lambda: geopix_tiles.segment(s, "water", out=f["dir"] / "o.shp"), InputError, ".gpkg"),
        "out into a missing folder": (lambda: geopix_tiles.segment(s, "water", out=f["dir"] / "no" / "o.gpkg"),
                                      OutputError, "does not exist"),
        "same file for both outputs": (lambda: geopix_tiles.segment(s, "water", out=f["dir"] / "same.gpkg",
                                                                    raster_out=f["dir"] / "same.gpkg"), InputError,
                                       "different"),
        "accessor array without x/y": (lambda: xr.DataArray(np.zeros((2, 3, 4)), dims=("band", "a", "b"))
                                       .geopix.segment("water"), InputError, "needs y and x"),
        "dataset without bands": (lambda: xr.Dataset({"t": ("time", [1, 2])}).geopix.segment("water"), InputError,
                                  "no (y, x) variables"),
        "to_polygons threshold": (lambda: xr.DataArray(np.zeros((1, 4, 4), np.float32), dims=("prompt", "y", "x"),
                                                       coords={"prompt": ["a"]}).geopix.to_polygons(threshold=2),
                                  InputError, "out of range"),
    }


@pytest.mark.parametrize("name", list(api_cases({"scene": Path("x"), "dir": Path("x")})))
def test_api_bad_input(files, name):
    fn, exc_type, needle = api_cases(files)[name]
    before = sorted(p.name for p in files["dir"].iterdir())
    with pytest.raises(exc_type) as info:
        fn()
    assert isinstance(info.value, GeopixError)
    msg = str(info.value)
    assert "\n" not in msg and needle in msg, msg
    assert sorted(p.name for p in files["dir"].iterdir()) == before
