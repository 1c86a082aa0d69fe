"""``geopix-tiles`` command line.

Subcommands register themselves on one parser; user errors (:class:`GeopixError`) print
one line on stderr and exit non-zero without a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Sequence

from ..errors import OutputError, GeopixError, InputError

DEFAULT_SCENE = Path(__file__).resolve().parents[1] / "data" / "naip_sample.tif"


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment a scene for text prompts -> GeoPackage (+ GeoTIFF)",
                       description="Segment SCENE for each --prompt; write polygons (GeoPackage) and optionally a "
                                   "probability/mask raster (GeoTIFF/COG) with the scene's georeference.")
    p.add_argument("scene", nargs="+", help="input raster(s): paths, glob patterns or a .txt list of paths")
    p.add_argument("--prompt", "-p", action="append", required=True, help="what to find; repeat for several")
    p.add_argument("--out", "-o", required=True, help="output polygons: .gpkg, .parquet (GeoParquet), .fgb (FlatGeobuf) or "
                                                              ".geojson; a folder (of .gpkg) when several scenes")
    p.add_argument("--raster", help="optional output GeoTIFF (.tif), one band per prompt; a folder when several scenes")
    p.add_argument("--html", help="one scene: also save an interactive map (scene + polygons) as this .html file")
    p.add_argument("--merge", help="several scenes: also write all polygons with a 'scene' column to one "
                                       "file (.gpkg, .parquet, .fgb or .geojson)")
    p.add_argument("--merge-crs", help="CRS of the merged file (default: the first scene's), e.g. EPSG:4326")
    p.add_argument("--scheduler", help="dask.distributed scheduler ADDRESS, or 'local' for a LocalCluster")
    p.add_argument("--workers", type=int, help="start a LocalCluster with this many worker processes")
    p.add_argument("--model", "-m", default="spectral", help="spectral | default | checkpoint folder (default: spectral)")
    p.add_argument("--bands", help="1-based bands in the order the model expects, e.g. 1,2,3")
    p.add_argument("--band-roles", help="band roles, e.g. red=3,green=2,blue=1,nir=4 (default: band descriptions)")
    p.add_argument("--tile", type=int, help="tile size in pixels (default: the model's)")
    p.add_argument("--overlap", type=int, default=None,
                   help="pixels shared by neighbouring tiles (default 64; 0 for per-pixel models such as spectral)")
    p.add_argument("--batch-size", type=int, default=None, help="tiles per model call (default 8 on a CPU, 64 on a GPU)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the model runs")
    p.add_argument("--threshold", type=float, help="write 0/1 masks at this probability (default: probabilities)")
    p.add_argument("--min-area", type=float, help="drop polygons smaller than this (m^2 when known, else CRS units)")
    p.add_argument("--simplify", type=float, help="simplify polygons with this tolerance (CRS units)")
    p.add_argument("--cog", action="store_true", help="write the raster as a Cloud Optimized GeoTIFF")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run with the same arguments")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--allow-no-georef", action="store_true", help="accept rasters without CRS/transform (pixel coords)")
    p.add_argument("--split-objects", action="store_true",
                   help="cut polygons at the panel grid (4096 px; 12352 px at a GPU's batch of 64) instead of joining "
                        "them across it: flat memory on scenes "
                        "whose fields or forests connect across the whole scene; one field may be several polygons")
    p.add_argument("--resolution", default="auto", metavar="METRES|auto|native",
                   help="ground resolution the model is shown each tile at, in metres per pixel (outputs stay on "
                        "the scene's grid); 'auto' (default): the model's working resolution when the scene is "
                        "finer or coarser (the default model sees building and road prompts on scenes finer than "
                        "0.7 m at 0.9 m, and scenes of 6-60 m at 5 m but at most 2x finer); 'native': never resample")
    p.add_argument("--flips", type=int, default=1, metavar="1|2|4",
                   help="average the model over this many mirrored views of each tile (default 1: off); "
                        "slightly better masks on unseen scenes for 2 or 4 times the model's time")
    p.add_argument("--no-presence-check", dest="presence_check", action="store_false",
                   help="keep every pixel the learned model paints (by default the default model drops a class "
                        "from a tile whose pixels under the mask its presence check does not take for the class)")
    p.add_argument("--mask-clouds", action=argparse.BooleanOptionalAction, default=None,
                   help="report what is seen: no prompt paints ground under the model's own clouds (default: on "
                        "when the model segments clouds, as the default model does, at the cost of one more "
                        "prompt; --mask-clouds insists, --no-mask-clouds keeps every pixel)")
    p.add_argument("--cut-canopy", action=argparse.BooleanOptionalAction, default=None,
                   help="report what is seen under trees: buildings and water do not paint pixels the model sees "
                        "as vegetation (default: on when the model segments vegetation and the scene's pixels are "
                        "6 m or finer; --cut-canopy insists, --no-cut-canopy keeps every building and water pixel)")
    p.add_argument("--stretch", choices=("auto", "full"), default="auto",
                   help="how a learned model sees the scene's colours: 'auto' (default) stretches each band's "
                        "2-98 %% range to full contrast but keeps a pale, flat scene (white desert, snow) pale; "
                        "'full' stretches every scene fully, which undoes a strong veil of haze")
    p.add_argument("--skip-bad-tiles", action="store_true",
                   help="turn blocks that fail to decode into nodata (listed in the summary) instead of stopping")
    p.add_argument("--checkpoint-seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_segment)


def _run_segment(args: argparse.Namespace) -> int:
    from ..api import segment  # noqa: PLC0415 - keeps `--help` fast
    from ..scale.batch import expand_scenes  # noqa: PLC0415

    scenes = expand_scenes(args.scene)
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers {args.workers} must be at least 1")
    if len(scenes) > 1 or args.merge or Path(args.out).is_dir() or args.scheduler or args.workers:
        return _run_many(args, scenes)
    html = Path(args.html) if args.html else None
    if html is not None:
        if html.suffix.lower() != ".html":
            raise InputError(f"--html '{html}' must end with .html")
        if html.exists() and not args.overwrite:
            raise OutputError(f"'{html}' already exists; pass --overwrite to replace it or choose another --html")
        from .explore import _folium  # noqa: PLC0415

        _folium()  # fail before the run when folium is missing
    elif _OWN_PROCESS:
        from ..outputs.vector_formats import FORMATS  # noqa: PLC0415

        if FORMATS.get(Path(args.out).suffix.lower()) != "Parquet":
            _import_pyogrio_lean()  # nothing after this reads a dataframe (the API returns no frame)
    _, stats = segment(
        scenes[0], args.prompt, model=args.model, out=args.out, raster_out=args.raster, bands=args.bands,
        band_roles=args.band_roles, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
        device=args.device, threshold=args.threshold, min_area=args.min_area, simplify=args.simplify,
        cog=args.cog, resume=args.resume, overwrite=args.overwrite, allow_no_georef=args.allow_no_georef,
        checkpoint_seconds=args.checkpoint_seconds, progress=not args.quiet, return_stats=True, collect=None,
        skip_bad_tiles=args.skip_bad_tiles, split_objects=args.split_objects, resolution=args.resolution,
        flips=args.flips, presence_check=args.presence_check, mask_clouds=args.mask_clouds, stretch=args.stretch,
        cut_canopy=args.cut_canopy,
    )
    _summary(stats, args)
    if html is not None:
        from .explore import explore, save_html  # noqa: PLC0415
        from ..outputs.vector_formats import read_vectors  # noqa: PLC0415

        from ..io.scene import open_scene  # noqa: PLC0415

        shown = open_scene(scenes[0], allow_no_georef=args.allow_no_georef).path  # URLs and STAC Items too
        save_html(explore(shown, read_vectors(args.out)), html)
        print(f"map -> {html}")
    return 0


def _run_many(args: argparse.Namespace, scenes) -> int:
    from ..scale.batch import segment_scenes  # noqa: PLC0415

    all_stats = segment_scenes(
        scenes, args.prompt, model=args.model, out_dir=args.out, raster_dir=args.raster, merge=args.merge,
        merge_crs=args.merge_crs, scheduler=args.scheduler, workers=args.workers, device=args.device,
        overwrite=args.overwrite, resume=args.resume, progress=not args.quiet, bands=args.bands,
        band_roles=args.band_roles, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
        threshold=args.threshold, min_area=args.min_area, simplify=args.simplify, cog=args.cog,
        allow_no_georef=args.allow_no_georef, checkpoint_seconds=args.checkpoint_seconds,
        skip_bad_tiles=args.skip_bad_tiles, split_objects=args.split_objects, resolution=args.resolution,
        flips=args.flips, presence_check=args.presence_check, mask_clouds=args.mask_clouds, stretch=args.stretch,
        cut_canopy=args.cut_canopy,
    )
    for stats in all_stats:
        _summary(stats, args)
    if args.merge:
        print(f"merged {sum(s.features for s in all_stats)} polygons from {len(all_stats)} scenes -> {args.merge}")
    return 0


def _summary(stats, args: argparse.Namespace) -> None:
    outputs = ", ".join(x for x in (stats.extra["out"], stats.extra["raster"]) if x)
    rate = stats.tiles_total / stats.seconds if stats.seconds else 0.0
    print(
        f"segmented {Path(stats.extra['scene']).name} ({stats.extra['width']}x{stats.extra['height']} px, "
        f"{stats.tiles_total} tiles, {stats.tiles_skipped} nodata-skipped) for {len(args.prompt)} prompt(s) "
        f"in {stats.seconds:.1f}s ({rate:.1f} tiles/s): {stats.features} polygons -> {outputs}"
    )
    bad = stats.extra.get("bad_windows") or []
    if bad:
        listed = "; ".join(f"col {w.col_off} row {w.row_off} size {w.width}x{w.height}" for w in bad[:20])
        print(f"skipped {len(bad)} unreadable block(s), written as nodata: {listed}{' ...' if len(bad) > 20 else ''}")
    if stats.extra.get("read_at_m"):
        shown = ", ".join(stats.extra.get("read_at_prompts") or [])
        print(f"the model saw the scene at {stats.extra['read_at_m']:.3g} m per pixel for {shown} (its working "
              "resolution; outputs on the scene's grid); --resolution native shows it the scene's own")
    if stats.extra.get("flips", 1) > 1:
        print(f"probabilities are the mean of {stats.extra['flips']} mirrored views of each tile (--flips)")
    for line in stats.extra.get("prompt_readings") or []:
        print(line)
    if stats.extra.get("mask_clouds"):
        print("pixels under the model's clouds are taken out of every other prompt (--no-mask-clouds keeps them)")
    if stats.extra.get("cut_canopy"):
        listed = ", ".join(repr(p) for p in stats.extra["cut_canopy"])
        print(f"pixels the model sees as vegetation are taken out of {listed} (--no-cut-canopy keeps them)")
    cut = {p: c for p, c in (stats.extra.get("tile_cuts") or {}).items() if c[0]}
    if cut:
        listed = ", ".join(f"{p!r} from {n} of {total}" for p, (n, total) in cut.items())
        print(f"the presence check cut {listed} model tiles, where the pixels under the mask did not look like the "
              "class (tiles are judged one by one, so an object can stop at a tile edge); --no-presence-check keeps "
              "every pixel the model paints")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment the shipped NAIP sample scene (the README's main job): GeoPackage, "
                                    "GeoTIFF and a PNG picture")
    p.add_argument("--out-dir", default="outputs", help="folder for the outputs (default ./outputs)")
    p.add_argument("--model", "-m", default="default", help="default (shipped GeoPix checkpoint) | spectral | checkpoint folder")
    p.add_argument("--prompt", "-p", action="append", help="prompts (default: water, vegetation: what the model is measured to find at 5 m)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_run_demo)


#: what the default model is measured to find on the 5 m NAIP sample (water and vegetation agree with NDWI / NDVI
#: at IoU 0.80 / 0.79); it learned buildings and roads only from imagery of 1.5 m or finer, and on this scene
#: "buildings" painted bright bare fields (benchmarks/results/default_model_naip.png before 2026-12-06)
DEMO_PROMPTS = ("water", "vegetation")


def _run_demo(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = DEFAULT_SCENE.stem
    ns = build_parser().parse_args([
        "segment", str(DEFAULT_SCENE), "--out", str(out_dir / f"{stem}.gpkg"), "--raster", str(out_dir / f"{stem}.tif"),
        "--model", args.model, "--device", args.device, "--overwrite", "--min-area", "100",
        *[a for p in (args.prompt or DEMO_PROMPTS) for a in ("--prompt", p)],
    ])
    code = _run_segment(ns)
    png = out_dir / f"{stem}.png"
    _demo_picture(out_dir / f"{stem}.tif", png, args.model)
    print(f"picture -> {png}")
    return code


def _demo_picture(raster: Path, png: Path, model: str) -> None:
    """The scene beside its masks, drawn with the project's own plotting code."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    from .plot import overlay  # noqa: PLC0415

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    overlay(DEFAULT_SCENE, None, ax=axes[0], legend=False, title="NAIP sample (R,G,B)")
    overlay(DEFAULT_SCENE, str(raster), ax=axes[1], max_pixels=700, title=f"--model {model}")
    fig.tight_layout()
    fig.savefig(png, dpi=60)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="geopix-tiles", description="Pixel-level answers from vision-language models over whole satellite scenes.")
    parser.add_argument("--version", action="version", version=f"geopix-tiles {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show GDAL, transformers and library messages (same as GEOPIX_VERBOSE=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_segment(sub)
    _add_demo(sub)
    from . import cli_regions  # noqa: PLC0415

    cli_regions.register(sub)
    try:
        from ..training import cli as training_cli  # noqa: PLC0415
    except ImportError:
        training_cli = None
    if training_cli is not None and hasattr(training_cli, "register"):
        training_cli.register(sub)
    return parser


def _quiet_libraries() -> None:
    """Errors reach the user as one line of ours: GDAL/libtiff chatter and library warnings
    (which GDAL prints from worker threads where rasterio's handler is not installed) are
    silenced unless ``-v`` or GEOPIX_VERBOSE asks for them."""
    os.environ.setdefault("CPL_LOG", os.devnull)
    warnings.filterwarnings("ignore", message=".*no geotransform.*")
    warnings.filterwarnings("ignore", category=UserWarning, module="rasterio")
    for name in ("rasterio", "distributed", "fiona", "pyogrio"):
        log = logging.getLogger(name)
        log.addHandler(logging.NullHandler())
        log.propagate = False


@contextlib.contextmanager
def _native_stderr_silenced(verbose: bool = False):
    """libtiff writes some errors straight to file descriptor 2; point it at /dev/null while
    Python's own stderr (our messages, progress bars, tracebacks of real bugs) keeps the
    terminal."""
    if verbose:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    old = sys.stderr
    try:
        swap = old.fileno() == 2  # a stream on fd 2 must follow the terminal, not /dev/null
    except (AttributeError, OSError, ValueError):
        swap = False  # e.g. pytest's capsys: unaffected by fd 2
    if swap:
        sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if swap:
            sys.stderr.close()
            sys.stderr = old


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras and isinstance(getattr(args, "question", None), list) and not any(e.startswith("-") for e in extras):
        # `ask scene --allow-no-georef "q1" "q2"`: argparse gives a positional list only the words before
        # the first option; the questions after it are questions too, in the order given
        args.question = [*args.question, *extras]
    elif extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    verbose = bool(args.verbose or os.environ.get("GEOPIX_VERBOSE"))
    if not verbose:
        _quiet_libraries()
    with _native_stderr_silenced(verbose):
        try:
            return int(args.func(args) or 0)
        except GeopixError as exc:
            print(f"geopix-tiles: error: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            print("geopix-tiles: interrupted; rerun the same command with --resume to continue", file=sys.stderr)
            return 130


#: pyogrio imports these at its own import only to detect optional features; a one-scene
#: ``segment`` writes OGR outputs through ``pyogrio.raw`` with numpy arrays and needs none of
#: them (~70 MB of RSS)
_PYOGRIO_OPTIONAL = ("geopandas", "pandas", "pyarrow")
#: set by :func:`run`: this process is the CLI's own, not a user's session or a test
_OWN_PROCESS = False


def _import_pyogrio_lean() -> None:
    """Import pyogrio with its optional dataframe stacks hidden.

    pyogrio then records geopandas/pandas/pyarrow as absent for the whole process (its
    dataframe functions would refuse), which a library must never do to a user's session:
    only a process started by :func:`run`, for a one-scene ``segment`` without GeoParquet or
    map output, does it. The modules themselves stay importable afterwards.
    """
    if "pyogrio" in sys.modules:
        return
    hidden = [name for name in _PYOGRIO_OPTIONAL if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import pyogrio.raw  # noqa: F401, PLC0415
    finally:
        for name in hidden:
            sys.modules.pop(name, None)


def run() -> None:
    """The console entry point: :func:`main`, then the process ends without interpreter teardown.

    When ``main`` returns, every output is committed (closed and renamed into place) and every
    scratch folder removed, so teardown has nothing left to do for the job; it would only run
    the static destructors of torch's and GDAL's libraries, which page ~130 MB of library code
    back in (the job's peak RSS under ``/usr/bin/time``) and cost seconds of wall time. An
    exception that escapes ``main`` (argparse's exits included) takes the normal path.
    """
    global _OWN_PROCESS
    _OWN_PROCESS = True
    code = main()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
