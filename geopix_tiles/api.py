"""``geopix_tiles.segment``: the one entry point the CLI, notebooks and clusters share.

It validates everything that can be validated before touching the destination, runs the
streaming engine into temporary files next to the outputs, and renames them into place only
when complete. Errors the user can fix surface as :class:`GeopixError` with a one-line
message; on any failure the temporary files are removed (a Ctrl-C keeps them for
``--resume``).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import rasterio
from rasterio.errors import RasterioError

from .core.engine import PANEL_WIDTH, StreamingRun, panel_width_for
from .errors import GeopixError, InputError, OutputError, ReadError
from .core.journal import RunJournal, RunLock
from .segmenters.registry import load_segmenter, model_id
from .outputs.commit import RunOutputs
from .outputs.raster_sink import RasterSink
from .io.gdal_cache import DEFAULT_BLOCK_CACHE_MB, block_cache
from .io.scene import compute_statistics, is_remote_scene, open_scene, prepare_scene, stretch_cap
from .segmenters.protocol import Segmenter, default_batch_size, default_overlap, roles_for
from .core.tiling import TileGrid
from .outputs.vector_sink import PolygonSchema, VectorSink

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd


def _check_destination(path: Path | None, suffixes: tuple[str, ...], flag: str, overwrite: bool, resume: bool) -> None:
    if path is None:
        return
    if path.suffix.lower() not in suffixes:
        raise InputError(f"{flag} '{path}' must end with {' or '.join(suffixes)}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder '{parent}' does not exist; create it or choose another {flag}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"output folder '{parent}' is not writable; choose another {flag} or fix its permissions")
    if path.exists() and not overwrite and not resume:
        raise OutputError(f"'{path}' already exists; pass --overwrite to replace it or choose another {flag}")
    if path.is_dir():
        raise OutputError(f"{flag} '{path}' is a directory; pass a file name")


def _check_number(name: str, value, low: float | None = None, high: float | None = None, integer: bool = False):
    if value is None:
        return None
    try:
        v = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} '{value}' is not a number") from None
    if integer and float(value) != v:
        raise InputError(f"{name} {value} must be a whole number")
    if (low is not None and v < low) or (high is not None and v > high):
        rng = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
        raise InputError(f"{name} {value} is out of range; use a value in {rng}")
    return v


def segment(
    scene: str | os.PathLike,
    prompts: str | Sequence[str],
    model: "str | Segmenter | object" = "spectral",
    out: str | os.PathLike | None = None,
    raster_out: str | os.PathLike | None = None,
    *,
    bands: str | Sequence[int] | None = None,
    band_roles: str | Mapping[str, int] | None = None,
    tile: int | None = None,
    overlap: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    threshold: float | None = None,
    min_area: float | None = None,
    simplify: float | None = None,
    cog: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    allow_no_georef: bool = False,
    vectorize: bool = True,
    checkpoint_seconds: float = 10.0,
    progress: bool = False,
    layer: str | None = None,
    return_stats: bool = False,
    collect: bool | None = True,
    gdal_cache_mb: float = DEFAULT_BLOCK_CACHE_MB,
    skip_bad_tiles: bool = False,
    remote=None,
    panel_width: int | str | None = "auto",
    split_objects: bool = False,
    resolution: float | str | None = "auto",
    flips: int = 1,
    presence_check: bool = True,
    mask_clouds: bool | str = "auto",
    stretch: str = "auto",
    cut_canopy: bool | str = "auto",
) -> "gpd.GeoDataFrame":
    """Segment ``scene`` for each prompt; return the polygons as a GeoDataFrame.

    ``out`` (GeoPackage) and ``raster_out`` (GeoTIFF, one band per prompt) are optional;
    with neither, polygons are computed in a temporary folder and only returned. Polygons
    come from probabilities >= ``threshold`` (0.5 when no threshold is given); the raster
    holds probabilities x 255, or 0/1 when ``threshold`` is set. ``overlap`` defaults to 64 px,
    or 0 for a per-pixel model such as ``spectral`` (same values, fewer pixels). ``min_area`` is in square
    metres when the CRS allows it (else CRS units), ``simplify`` in CRS units.
    ``collect=False`` skips loading the polygons back (batch runs on huge scenes) and
    returns an empty frame, ``collect=None`` returns ``None`` instead (a process that only
    writes files then never imports geopandas); ``return_stats=True`` returns ``(frame, RunStats)``.
    ``gdal_cache_mb`` bounds GDAL's block cache for the run, dask workers' reads included (4 MB,
    :data:`~geopix_tiles.io.gdal_cache.DEFAULT_BLOCK_CACHE_MB`; GDAL's own default, 5 % of RAM, is
    often more than the whole engine needs). ``skip_bad_tiles`` turns blocks that fail to
    decode into nodata (listed in the stats) instead of stopping the run. ``remote`` is a
    distributed row source (see :mod:`geopix_tiles.scale.distributed`). ``panel_width`` bounds the
    columns processed at once (memory flat in scene width; ``None`` = whole rows; ``"auto"``: 4096 px,
    or wider when a row of tiles would not fill one model call, see
    :func:`~geopix_tiles.core.engine.panel_width_for`).
    ``split_objects=True`` cuts polygons at a grid of ``panel_width`` (panel seams, and every
    ``panel_width`` rows at the next strip) instead of joining them across it: one field or
    forest may then be several polygons, but memory stays flat on scenes whose fields and
    forests connect across the whole scene (joined, its pieces wait on disk, but the whole
    polygon is built in memory at the end of the run).
    ``resolution`` (metres per pixel) is the ground resolution the model is shown each tile at
    (:mod:`geopix_tiles.segmenters.resampled`), so it sees objects at the sizes it learned; the
    outputs stay on the scene's grid. ``"auto"`` (the default) does so only for a model that
    declares a working resolution, on scenes finer or coarser than it (the default model: building
    and road prompts on scenes finer than 0.7 m are seen at 0.9 m; scenes of 6-60 m, Sentinel-2 and
    Landsat, are seen at 5 m but at most 2x finer, without the tile presence check); ``"native"`` never resamples. ``flips`` (1, 2 or 4) averages the model over
    that many mirrored views of each tile (:mod:`geopix_tiles.segmenters.flipped`): slightly
    better masks on unseen scenes for 2 or 4 times the model's time. ``batch_size`` (tiles per
    model call) defaults to :func:`~geopix_tiles.segmenters.protocol.default_batch_size` (8 on a
    CPU, 64 on a GPU). ``presence_check=False``
    keeps every pixel a learned model paints: by default a model with a presence check (the
    default model) drops a class from a tile whose pixels under the mask do not look like it.
    ``mask_clouds`` reports what is seen: each prompt's probability times the share of ground the
    model's cloud probability on the same tile leaves visible (:mod:`geopix_tiles.segmenters.cloud_masked`),
    so ground classes are not painted under clouds. ``"auto"`` (default): on when the model segments
    clouds (the default model; one more prompt per call), off otherwise; ``True`` needs a model with a
    cloud class; ``False`` keeps every pixel the other prompts paint. ``stretch`` (models that take
    the scene's 2-98 % stretch, as the default model does): ``"auto"`` (default) keeps a pale, flat
    scene pale (the stretch's dark end at most half its bright end: a white desert is not blown up
    into texture), ``"full"`` stretches every scene to the full range, which undoes a strong veil of
    haze (``geopix_tiles.io.scene.MAX_LOW_SHARE``; the trade is in ``benchmarks/results/pale_scene.md``).
    ``cut_canopy`` reports what is seen under tree and grass cover: building and water probabilities
    times the share of the pixel the model's vegetation probability on the same tile leaves visible
    (:mod:`geopix_tiles.segmenters.canopy`), so a crown over a yard is not painted as a building.
    ``"auto"`` (default): on when the model segments vegetation (the default model; one more prompt per
    call unless vegetation is asked for) and the scene's pixels are 6 m or finer (crowns are objects
    there, shares of mixed pixels in coarser ones), off otherwise; ``True`` needs such a model;
    ``False`` keeps every building and water pixel.
    """
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    if not prompts:
        raise InputError("no prompt given; pass at least one --prompt, e.g. --prompt water")
    for p in prompts:
        if not isinstance(p, str) or not p.strip():
            raise InputError("a prompt is empty; pass text such as --prompt water")
    if len(set(prompts)) != len(prompts):
        raise InputError("the same prompt is given twice; pass each --prompt once")
    cap = stretch_cap(stretch)
    out = Path(out) if out is not None else None
    raster_out = Path(raster_out) if raster_out is not None else None
    threshold = _check_number("--threshold", threshold, 0.0, 1.0)
    min_area = _check_number("--min-area", min_area, 0.0)
    simplify = _check_number("--simplify", simplify, 0.0)
    if batch_size is not None:
        batch_size = _check_number("--batch-size", batch_size, 1, 4096, integer=True)
    overlap = _check_number("--overlap", overlap, 0, None, integer=True)
    tile = _check_number("--tile", tile, 16, 65536, integer=True)
    if out is not None and raster_out is not None and out.resolve() == raster_out.resolve():
        raise InputError("--out and --raster must be different files")
    from .outputs.vector_formats import FORMATS  # noqa: PLC0415

    _check_destination(out, tuple(FORMATS), "--out", overwrite, resume)
    _check_destination(raster_out, (".tif", ".tiff"), "--raster", overwrite, resume)

    from .segmenters.canopy import CanopySegmenter, check_cut_canopy, with_canopy_cut  # noqa: PLC0415
    from .segmenters.checked import with_presence_check  # noqa: PLC0415
    from .segmenters.cloud_masked import CloudMaskedSegmenter, check_mask_clouds, with_cloud_mask  # noqa: PLC0415
    from .segmenters.flipped import check_flips, with_flips  # noqa: PLC0415
    from .segmenters.resampled import (coarse_readings, prompt_readings, resolve_resolution,  # noqa: PLC0415
                                       shown_segmenter, shows_finer)

    flips = check_flips(flips)
    mask_clouds = check_mask_clouds(mask_clouds)
    cut_canopy = check_cut_canopy(cut_canopy)
    info = open_scene(scene, allow_no_georef=allow_no_georef)
    resolve_resolution(resolution, info.transform, info.crs)  # a bad resolution fails before the model loads
    base = load_segmenter(model, device=device)
    # the tile check was fitted on the model's own resolutions: on a coarse scene shown finer it vetoes real water
    checked = presence_check and not shows_finer(resolution, info.transform, info.crs, base, info.shape)
    tallied = with_presence_check(base, checked)  # on: it counts the tiles it cuts each prompt from
    seg = with_flips(tallied, flips)  # each view is then shown at read_at
    if batch_size is None:
        batch_size = default_batch_size(seg)
    # the model sees each tile at read_at; the run stays on the scene's grid
    seg, overlap, read_at = shown_segmenter(seg, resolution, info.transform, info.crs, info.shape, overlap, prompts)
    # outermost: the vegetation and cloud prompts are seen at the resolution and in the views the other prompts are
    from .io.ground import pixel_size_m  # noqa: PLC0415

    seg = with_canopy_cut(seg, cut_canopy, pixel_size_m(info.transform, info.crs))
    # "auto" resolved: what the run does, as the prompts it cuts (none: off, or no building or water prompt)
    canopy_cut = [p for p, h in zip(prompts, seg.hidden_prompts(prompts)) if h] if isinstance(seg, CanopySegmenter) else []
    cut_canopy = isinstance(seg, CanopySegmenter)
    seg = with_cloud_mask(seg, mask_clouds)
    mask_clouds = isinstance(seg, CloudMaskedSegmenter)  # "auto" resolved: what the run does
    seg.check_prompts(prompts)
    info = prepare_scene(info, roles_for(seg, prompts), bands, band_roles)  # statistics later, if the model scales
    chosen = info.band_indexes
    if skip_bad_tiles:
        info = replace(info, has_mask=True)  # unreadable blocks become nodata, so the outputs carry a mask
    tile = tile or int(getattr(seg, "tile_size", 512) or 512)
    overlap = default_overlap(seg) if overlap is None else overlap
    grid = TileGrid(info.height, info.width, tile, overlap)
    if panel_width == "auto":
        panel_width = panel_width_for(PANEL_WIDTH, batch_size, tile, overlap)

    primary = out or raster_out
    scratch = None
    if primary is None or (out is None and vectorize):
        scratch = Path(tempfile.mkdtemp(prefix="geopix-"))
    workdir = (primary.parent / f".{primary.name}.geopix-run") if primary is not None else scratch / "run"
    raster_tmp = raster_out.parent / f".{raster_out.name}.partial.tif" if raster_out is not None else None
    journal = RunJournal(workdir)
    lock = RunLock(primary.parent / f".{primary.name}.lock", primary) if primary is not None else None
    if lock is not None:
        lock.acquire()  # a second run to the same destination refuses before touching the first one's files
    try:
        from .io.remote import is_remote, remote_fingerprint  # noqa: PLC0415

        if is_remote(scene):  # the server's size and validators: a changed file does not resume
            source = {"scene": str(scene), "remote": remote_fingerprint(info.path)}
        else:
            source = {"scene": str(Path(scene).resolve()), "scene_size": Path(scene).stat().st_size,
                      "scene_mtime": Path(scene).stat().st_mtime_ns}
        fingerprint = {
            **source, "bands": list(chosen), "prompts": prompts,
            "model": model_id(model), "tile": tile, "overlap": overlap, "threshold": threshold,
            "min_area": min_area, "simplify": simplify, "cog": bool(cog), "vectorize": bool(vectorize),
            "out": str(out.resolve()) if out else None, "raster": str(raster_out.resolve()) if raster_out else None,
            "skip_bad_tiles": bool(skip_bad_tiles), "panel_width": panel_width,
            **({"split_objects": True} if split_objects else {}),  # journals of joined runs stay resumable
            **({"resolution": read_at} if read_at is not None else {}),
            **({"flips": flips} if flips != 1 else {}),  # journals of runs without flips stay resumable
            **({"presence_check": False} if not presence_check else {}),
            **({"mask_clouds": True} if mask_clouds else {}),
            **({"cut_canopy": True} if cut_canopy else {}),
            **({"stretch": stretch} if stretch != "auto" else {}),  # journals of earlier runs stay resumable
        }
        resuming = bool(resume and journal.exists() and (raster_tmp is None or raster_tmp.exists()))
        data = journal.load(fingerprint) if resuming else None
        if not resuming:
            journal.remove()
            if raster_tmp is not None and raster_tmp.exists():
                raster_tmp.unlink()
        if getattr(seg, "scaling", "reflectance") == "unit":
            info = compute_statistics(info, max_low_share=cap)

        raster = RasterSink(raster_out, raster_tmp, info, prompts, threshold, cog) if raster_out is not None else None
        if raster is not None and panel_width:
            # whole output blocks per panel: a block shared by two panels would be written twice,
            # and GDAL may flush a half-written block from another thread (crashes seen)
            block = raster.profile()["blockxsize"]
            panel_width = -(-int(panel_width) // block) * block
        vectors = VectorSink(workdir / "parts", info, prompts, min_area, simplify) if vectorize else None
        bar = None
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    def resumable(exc: BaseException) -> bool:
        # Ctrl-C, or a server that stopped answering: the journal and the partial files stay
        # (hidden) so that --resume continues where the run stopped
        return isinstance(exc, KeyboardInterrupt) or (
            isinstance(exc, ReadError) and is_remote_scene(info) and primary is not None)

    try:
        with RunOutputs(journal, raster, vectors, out, layer, resume=resuming, resumable=resumable):
            run = StreamingRun(
                info, seg, prompts, grid, batch_size=batch_size,
                vector_threshold=threshold if threshold is not None else 0.5, raster=raster, vectors=vectors,
                journal=journal if primary is not None else None, fingerprint=fingerprint,
                checkpoint_seconds=checkpoint_seconds, skip_bad_tiles=skip_bad_tiles, panel_width=panel_width,
                split_objects=split_objects,
                remote=remote.for_scene(info, grid, seg, prompts, batch_size, skip_bad_tiles, gdal_cache_mb)
                if remote is not None else None,
            )
            if data is not None:
                run.restore(data)
            if progress:
                from tqdm.auto import tqdm  # noqa: PLC0415

                bar = tqdm(total=len(grid), initial=run.stats.tiles_done, unit="tile", desc=Path(scene).name,
                           file=sys.stderr, dynamic_ncols=True)
                run.progress = bar.update
            with block_cache(gdal_cache_mb):
                stats = run.run()
            if bar is not None:
                bar.close()
            if collect is None:
                frame = None
            elif vectors is not None and collect:
                frame = vectors.to_geodataframe()
            else:
                frame = PolygonSchema.for_scene(info, prompts).empty_frame()
    except BaseException as exc:
        if bar is not None:
            if not isinstance(exc, KeyboardInterrupt):
                bar.leave = False  # the error line, not a frozen bar, is the last thing the user sees
            bar.close()
        if isinstance(exc, GeopixError) or resumable(exc):
            raise
        if isinstance(exc, (OSError, RasterioError)):
            raise OutputError(f"writing the outputs failed ({' '.join(str(exc).split())[:200]}); "
                              "check free space and permissions of the output folder") from exc
        raise
    finally:
        if lock is not None:
            lock.release()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    shown_at = [p for p, s in zip(prompts, seg.shown(prompts)) if s] if read_at else []
    native_m = pixel_size_m(info.transform, info.crs)
    seen_m = [read_at if p in shown_at else native_m for p in prompts]
    stats.extra.update(scene=str(scene), height=info.height, width=info.width, prompts=prompts, read_at_m=read_at,
                       read_at_prompts=shown_at,
                       out=str(out) if out else None, raster=str(raster_out) if raster_out else None, flips=flips,
                       mask_clouds=mask_clouds, cut_canopy=canopy_cut,
                       prompt_readings=prompt_readings(base, prompts) + coarse_readings(base, prompts, seen_m))
    cuts = getattr(tallied, "cuts", None) if remote is None else None  # dask workers judge their own tiles
    if cuts is not None:
        stats.extra["tile_cuts"] = {p: tuple(cuts[p]) for p in prompts if p in cuts}
    if return_stats:
        return frame, stats
    return frame
