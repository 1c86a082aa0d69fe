"""``geopix-tiles describe`` and ``geopix-tiles ask``: the region/chat paths on the command line.

Both call the same functions as the Python API (:mod:`geopix_tiles.answers.regions`,
:mod:`geopix_tiles.answers.conversation`), so the CLI, ``GeoDataFrame.geopix.describe`` and
``DataArray.geopix.describe/ask/chat`` give the same answers. Everything is validated before the model is loaded, and outputs are written to a
temporary file and renamed, so bad input leaves nothing behind.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["register", "read_regions", "read_questions", "parse_window", "run_describe", "run_ask"]


def register(subparsers: Any) -> None:
    """Add ``describe`` and ``ask`` to an argparse subparsers object."""
    d = subparsers.add_parser(
        "describe", help="describe polygons in words: adds category and description columns",
        description="For every polygon of REGIONS, crop a context window of SCENE around it and ask the GeoPix model "
                    "what it is. Writes every input polygon, in the input's CRS, with its attributes plus "
                    "'category' and 'description'.")
    d.add_argument("scene", help="input raster (GeoTIFF)")
    d.add_argument("regions", help="polygons (GeoPackage, GeoJSON, Shapefile, ...)")
    d.add_argument("--out", "-o", required=True, help="output polygons: .gpkg, .parquet, .fgb or .geojson")
    d.add_argument("--layer", help="layer of REGIONS to read (needed when it has several)")
    _common(d)
    d.add_argument("--batch-size", type=int, default=8, help="polygons per model call (default 8)")
    d.add_argument("--context", type=float, default=0.5,
                   help="context padding around each polygon, as a fraction of its size (default 0.5)")
    d.add_argument("--resolution", default="auto", metavar="METRES|auto|native",
                   help="each crop covers at least a model tile at this many metres per pixel, as segment "
                        "--resolution reads scenes (default auto)")
    d.set_defaults(func=run_describe)

    a = subparsers.add_parser(
        "ask", help="ask questions about a scene (or a window of it); masks of the replies -> GeoPackage",
        description="A conversation with the GeoPix model about SCENE, or the --bbox/--window part of it: each "
                    "QUESTION in order (follow-ups such as 'and the roads next to them?' refer to the previous "
                    "reply). Prints each reply and optionally writes every reply's masks as polygons in the "
                    "scene CRS.")
    a.add_argument("scene", help="input raster (GeoTIFF)")
    a.add_argument("question", nargs="*", help="one or more questions, each quoted, asked in order")
    a.add_argument("--conversation", "-c", help="a text file with one question per line (# starts a comment)")
    a.add_argument("--bbox", help="minx,miny,maxx,maxy in the scene CRS (default: the whole scene)")
    a.add_argument("--window", help="col_off,row_off,width,height in pixels (a rasterio Window)")
    a.add_argument("--resolution", default="auto", metavar="METRES|auto|native",
                   help="ground resolution the model is shown, as segment --resolution (default auto)")
    a.add_argument("--out", "-o", help="output file (.gpkg, .parquet, .fgb or .geojson) for the replies' masks")
    a.add_argument("--max-size", type=int, default=1024,
                   help="longest side (pixels) the window is read at; a larger window is read coarser, and replies "
                        "say so (default 1024; memory grows with its square)")
    _common(a)
    a.set_defaults(func=run_ask)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default="default", help="default | checkpoint folder (default: default)")
    p.add_argument("--bands", help="1-based red,green,blue bands, e.g. 1,2,3 (default: from band descriptions)")
    p.add_argument("--band-roles", help="band roles, e.g. red=1,green=2,blue=3")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the model runs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--allow-no-georef", action="store_true",
                   help="accept a raster without CRS/transform (a plain JPEG/PNG chip): pixel coordinates, no m2")
    p.add_argument("--stretch", choices=("auto", "full"), default="auto",
                   help="as segment's: 'auto' (default) keeps a pale, flat scene pale; 'full' stretches every scene "
                        "fully (undoes a strong veil of haze)")


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
    from ..api import _check_destination  # noqa: PLC0415 - same destination rules as `segment`
    from ..answers.regions import describe_regions  # noqa: PLC0415
    from ..outputs.vector_formats import FORMATS, write_atomic  # noqa: PLC0415

    out = Path(args.out)
    _check_destination(out, tuple(FORMATS), "--out", args.overwrite, False)
    if out.exists() and Path(args.regions).exists() and out.resolve() == Path(args.regions).resolve():
        raise InputError("--out is the regions file itself; write the descriptions to another file")
    frame = read_regions(args.regions, args.layer)
    result = describe_regions(frame, args.scene, args.model, batch_size=args.batch_size, context=args.context,
                              device=args.device, bands=args.bands, band_roles=args.band_roles,
                              resolution=args.resolution, allow_no_georef=args.allow_no_georef, stretch=args.stretch)
    write_atomic(result, out, layer=out.stem)
    described = int(result["category"].notna().sum())
    print(f"described {described} of {len(result)} region(s) of {Path(args.regions).name} on "
          f"{Path(args.scene).name} -> {out}")
    return 0


def read_questions(args: argparse.Namespace) -> list[str]:
    """The questions of ``ask`` in order: the positional ones, then the conversation file's lines."""
    questions = [q for q in args.question]
    if args.conversation:
        p = Path(args.conversation)
        if not p.is_file():
            raise InputError(f"conversation file '{p}' does not exist; give a text file with one question per line")
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"conversation file '{p}' could not be read as UTF-8 text ({exc})") from None
        questions += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not questions:
        raise InputError("no question: pass one or more quoted questions or --conversation FILE")
    empty = [i + 1 for i, q in enumerate(questions) if not q.strip()]
    if empty:
        raise InputError(f"question {empty[0]} is empty; ask something such as 'where is the water?'")
    return questions


def parse_window(value: str | None):
    """``"col_off,row_off,width,height"`` -> a rasterio ``Window``."""
    if not value:
        return None
    from rasterio.windows import Window  # noqa: PLC0415

    try:
        c, r, w, h = (int(v) for v in value.split(","))
    except ValueError:
        raise InputError(f"--window '{value}' is not four whole numbers; write col_off,row_off,width,height") from None
    if w <= 0 or h <= 0 or c < 0 or r < 0:
        raise InputError(f"--window '{value}' needs offsets >= 0 and a positive width and height")
    return Window(c, r, w, h)


def run_ask(args: argparse.Namespace) -> int:
    import pandas as pd  # noqa: PLC0415

    from ..answers.conversation import Conversation, parse_bbox  # noqa: PLC0415
    from ..outputs.vector_formats import FORMATS, write_atomic  # noqa: PLC0415

    out = Path(args.out) if args.out else None
    if out is not None:
        from ..api import _check_destination  # noqa: PLC0415

        _check_destination(out, tuple(FORMATS), "--out", args.overwrite, False)
    questions = read_questions(args)
    if args.bbox and args.window:
        raise InputError("give either --bbox or --window, not both")
    window = parse_window(args.window) if args.window else parse_bbox(args.bbox)  # fail before loading the model
    chat = Conversation(args.scene, args.model, window=window, device=args.device, bands=args.bands,
                        band_roles=args.band_roles, resolution=args.resolution, allow_no_georef=args.allow_no_georef,
                        max_size=args.max_size, stretch=args.stretch)
    frames = []
    for i, q in enumerate(questions, start=1):
        reply = chat.ask(q)
        print(reply.text if len(questions) == 1 else f"Q{i}: {q}\nA{i}: {reply.text}")
        frame = reply.masks.copy()
        frame.insert(0, "turn", i)
        frames.append(frame)
    if out is not None:
        import geopandas as gpd  # noqa: PLC0415

        merged = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), geometry="geometry", crs=chat.crs)
        write_atomic(merged, out, layer=out.stem, geometry_type="MultiPolygon", promote_to_multi=True)
        print(f"{len(merged)} mask(s) from {len(questions)} repl{'y' if len(questions) == 1 else 'ies'} -> {out}")
    return 0
