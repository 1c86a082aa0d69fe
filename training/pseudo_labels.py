"""A teacher's masks on scene-labelled chips: the positives that keep scene negatives honest.

The ``default_v3`` trial trained UC Merced chips only as negatives (classes their scene rules
out, empty masks) and the model learnt the shortcut "this sensor -> nothing": no vegetation on
a forest, no buildings in a residential block. The cure is positives from the same chips. UC
Merced has no masks, so the positives are the shipped model's own masks (self-distillation)
for every class the scene does **not** rule out; the negatives then act as corrections to the
teacher (no clouds on tank roofs, no water in overpass shadows) instead of as a sensor label.

The teacher's masks are stored in the repository (``training/pseudo_labels/*.jsonl.gz``, COCO
RLE per chip and class), so the recipe that uses them does not depend on a checkpoint that a
later release replaces. Every record they make is marked ``weak_labels`` and
``pseudo_labels: <teacher>``.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import rle
from .records import ImageRecord, Instance
from .scene_negatives import ABSENT_BY_SCENE

__all__ = ["DISTILLED_CLASSES", "teacher_masks", "write_pseudo_labels", "read_pseudo_labels", "add_pseudo_positives"]

#: classes the teacher is asked for (clouds are ruled out on every UC Merced chip)
DISTILLED_CLASSES = ("building", "land", "road", "vegetation", "water")


def _chip_key(path: str | Path) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def teacher_masks(model: Any, records: Sequence[ImageRecord], batch_size: int = 8) -> list[dict[str, np.ndarray]]:
    """The teacher's binary mask (probability > 0.5, the ``segment`` rule) per class a chip's scene allows.

    Chips are resized to the model's tile size (a few UC Merced chips are a pixel or three short),
    answered with the class names ``evaluate_prompts`` uses, and the masks resized back (nearest).
    Masks smaller than the reply rule's presence threshold are dropped: a speck the reply would
    call "none" is not a positive worth teaching.
    """
    import torch

    from geopix_tiles.model.answer import present

    from .instruct import plural
    from .prompt_eval import tile_batch

    model.eval()
    prompts = [plural(c) for c in DISTILLED_CLASSES]
    out: list[dict[str, np.ndarray]] = []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        logits = model.segment(tile_batch(chunk, int(model.config.tile_size)), prompts)
        for r, lg in zip(chunk, logits):
            h, w = r.size
            back = torch.nn.functional.interpolate(lg[None].float(), size=(h, w), mode="nearest")[0]
            ruled_out = set(r.meta.get("classes") or ())
            masks = {}
            for c, m in zip(DISTILLED_CLASSES, (back > 0).numpy()):
                if c in ruled_out:
                    continue
                if present(int(m.sum()), float(m.mean())):
                    masks[c] = m.astype(np.uint8)
            out.append(masks)
    return out


def write_pseudo_labels(path: str | Path, records: Sequence[ImageRecord], masks: Sequence[dict[str, np.ndarray]],
                        teacher: str) -> None:
    """One JSON line per chip: ``{"chip": "forest/forest03.jpg", "teacher": ..., "masks": {class: RLE}}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r, ms in zip(records, masks):
            f.write(json.dumps({"chip": _chip_key(r.image_path), "teacher": teacher,
                                "masks": {c: rle.encode(m) for c, m in sorted(ms.items())}}) + "\n")


def read_pseudo_labels(path: str | Path) -> dict[str, dict[str, Any]]:
    """``chip key -> {"teacher": name, "masks": {class: RLE}}``."""
    out = {}
    with gzip.open(Path(path), "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out[d["chip"]] = {"teacher": d["teacher"], "masks": d["masks"]}
    return out


def add_pseudo_positives(records: Sequence[ImageRecord], labels: dict[str, dict[str, Any]],
                         classes: Sequence[str] | None = None) -> int:
    """Give each scene-negative record its teacher masks as instances; returns how many were added.

    A class the scene rules out never becomes a positive (the table wins over the teacher), and
    ``meta["classes"]`` (what the negatives sampler may ask for with an empty mask) stays the
    ruled-out list, so nothing is claimed about the classes the teacher did not paint.
    ``classes`` (default: all) limits which of the teacher's classes are taught.
    """
    added = 0
    for r in records:
        entry = labels.get(_chip_key(r.image_path))
        if entry is None:
            continue
        ruled_out = set(ABSENT_BY_SCENE.get(str(r.meta.get("scene_class")), ()))
        for c, m in sorted(entry["masks"].items()):
            if c in ruled_out or (classes is not None and c not in classes):
                continue
            if tuple(m["size"]) != tuple(r.size):
                raise ValueError(f"pseudo label {c} of {r.image_path} is {m['size']}, the chip {r.size}; "
                                 "regenerate the pseudo labels for these chips")
            r.instances.append(Instance(category=c, mask_rle=m, bbox=rle.bbox(rle.decode(m))))
            added += 1
        r.meta["pseudo_labels"] = entry["teacher"]
    return added


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m geopix_tiles.training.pseudo_labels --teacher default --out FILE`` (needs ../shared/data)."""
    import argparse
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    from geopix_tiles.model import GeoPixModel

    from .scene_negatives import scene_negative_records

    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description="the teacher's masks on the UC Merced chips of a split")
    ap.add_argument("--teacher", default="default", help="checkpoint name or directory")
    ap.add_argument("--name", default="default_v2", help="the teacher's name, recorded in every line")
    ap.add_argument("--split", default=str(root / "training" / "splits" / "default_v4.json"))
    ap.add_argument("--shared", default=str(root.parent / "shared" / "data"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore", NotGeoreferencedWarning)  # UC Merced chips are plain JPEGs
    spec = json.loads(Path(args.split).read_text())["scene_negatives"]["uc_merced"]
    recs = scene_negative_records(Path(args.shared) / "uc_merced", spec["train_indices"])
    masks = teacher_masks(GeoPixModel.from_pretrained(args.teacher), recs)
    write_pseudo_labels(args.out, recs, masks, args.name)
    n = sum(len(m) for m in masks)
    print(f"{len(recs)} chips, {n} class masks -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
