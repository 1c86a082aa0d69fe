"""Out-of-fold masks for the presence check: two fold models, each trained without half the scenes.

The presence check (:mod:`.presence_check`) learns when a mask's "yes" is wrong. Fitted on the
shipped model's own masks of its own training chips, it sees few wrong answers (the mask head
has learned those chips), so nothing teaches it the mistakes the model makes on scenes it has
never seen: bluish desert painted as vegetation, dark turf as water. Cross-fitting (as in
stacking): the training chips are split by whole scenes into two folds, one model is trained
on each fold, and every chip's masks come from the model that did not see it. The check's
features still come from the shipped model's tower, as they do when it answers.

Folds: Dubai tiles 1, 2, 3, 6 / 4, 5 (whole tiles); NAIP by odd / even year (whole dates);
each single-scene source by the window's centre either side of the source's median, along the
axis its windows spread most (neighbouring windows can overlap across that line: a small leak, kept for the fold sizes).
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Sequence

from .records import ImageRecord, read_jsonl, write_jsonl

__all__ = ["FOLDS", "fold_of", "split_folds", "fold_config", "train_fold_models", "fold_models"]

FOLDS = ("A", "B")
DUBAI_FOLD_A = {1, 2, 3, 6}


def _centre(rec: ImageRecord) -> tuple[float, float]:
    w = rec.meta.get("window") or [0, 0, 0, 0]  # col_off, row_off, width, height
    return float(w[0]) + float(w[2]) / 2, float(w[1]) + float(w[3]) / 2


def _cut_line(centres: list[tuple[float, float]]) -> tuple[int, float]:
    """(axis, median) along the axis where the windows spread most (a chip strip may be one column wide)."""
    spread = [max(c[a] for c in centres) - min(c[a] for c in centres) for a in (0, 1)]
    axis = int(spread[1] > spread[0])
    vals = sorted(c[axis] for c in centres)
    return axis, vals[len(vals) // 2]


def fold_of(rec: ImageRecord, lines: dict[str, tuple[int, float]]) -> str:
    """``"A"`` or ``"B"`` for a training record (see the module docstring for the rule)."""
    src = str(rec.meta.get("source", ""))
    tile = re.search(r"tile_(\d+)", src)
    if src.startswith("dubai") and tile:
        return "A" if int(tile.group(1)) in DUBAI_FOLD_A else "B"
    date = re.search(r"_(\d{4})\d{4}$", src)
    if src.startswith("naip") and date:
        return "A" if int(date.group(1)) % 2 else "B"
    axis, median = lines.get(src, (0, 0.0))
    return "A" if _centre(rec)[axis] < median else "B"


def split_folds(records: Sequence[ImageRecord]) -> dict[str, list[ImageRecord]]:
    """The labelled training records (scene negatives left out) in two folds by whole scenes."""
    labelled = [r for r in records if r.meta.get("classes") and r.meta.get("source") != "uc_merced_negatives"]
    by_src: dict[str, list[tuple[float, float]]] = {}
    for r in labelled:
        by_src.setdefault(str(r.meta.get("source", "")), []).append(_centre(r))
    lines = {s: _cut_line(v) for s, v in by_src.items()}
    out: dict[str, list[ImageRecord]] = {f: [] for f in FOLDS}
    for r in labelled:
        out[fold_of(r, lines)].append(r)
    return out


def fold_config(cfg: Any, fold_dir: Path, steps: int) -> Any:
    """``cfg`` (the shipped recipe) trained on one fold's chips for ``steps`` steps, into ``fold_dir``."""
    total = sum(s.steps for s in cfg.stages)
    stages, left = [], steps
    for s in cfg.stages:  # the same stage shares, scaled to ``steps``
        n = max(1, round(s.steps * steps / total)) if s is not cfg.stages[-1] else max(1, left)
        stages.append(dataclasses.replace(s, steps=n))
        left -= n
    data = dataclasses.replace(cfg.data, train=str(fold_dir / "chips.jsonl"), val=str(fold_dir / "val.jsonl"))
    return dataclasses.replace(cfg, output_dir=str(fold_dir), data=data, stages=stages, eval_every=0)


def train_fold_models(cfg: Any, train_jsonl: Path, val_jsonl: Path, out: Path, steps: int,
                      resume: bool = True, only: Sequence[str] = FOLDS) -> dict[str, Path]:
    """Train the model without each fold in ``only`` (it never sees that fold's chips); their export folders.

    ``only``: one fold per process lets two processes of one thread each train both at once
    (faster than one after the other with two threads on a 2-core machine).
    """
    from .trainer import train

    folds = split_folds(read_jsonl(train_jsonl))
    val = read_jsonl(val_jsonl)[:8]  # the trainer's end-of-run score only; the check is scored elsewhere
    models = {}
    for f in only:
        d = out / f"without_{f}"
        d.mkdir(parents=True, exist_ok=True)
        other = [r for g in FOLDS if g != f for r in folds[g]]
        write_jsonl(other, d / "chips.jsonl")
        write_jsonl(val, d / "val.jsonl")
        (d / "held_out.json").write_text(json.dumps(sorted(str(r.image_path) for r in folds[f]), indent=0))
        fcfg = fold_config(cfg, d, steps)
        ck = d / "checkpoints"
        res = train(fcfg, resume=resume and ck.is_dir() and any(ck.glob("step-*")))
        models[f] = Path(res["model_dir"])
    return models


def fold_models(out: Path) -> dict[str, Path] | None:
    """The fold models of an earlier :func:`train_fold_models` run in ``out``, or ``None``."""
    found = {f: out / f"without_{f}" / "model" for f in FOLDS}
    return found if all((p / "config.json").exists() for p in found.values()) else None


def load_fold_models(out: Path, hint: str) -> dict[str, Any]:
    """The fold models of ``out`` loaded for masking (eval mode); ``hint`` says how to make them if absent."""
    from geopix_tiles.model import GeoPixModel

    found = fold_models(out)
    if found is None:
        raise SystemExit(f"no fold models in {out}; {hint}")
    return {f: GeoPixModel.from_pretrained(p).eval() for f, p in found.items()}
