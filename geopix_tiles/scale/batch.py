"""Many scenes in one command: per-scene outputs and an optional merged GeoPackage.

Scenes run one after another through :func:`geopix_tiles.segment`, each on the same dask
cluster when one is given (the cluster parallelises within a scene, so every worker stays
busy and memory stays that of one scene). The merged layer is written afterwards from the
per-scene GeoPackages, one scene at a time, reprojected to one CRS, with a ``scene`` column.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Sequence

from ..errors import InputError, OutputError


def expand_scenes(items: Sequence[str]) -> list:
    """Paths, URLs, glob patterns and ``.txt`` files listing them (one per line, ``#`` comments).

    Local scenes come back as ``Path``; URLs and ``/vsi`` paths as ``str`` (a ``Path`` would
    fold the ``//`` of ``https://``).
    """
    from ..io.remote import is_remote  # noqa: PLC0415

    from ..io.stac import is_stac, split_collection  # noqa: PLC0415

    out: list = []
    for item in items:
        s = str(item)
        items_of = split_collection(s) if is_stac(s) else None  # an ItemCollection: one scene per Item
        if items_of is not None:
            out += items_of
        elif is_remote(s):
            out.append(s)
        elif any(ch in s for ch in "*?["):
            hits = sorted(glob.glob(s, recursive=True))
            if not hits:
                raise InputError(f"the pattern '{s}' matches no file; check the path or quote it for the shell")
            out += [Path(h) for h in hits]
        elif s.endswith(".txt") and Path(s).is_file():
            base = Path(s).parent
            for line in Path(s).read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line and is_remote(line):
                    out.append(line)
                elif line:
                    p = Path(line)
                    out.append(p if p.is_absolute() else base / p)
        else:
            out.append(Path(s))
    if not out:
        raise InputError("no scene given; pass paths, a glob pattern or a .txt list of paths")
    stems = [Path(str(p)).stem for p in out]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise InputError(f"several scenes are named {dup[0]}; per-scene outputs would collide, rename or split the run")
    return out


def segment_scenes(scenes: Sequence[str | os.PathLike], prompts: Sequence[str], model="spectral", *,
                   out_dir: str | os.PathLike, raster_dir: str | os.PathLike | None = None,
                   merge: str | os.PathLike | None = None, merge_crs: str | None = None,
                   scheduler: str | None = None, workers: int | None = None, device: str = "auto",
                   overwrite: bool = False, resume: bool = False, progress: bool = False, **options) -> list:
    """Segment every scene; returns one :class:`RunStats` per scene (``extra['scene']`` set)."""
    from ..api import segment  # noqa: PLC0415

    paths = expand_scenes([str(s) for s in scenes])
    out_dir = Path(out_dir)
    raster_dir = Path(raster_dir) if raster_dir is not None else None
    for d, flag in ((out_dir, "--out"), (raster_dir, "--raster")):
        if d is not None and d.exists() and not d.is_dir():
            raise InputError(f"with several scenes {flag} must be a folder, and '{d}' is a file")
    merge = Path(merge) if merge is not None else None
    if merge is not None:
        from ..outputs.vector_formats import vector_format  # noqa: PLC0415

        vector_format(merge, "--merge")
        if merge.exists() and not overwrite:
            raise OutputError(f"'{merge}' already exists; pass --overwrite to replace it")
    if merge_crs is not None:
        from pyproj import CRS  # noqa: PLC0415
        from pyproj.exceptions import CRSError  # noqa: PLC0415

        try:
            CRS.from_user_input(merge_crs)
        except CRSError:
            raise InputError(f"--merge-crs '{merge_crs}' is not a CRS; pass e.g. EPSG:4326") from None
    from ..io.remote import is_remote  # noqa: PLC0415

    for p in paths:
        if not is_remote(p) and not Path(p).exists():
            raise InputError(f"scene '{p}' does not exist; check the path or the list file")
    out_dir.mkdir(parents=True, exist_ok=True)
    if raster_dir is not None:
        raster_dir.mkdir(parents=True, exist_ok=True)
    client = remote = None
    if scheduler or workers:
        from .distributed import DaskRunner, make_client  # noqa: PLC0415

        client = make_client(scheduler, workers)
        remote = DaskRunner(client, model, device=device)
    results = []
    try:
        for p in paths:
            stem = Path(str(p)).stem
            out = out_dir / f"{stem}.gpkg"
            if resume and out.exists() and not (out_dir / f".{out.name}.geopix-run").exists():
                continue  # finished before the interruption
            _, stats = segment(p, prompts, model=model, out=out,
                               raster_out=(raster_dir / f"{stem}.tif") if raster_dir is not None else None,
                               device=device, overwrite=overwrite, resume=resume, progress=progress, remote=remote,
                               return_stats=True, collect=None, **options)
            stats.extra["scene"] = str(p)
            results.append(stats)
    finally:
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
    if merge is not None:
        merge_outputs([out_dir / f"{Path(str(p)).stem}.gpkg" for p in paths], merge, merge_crs)
    return results


def merge_outputs(parts: Sequence[Path], merge: Path, crs: str | None = None) -> None:
    """Concatenate per-scene outputs into one layer in ``crs`` with a ``scene`` column (format by extension)."""
    import pyogrio  # noqa: PLC0415

    from ..io.atomic import replacing  # noqa: PLC0415
    from ..outputs.vector_formats import write_frames  # noqa: PLC0415

    state = {"target": crs}

    def frames():
        for part in parts:
            frame = pyogrio.read_dataframe(part)
            target = state["target"] = state["target"] or frame.crs
            if frame.crs is not None and target is not None and frame.crs != target:
                frame = frame.to_crs(target)
            frame.insert(0, "scene", part.stem)
            yield frame.set_crs(target, allow_override=True) if target else frame

    with replacing(merge) as tmp:
        write_frames(frames(), tmp, merge.stem)
