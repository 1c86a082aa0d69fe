"""``geopix-tiles describe`` and ``geopix-tiles ask``: the region/chat paths on the command line.

Both call the same functions as the Python API (:mod:`geopix_tiles.regions`), so the CLI,
``GeoDataFrame.geopix.describe`` and ``DataArray.geopix.describe/ask`` give the same
answers. Everything is validated before the model is loaded, and outputs are written to a
temporary file and renamed, so bad input leaves nothing behind.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["register", "read_regions", "run_describe", "run_ask"]


def register(subparsers: Any) -> None:
    """Add ``describe`` and ``ask`` to an argparse subparsers object."""
    d = subparsers.add_parser(
        "describe", help="describe polygons in words: adds category and description columns",
        description="For every polygon of REGIONS, crop a context window of SCENE around it and ask the GeoPix model "
                    "what it is. Writes every input polygon, in the input's CRS, with its attributes plus "
                    "'category' and 'description'.")
    d.add_argument("scene", help="input raster (GeoTIFF)")
    d.add_argument("regions", help="polygons (GeoPackage, GeoJSON, Shapefile, ...)")
    d.add_argument("--out", "-o", required=True, help="output GeoPackage (.gpkg)")
    d.add_argument("--layer", help="layer of REGIONS to read (needed when it has several)")
    _common(d)
    d.add_argument("--batch-size", type=int, default=8, help="polygons per model call (default 8)")
    d.add_argument("--context", type=float, default=0.5,
                   help="context padding around each polygon, as a fraction of its size (default 0.5)")
    d.set_defaults(func=run_describe)

    a = subparsers.add_parser(
        "ask", help="ask a free-form question about a scene (or a bbox of it); optional masks -> GeoPackage",
        description="Ask the GeoPix model a question about SCENE, or the --bbox part of it; prints the answer and "
                    "optionally writes the masks in the answer as polygons in the scene CRS.")
    a.add_argument("scene", help="input raster (GeoTIFF)")
    a.add_argument("question", help="the question, quoted")
    a.add_argument("--bbox", help="minx,miny,maxx,maxy in the scene CRS (default: the whole scene)")
    a.add_argument("--out", "-o", help="output GeoPackage (.gpkg) for the masks in the answer")
    _common(a)
    a.set_defaults(func=run_ask)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default="default", help="default | checkpoint folder (default: default)")
    p.add_argument("--bands", help="1-based red,green,blue bands, e.g. 1,2,3 (default: from band descriptions)")
    p.add_argument("--band-roles", help="band roles, e.g. red=1,green=2,blue=3")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the model runs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")


def read_regions(path: str | Path, layer: str | None = None):
    """Read a vector file into a GeoDataFrame, with one-line errors for what users get wrong."""
    import geopandas as gpd  # noqa: PLC0415
    import pyogrio  # noqa: PLC0415

    p = Path(path)
    if not p.exists():
        raise InputError(f"regions '{path}' do not exist; check the path")
    if p.is_dir() and p.suffix.lower() not in (".gdb",):
        raise InputError(f"regions '{path}' is a directory; pass a vector file such as a GeoPackage")
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(p)]
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise InputError(f"regions '{path}' could not be opened as a vector file "
                         f"({' '.join(str(exc).split())[:160]}); pass a GeoPackage, GeoJSON or Shapefile") from None
    if not layers:
        raise InputError(f"regions '{path}' has no layers; pass a file with polygons")
    if layer is None and len(layers) > 1:
        raise InputError(f"regions '{path}' has {len(layers)} layers ({', '.join(layers[:6])}); choose one with --layer")
    if layer is not None and layer not in layers:
        raise InputError(f"regions '{path}' has no layer '{layer}'; its layers are {', '.join(layers[:6])}")
    try:
        frame = gpd.read_file(p, layer=layer or layers[0], engine="pyogrio")
    except Exception as exc:
        raise InputError(f"reading regions '{path}' failed ({' '.join(str(exc).split())[:160]})") from None
    if not len(frame):
        raise InputError(f"regions '{path}'{f' layer {layer}' if layer else ''} is empty; pass a file with polygons")
    if frame.geometry.isna().all() or frame.geometry.is_empty.all():
        raise InputError(f"regions '{path}' has no geometries; pass a file with polygons")
    return frame


def run_describe(args: argparse.Namespace) -> int:
    from .api import _check_destination  # noqa: PLC0415 - same destination rules as `segment`
    from .regions import describe_regions, write_gpkg_atomic  # noqa: PLC0415

    out = Path(args.out)
    _check_destination(out, (".gpkg",), "--out", args.overwrite, False)
    if out.exists() and Path(args.regions).exists() and out.resolve() == Path(args.regions).resolve():
        raise InputError("--out is the regions file itself; write the descriptions to another file")
    frame = read_regions(args.regions, args.layer)
    result = describe_regions(frame, args.scene, args.model, batch_size=args.batch_size, context=args.context,
                              device=args.device, bands=args.bands, band_roles=args.band_roles)
    write_gpkg_atomic(result, out, layer=out.stem)
    described = int(result["category"].notna().sum())
    print(f"described {described} of {len(result)} region(s) of {Path(args.regions).name} on "
          f"{Path(args.scene).name} -> {out}")
    return 0


def run_ask(args: argparse.Namespace) -> int:
    from .regions import ask_scene, parse_bbox, write_gpkg_atomic  # noqa: PLC0415

    out = Path(args.out) if args.out else None
    if out is not None:
        from .api import _check_destination  # noqa: PLC0415

        _check_destination(out, (".gpkg",), "--out", args.overwrite, False)
    parse_bbox(args.bbox)  # fail on a malformed bbox before loading the model
    answer = ask_scene(args.scene, args.question, args.model, bbox=args.bbox, device=args.device, bands=args.bands,
                       band_roles=args.band_roles)
    print(answer.text)
    if out is not None:
        write_gpkg_atomic(answer.masks, out, layer=out.stem, geometry_type="MultiPolygon", promote_to_multi=True)
        print(f"{len(answer.masks)} mask(s) -> {out}")
    return 0
