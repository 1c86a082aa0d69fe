"""Training and validation records from a config: JSONL files, or scenes exported to chips.

The validation split, when the config gives none, is drawn by whole images with the run's
seed; scene sources are exported once by rank 0 (the others wait), so every process trains
on the same records.
"""
from __future__ import annotations

import random
from pathlib import Path

from geopix_tiles.errors import InputError

from .config import TrainConfig
from .distributed import DistInfo, barrier
from .records import ImageRecord, read_jsonl

__all__ = ["split_records", "load_records"]


def split_records(records: list[ImageRecord], fraction: float, seed: int) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Honour an explicit ``split`` key; otherwise hold out whole source scenes, then images."""
    tagged_val = [r for r in records if r.meta.get("split") in ("val", "validation", "test")]
    if tagged_val:
        return [r for r in records if r not in tagged_val], tagged_val
    if fraction <= 0 or len(records) < 2:
        return records, []
    rng = random.Random(seed)
    groups: dict[str, list[ImageRecord]] = {}
    for r in records:
        groups.setdefault(str(r.meta.get("source", r.image_path)), []).append(r)
    keys = sorted(groups)
    if len(keys) >= 4:
        rng.shuffle(keys)
        n_val = max(1, round(len(keys) * fraction))
        val = [r for k in keys[:n_val] for r in groups[k]]
        train = [r for k in keys[n_val:] for r in groups[k]]
        return train, val
    idx = list(range(len(records)))
    rng.shuffle(idx)
    n_val = max(1, round(len(records) * fraction))
    vs = set(idx[:n_val])
    return [r for i, r in enumerate(records) if i not in vs], [r for i, r in enumerate(records) if i in vs]


def load_records(cfg: TrainConfig, info: DistInfo | None = None) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Training and validation records; scenes from adapters are exported to JSONL first.

    Exporting (on rank 0) and reading back keeps every process on identical data and
    leaves the tiles on disk in the interchange form for inspection or reuse.
    """
    from .adapters import build_source
    from .windows import export_jsonl, sample_records

    info = info or DistInfo()
    records: list[ImageRecord] = []
    val: list[ImageRecord] = []
    if cfg.data.sources:
        out = Path(cfg.output_dir) / "data"
        train_jsonl, val_jsonl = out / "sources_train.jsonl", out / "sources_val.jsonl"
        if info.main and not train_jsonl.exists():
            sources = [build_source(s) for s in cfg.data.sources]
            tr = sample_records(sources, cfg.data.tile, mode=cfg.data.sampling, per_scene=cfg.data.windows_per_scene,
                                seed=cfg.seed)
            tr, va = split_records(tr, cfg.data.val_fraction if not cfg.data.val else 0.0, cfg.seed)
            export_jsonl(va, val_jsonl, out / "chips_val") if va else None
            export_jsonl(tr, train_jsonl, out / "chips_train")
        barrier(info)
        records += read_jsonl(train_jsonl)
        if val_jsonl.exists():
            val += read_jsonl(val_jsonl)
    if cfg.data.train:
        more = read_jsonl(cfg.data.train)
        if cfg.data.val:
            records += more
        else:
            tr, va = split_records(more, cfg.data.val_fraction, cfg.seed)
            records += tr
            val += va
    if cfg.data.val:
        val += read_jsonl(cfg.data.val)
    if not records:
        raise InputError("no training images after the train/validation split; add data or lower data.val_fraction")
    return records, val
