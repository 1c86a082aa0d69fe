"""Scene-level scoring of the text -> mask path: per class, per source, paraphrases, unknown concepts.

This is the evaluation a user's question asks for ("does 'rooftops' find the buildings
'buildings' finds? does 'wind turbines' paint a forest?"), run through the public
inference path (:meth:`GeoPixModel.segment`, the one the engine calls) on whole validation
chips rather than through training batches:

* **canonical IoU** per class and per source: the class name as the prompt, every
  exhaustively labelled class of every chip (an absent class is scored too: its false
  alarms count in the union);
* **paraphrase IoU** for the held-out words of :data:`.vocabulary.HELD_OUT_PARAPHRASES`,
  and its ratio to the canonical prompt's IoU on the same chips;
* **unknown-concept coverage**: the share of pixels painted for each of
  :data:`.vocabulary.HELD_OUT_UNRELATED` (goal: below 1 %);
* **scene labels** (:func:`evaluate_scene_labels`) on chips whose scene label rules a class
  out or in (:mod:`.scene_negatives`): how often the presence rule says "yes" for a class that
  is not there (false alarms) and for one that surely is (detections), and how much of the
  chip is painted. Both halves matter: fewer false alarms bought by painting nothing on a
  new sensor is no gain. An IoU against an empty mask is only 0 or 1, so these chips get
  their own score.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .instruct import plural
from .records import ImageRecord
from .vocabulary import HELD_OUT_PARAPHRASES, HELD_OUT_UNRELATED

__all__ = ["evaluate_prompts", "evaluate_scene_labels", "source_of", "tile_batch"]


def source_of(record: ImageRecord) -> str:
    """The source a record came from, without its scene name (``naip_weak/m_...`` -> ``naip_weak``)."""
    return str(record.meta.get("source", "unknown")).split("/", 1)[0]


def _truth(record: ImageRecord, category: str) -> np.ndarray:
    h, w = record.size
    m = np.zeros((h, w), dtype=bool)
    for inst in record.instances:
        if inst.category == category:
            m |= inst.mask().astype(bool)
    return m


@torch.no_grad()
def evaluate_prompts(model: Any, records: Sequence[ImageRecord], batch_size: int = 8,
                     paraphrases: Mapping[str, Sequence[str]] = HELD_OUT_PARAPHRASES,
                     unrelated: Sequence[str] = HELD_OUT_UNRELATED) -> dict[str, Any]:
    """IoU per class / per source for canonical and paraphrased prompts, and unknown-concept coverage."""
    model.eval()
    recs = [r for r in records if r.meta.get("classes") and r.size is not None]
    classes = sorted({c for r in recs for c in r.meta["classes"]})
    prompts: list[str] = [plural(c) for c in classes]
    para = {c: [p for p in paraphrases.get(c, ())] for c in classes}
    prompts += [p for c in classes for p in para[c]] + list(unrelated)
    prompts = list(dict.fromkeys(prompts))
    inter: dict[tuple[str, str, str], float] = defaultdict(float)  # (prompt, class, source)
    union: dict[tuple[str, str, str], float] = defaultdict(float)
    painted = defaultdict(float)
    pixels = 0.0
    for start in range(0, len(recs), batch_size):
        chunk = recs[start:start + batch_size]
        images = torch.stack([torch.from_numpy(np.ascontiguousarray(r.load()[:3], dtype=np.float32)) for r in chunk])
        pred = (model.segment(images, prompts) > 0).cpu().numpy()
        for r, p in zip(chunk, pred):
            src = source_of(r)
            pixels += p.shape[-1] * p.shape[-2]
            for c in r.meta["classes"]:
                t = _truth(r, c)
                for q in [plural(c)] + para.get(c, []):
                    m = p[prompts.index(q)]
                    inter[(q, c, src)] += float((m & t).sum())
                    union[(q, c, src)] += float((m | t).sum())
            for q in unrelated:
                painted[q] += float(p[prompts.index(q)].sum())

    def iou(q: str, c: str, src: str | None = None) -> float | None:
        keys = [k for k in union if k[0] == q and k[1] == c and (src is None or k[2] == src)]
        u = sum(union[k] for k in keys)
        return None if not keys else (1.0 if u == 0 else sum(inter[k] for k in keys) / u)

    sources = sorted({k[2] for k in union})
    per_class = {c: iou(plural(c), c) for c in classes}
    per_source = {s: {c: iou(plural(c), c, s) for c in classes if iou(plural(c), c, s) is not None} for s in sources}
    para_out = {}
    for c in classes:
        base = per_class[c]
        for q in para[c]:
            v = iou(q, c)
            para_out[q] = {"class": c, "iou": v, "canonical_iou": base,
                           "ratio": None if v is None or not base else v / base}
    vals = [v for v in per_class.values() if v is not None]
    return {
        "per_class_iou": per_class,
        "mean_iou": float(np.mean(vals)) if vals else None,
        "per_source_iou": per_source,
        "paraphrases": para_out,
        "unknown_concept_coverage": {q: painted[q] / max(pixels, 1.0) for q in unrelated},
        "counts": {"images": len(recs), "prompts": len(prompts)},
    }


def tile_batch(records: Sequence[ImageRecord], tile_size: int) -> torch.Tensor:
    """``[B, 3, tile, tile]`` RGB of ``records`` resized to the model's tile (bilinear).

    A few UC Merced chips are a pixel or three short of 256; the model reads every chip at its tile.
    """
    return torch.cat([torch.nn.functional.interpolate(
        torch.from_numpy(np.ascontiguousarray(r.load()[None, :3], dtype=np.float32)), size=(tile_size, tile_size),
        mode="bilinear", align_corners=False) for r in records])


@torch.no_grad()
def evaluate_scene_labels(model: Any, records: Sequence[ImageRecord], batch_size: int = 8) -> dict[str, Any]:
    """Per class: false alarms where the scene rules it out, detections where the scene shows it.

    ``records`` are instance-free chips whose ``meta["classes"]`` lists classes known to be
    absent and ``meta["present_classes"]`` classes known to be there
    (:func:`.scene_negatives.scene_negative_records`); the prompt is the class name, as in
    :func:`evaluate_prompts`, and "yes" is the reply rule (:func:`model.answer.present`).
    """
    from geopix_tiles.model.answer import present

    model.eval()
    recs = [r for r in records if r.meta.get("classes") or r.meta.get("present_classes")]
    classes = sorted({c for r in recs for c in (r.meta.get("classes") or []) + (r.meta.get("present_classes") or [])})
    prompts = [plural(c) for c in classes]
    said: dict[str, dict[str, list[bool]]] = {"absent": defaultdict(list), "present": defaultdict(list)}
    painted: dict[str, dict[str, list[float]]] = {"absent": defaultdict(list), "present": defaultdict(list)}
    by_scene: dict[str, list[bool]] = defaultdict(list)
    for start in range(0, len(recs), batch_size):
        chunk = recs[start:start + batch_size]
        pred = (model.segment(tile_batch(chunk, int(model.config.tile_size)), prompts) > 0).cpu().numpy()
        for r, p in zip(chunk, pred):
            for kind, key in (("absent", "classes"), ("present", "present_classes")):
                for c in r.meta.get(key) or []:
                    m = p[prompts.index(plural(c))]
                    yes = present(int(m.sum()), float(m.mean()))
                    said[kind][c].append(yes)
                    painted[kind][c].append(float(m.mean()))
                    if kind == "absent":
                        by_scene[str(r.meta.get("scene_class", source_of(r)))].append(yes)

    def rate(d: dict[str, list]) -> dict[str, float]:
        return {c: float(np.mean(v)) for c, v in sorted(d.items())}

    def overall(d: dict[str, list]) -> float | None:
        xs = [x for v in d.values() for x in v]
        return float(np.mean(xs)) if xs else None

    return {
        "false_alarm_rate": rate(said["absent"]),
        "painted_share": rate(painted["absent"]),
        "false_alarm_rate_all": overall(said["absent"]),
        "false_alarm_rate_by_scene": {k: float(np.mean(v)) for k, v in sorted(by_scene.items())},
        "detection_rate": rate(said["present"]),
        "detected_share": rate(painted["present"]),
        "detection_rate_all": overall(said["present"]),
        "counts": {"images": len(recs), "questions": sum(len(v) for v in said["absent"].values()),
                   "detections_asked": sum(len(v) for v in said["present"].values())},
    }
