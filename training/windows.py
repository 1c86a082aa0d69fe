"""Cutting labelled scenes into training tiles, and exporting them as GeoPixInstruct JSONL.

Grid sampling uses the engine's global tile grid (:class:`geopix_tiles.core.tiling.TileGrid`),
so validation tiles are exactly the tiles inference will see; random sampling adds
windows at arbitrary offsets for training variety. Pixels are scaled with the scene-wide
statistics of :mod:`geopix_tiles.io.scene`, never per tile.
"""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Sequence

import numpy as np

from geopix_tiles.errors import InputError

from .adapters import Source
from .records import ImageRecord, write_jsonl
from .scenes import LabelledScene

__all__ = ["grid_windows", "random_windows", "records_from_scene", "sample_records", "export_jsonl"]

from rasterio.windows import Window


def grid_windows(scene: LabelledScene, tile: int, overlap: int = 0) -> list[Window]:
    """The engine's tile grid over the scene (last row/column shifted inward)."""
    from geopix_tiles.core.tiling import TileGrid

    grid = TileGrid(scene.height, scene.width, tile, overlap)
    return [t.window for t in grid]


def random_windows(scene: LabelledScene, tile: int, n: int, rng: random.Random) -> list[Window]:
    """``n`` windows of ``tile`` (clipped to the scene) at uniformly random offsets."""
    th, tw = min(tile, scene.height), min(tile, scene.width)
    out = []
    for _ in range(n):  # row offset first, then column: the draw order the recorded runs used
        y = rng.randint(0, scene.height - th)
        out.append(Window(rng.randint(0, scene.width - tw), y, tw, th))
    return out


def records_from_scene(scene: LabelledScene, windows: Iterable[Window], min_valid: float = 0.5,
                       keep_empty: bool = True) -> Iterator[ImageRecord]:
    """One record per window; windows with less than ``min_valid`` valid pixels are skipped."""
    for win in windows:
        image, valid = scene.image.read(win)
        if valid is not None and float(valid.mean()) < min_valid:
            continue
        insts = scene.instances(win)
        if not insts and not keep_empty:
            continue
        # stored as [row_off, col_off, height, width], the order the exported data sets record
        meta: dict[str, Any] = {"source": scene.name,
                                "window": [int(win.row_off), int(win.col_off), int(win.height), int(win.width)]}
        if getattr(scene, "weak_labels", False):
            meta["weak_labels"] = True
        annotated = scene.annotated_classes()
        if annotated is not None:
            meta["classes"] = annotated
        yield ImageRecord(image_path=None, instances=insts, image=image,
                          norm={"low": list(scene.image.low), "high": list(scene.image.high)},
                          meta=meta, origin=(scene, win))


def sample_records(sources: Sequence[Source], tile: int, mode: Literal["grid", "random"] = "grid",
                   per_scene: int = 8, overlap: int = 0, seed: int = 0, min_valid: float = 0.5,
                   keep_empty: bool = True) -> list[ImageRecord]:
    """Records from every scene of every source; deterministic for a given ``seed``."""
    if mode not in ("grid", "random"):
        raise InputError(f"window sampling mode '{mode}' is unknown; use 'grid' or 'random'")
    rng = random.Random(seed)
    out: list[ImageRecord] = []
    for src in sources:
        for scene in src.scenes():
            wins = grid_windows(scene, tile, overlap) if mode == "grid" else random_windows(scene, tile, per_scene, rng)
            out.extend(records_from_scene(scene, wins, min_valid=min_valid, keep_empty=keep_empty))
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def export_jsonl(records: Sequence[ImageRecord], jsonl: str | Path, chips_dir: str | Path | None = None) -> Path:
    """Write each record's chip (raw pixels, scene CRS/transform, nodata) and the JSONL.

    Chips keep their native dtype and the JSONL keeps the scene-wide stretch (``norm``),
    so reading them back reproduces the training pixels bit for bit.
    """
    import rasterio

    jsonl = Path(jsonl)
    chips = Path(chips_dir) if chips_dir is not None else jsonl.parent / (jsonl.stem + "_chips")
    chips.mkdir(parents=True, exist_ok=True)
    written: list[ImageRecord] = []
    for i, r in enumerate(records):
        if r.image_path is not None and r.origin is None:
            written.append(r)
            continue
        if r.origin is None:
            raise ValueError("record has neither an image file nor a source scene to export")
        scene, win = r.origin
        raw, valid = scene.image.read_raw(win)
        nodata = scene.image.nodata
        if valid is not None:
            if nodata is None:
                nodata = 0
            raw = raw.copy()
            raw[:, ~valid] = np.asarray(nodata).astype(raw.dtype)
        path = chips / f"{i:06d}_{_safe(scene.name)}_{int(win.row_off)}_{int(win.col_off)}.tif"
        profile: dict[str, Any] = {"driver": "GTiff", "width": int(win.width), "height": int(win.height),
                                   "count": raw.shape[0],
                                   "dtype": raw.dtype.name, "compress": "deflate"}
        if scene.image.georeferenced:
            profile.update(crs=scene.image.crs, transform=scene.image.window_transform(win))
        if nodata is not None:
            profile["nodata"] = nodata
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(raw)
        written.append(ImageRecord(image_path=str(path), instances=r.instances, norm=r.norm, meta=dict(r.meta)))
    write_jsonl(written, jsonl)
    report = {r.meta.get("source", ""): 0 for r in written}
    for r in written:
        report[r.meta.get("source", "")] += 1
    (jsonl.parent / (jsonl.stem + "_summary.json")).write_text(json.dumps(
        {"records": len(written), "instances": sum(len(r.instances) for r in written), "per_source": report}, indent=1))
    return jsonl
