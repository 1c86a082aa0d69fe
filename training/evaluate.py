"""Evaluate a GeoPix checkpoint on GeoPixInstruct records, with held-out prompt templates.

* Segmentation (category and referring prompts): the answer template is teacher-forced,
  exactly as :meth:`GeoPixModel.segment` does at inference, and the masks are read at the
  SEG tokens; logits are resized to the label's resolution before thresholding at 0.
* Region classification: :meth:`GeoPixModel.classify_regions` (what ``describe`` writes as
  ``category``) on each labelled region; accuracy of the class name.
* Region captions: the LLM's own greedy answers (:meth:`GeoPixModel.generate`) to the held-out
  caption prompts; Osprey's semantic
  similarity (all-MiniLM-L6-v2 cosine) and semantic IoU of words against the generated
  descriptions.
* Dialogue (``dialogue=True``): :func:`geopix_tiles.training.dialogue_eval.evaluate_dialogue`
  (presence, counts, captions, segment-on-request, scenes) under ``"dialogue"``.
"""
from __future__ import annotations

import math
import re
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from . import rle
from .dataset import InstructDataset, collate
from .instruct import InstructSample, make_samples
from .metrics import SegmentationMeter, region_accuracy
from .records import ImageRecord

__all__ = ["evaluate_model", "generate_text", "parse_regions"]

SEG_TASKS = ("category_seg", "referring_seg")
_REGION_RE = re.compile(r"region\s*(\d+)\s*:\s*([^;]*)", re.IGNORECASE)


def parse_regions(text: str, n: int) -> list[str]:
    """``"region1: a; region2: b."`` -> ``["a", "b"]``; missing regions are empty strings."""
    found: dict[int, str] = {}
    for m in _REGION_RE.finditer(text):
        found.setdefault(int(m.group(1)), m.group(2).strip().rstrip("."))
    if not found and n == 1:
        return [text.strip().rstrip(".")]
    return [found.get(i + 1, "") for i in range(n)]


def generate_text(model: Any, image: torch.Tensor, question: str, region_masks: torch.Tensor | None = None,
                  max_new_tokens: int | None = None) -> str:
    """The LLM's greedy answer to one question about one image (:meth:`GeoPixModel.generate`)."""
    regions = None
    if region_masks is not None and len(region_masks):
        regions = region_masks[None].bool()
    return model.generate(image[None], [question], regions, max_new_tokens)[0].text


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


@torch.no_grad()
def evaluate_model(model: Any, records: Sequence[ImageRecord], seed: int = 0, samples_per_image: int = 4,
                   max_targets: int = 3, batch_size: int = 4, semantic: bool = True, split: str = "eval",
                   progress: bool = False, dialogue: bool = False, uc_merced: Any = None) -> dict[str, Any]:
    """All metrics on ``records``; returns a JSON-ready dict (``None`` for metrics with no data)."""
    model.eval()
    size = int(model.config.tile_size)
    tasks = ("category_seg", "referring_seg", "region_class", "region_caption")
    samples = make_samples(records, tasks=tasks, split=split, seed=seed, per_record=samples_per_image,
                           max_targets=max_targets)
    ds = InstructDataset(records, samples, size)
    seg = [i for i, s in enumerate(samples) if s.task in SEG_TASKS]
    cls_samples = [i for i, s in enumerate(samples) if s.task == "region_class"]
    cap_samples = [i for i, s in enumerate(samples) if s.task == "region_caption"]
    meter = SegmentationMeter()
    bar = _bar(len(seg) + len(cls_samples) + len(cap_samples), progress)
    for start in range(0, len(seg), batch_size):
        idx = seg[start:start + batch_size]
        items = [ds[i] for i in idx]
        out = model(**collate(items, model.processor))
        for it, logits in zip(items, out.mask_logits):
            s: InstructSample = it["sample"]
            for k, (target_rle, cat) in enumerate(zip(s.target_masks, s.target_categories)):
                target = rle.decode(target_rle)
                lg = logits[k].float()
                if tuple(lg.shape) != target.shape:
                    lg = F.interpolate(lg[None, None], size=target.shape, mode="bilinear", align_corners=False)[0, 0]
                meter.add((lg > 0).cpu().numpy(), target, cat)
        bar.update(len(idx))
    predicted: list[str] = []
    labels: list[str] = []
    for i in cls_samples:
        it = ds[i]
        s = it["sample"]
        names, _ = model.classify_regions(it["image"][None].to(model.device), it["region_masks"][None].bool())
        predicted += names[0]
        labels += s.region_categories
        bar.update(1)
    cap_pred: list[str] = []
    cap_ref: list[str] = []
    for i in cap_samples:
        it = ds[i]
        s = it["sample"]
        text = generate_text(model, it["image"], it["question"], it["region_masks"])
        cap_pred += parse_regions(text, len(s.region_texts))
        cap_ref += s.region_texts
        bar.update(1)
    bar.close()
    sim = siou = float("nan")
    if cap_ref:
        from .semantic import semantic_iou, semantic_similarity

        siou = semantic_iou(cap_pred, cap_ref)
        if semantic:
            sim = semantic_similarity(cap_pred, cap_ref)
    result = {
        "ciou": _nan_to_none(meter.ciou) if len(meter) else None,
        "giou": _nan_to_none(meter.giou) if len(meter) else None,
        "per_class_iou": meter.per_class_iou(),
        "region_accuracy": _nan_to_none(region_accuracy(predicted, labels)) if labels else None,
        "semantic_similarity": _nan_to_none(sim),
        "semantic_iou": _nan_to_none(siou),
        "counts": {"images": len(records), "masks": len(meter), "regions": len(labels), "captions": len(cap_ref)},
    }
    if dialogue:
        from .dialogue_eval import evaluate_dialogue

        result["dialogue"] = evaluate_dialogue(model, records, uc_merced=uc_merced, seed=seed)
    return result


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="evaluate", unit="sample", dynamic_ncols=True)
