"""Score the answers in words: presence, counts, captions, regions, segment-on-request, scenes.

Every question goes through :meth:`GeoPixModel.chat` (the path the CLI and the accessors
use), on the held-out records:

* **presence** - "Is there any {class}?" for every class the record's source labels
  exhaustively (``meta["classes"]``); the truth is the label mask under the same presence
  rule the replies use (:func:`geopix_tiles.model.answer.present`);
* **count** - "How many {class} are there?" for countable classes (buildings): the reply's
  count against the connected components of the label mask, same minimum size;
* **segment on request** - "Please segment the {class}." against :meth:`GeoPixModel.segment`
  for the same class on the same image (they must agree), and against the label;
* **caption similarity** - "Describe this image." against a reference written by the same
  composer from the label masks (MiniLM cosine, as Osprey reports it): it measures whether
  the caption names the right classes in the right amounts, not its wording;
* **region classification** - :meth:`GeoPixModel.classify_regions` on labelled regions;
* **scene** - UC Merced held-out chips (60-79 of each class): scene accuracy, and presence
  questions about scene classes ("Is there a tennis court?"), one true and one false per chip;
* **reply checks** - the share of replies shorter than a sentence, and of distinct captions.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import rle
from .records import ImageRecord

__all__ = ["evaluate_dialogue", "is_sentence"]

COUNTABLE = ("building",)


def is_sentence(text: str) -> bool:
    """At least four words and a full stop, question mark or exclamation at the end."""
    return len(text.split()) >= 4 and text.rstrip()[-1:] in ".?!"


def _label_masks(rec: ImageRecord, size: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for inst in rec.instances:
        m = rle.decode(inst.mask_rle).astype(bool)
        if m.shape != (size, size):
            m = torch.nn.functional.interpolate(torch.from_numpy(m[None, None].astype(np.float32)), size=(size, size),
                                                mode="nearest")[0, 0].numpy() > 0.5
        out[inst.category] = out.get(inst.category, np.zeros((size, size), bool)) | m
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float | None:
    union = int((a | b).sum())
    return None if union == 0 else int((a & b).sum()) / union


def _mean(xs: Sequence[float | None]) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


@torch.no_grad()
def evaluate_dialogue(model: Any, records: Sequence[ImageRecord], uc_merced: str | Path | None = None,
                      regions: int = 300, seed: int = 0) -> dict[str, Any]:
    """All dialogue metrics; a JSON-ready dict (``None`` where there was nothing to score)."""
    from geopix_tiles.model.answer import mask_facts, present
    from geopix_tiles.model.dialogue import View, caption_from_masks, class_phrases
    from geopix_tiles.model.presence_check import presence_check_off

    from .dataset import InstructDataset
    from .semantic import semantic_similarity

    model.eval()
    size = int(model.config.tile_size)
    phrases = dict(class_phrases(model))
    presence, counts, seg_vs_segment, seg_vs_label, cap_pred, cap_ref, short = [], [], [], [], [], [], []
    presence_alone: list[bool] = []
    per_class: dict[str, list[bool]] = {}
    n_replies = 0
    images = InstructDataset(records, [], size, cache=1)  # pixels exactly as training and evaluate see them
    for ri, rec in enumerate(records):
        img = images.image(ri)
        view = View(model, model.encode_images(img[None].to(model.device)))
        labels = _label_masks(rec, size)
        labelled = [c for c in (rec.meta.get("classes") or sorted(labels)) if c in phrases]
        for c in labelled:
            p = phrases[c]
            gt = labels.get(c, np.zeros((size, size), bool))
            r = model.chat(view, f"Is there any {p}?")
            said_yes = r.text.startswith("Yes")
            truth = present(int(gt.sum()), float(gt.mean()))
            presence.append(said_yes == truth)
            if getattr(model, "presence_check", None) is not None:  # the masks alone: what the check adds
                with presence_check_off(model):
                    presence_alone.append(model.chat(view, f"Is there any {p}?").text.startswith("Yes") == truth)
            per_class.setdefault(c, []).append(said_yes == truth)
            short.append(not is_sentence(r.text))
            r_seg = model.chat(view, f"Please segment the {p}.")
            short.append(not is_sentence(r_seg.text))
            n_replies += 2
            # segment reports what is seen: no building or pond under a crown (View.uncovered, as replies cut it)
            ref = view.uncovered((model.segment(img[None], [p])[0, 0] > 0).cpu().numpy(), c)
            got = r_seg.masks[0].cpu().numpy() if len(r_seg.masks) else np.zeros_like(ref)
            seg_vs_segment.append(_iou(got, ref) if (got.any() or ref.any()) else 1.0)
            seg_vs_label.append(_iou(got, gt))
            if c in COUNTABLE:
                r_n = model.chat(view, f"How many {p} are there?")
                short.append(not is_sentence(r_n.text))
                n_replies += 1
                said = r_n.facts[0].count if r_n.facts else 0
                counts.append((said, mask_facts(gt).count))
        r_cap = model.chat(view, "Describe this image.")
        short.append(not is_sentence(r_cap.text))
        n_replies += 1
        ref_masks = [labels.get(c, np.zeros((size, size), bool)) for c, _ in class_phrases(model)]
        ref_text, _ = caption_from_masks(model, ref_masks, r_cap.scene)
        cap_pred.append(r_cap.text)
        cap_ref.append(ref_text)
    count_err = [abs(a - b) for a, b in counts]
    out: dict[str, Any] = {
        "presence_accuracy": _mean([float(x) for x in presence]),
        "presence_per_class": {c: float(np.mean(v)) for c, v in sorted(per_class.items())},
        "presence_accuracy_masks_only": _mean([float(x) for x in presence_alone]),
        "count_mean_abs_error": _mean([float(e) for e in count_err]),
        "count_mean_label": _mean([float(b) for _, b in counts]),
        "count_relative_error": _mean([abs(a - b) / max(1, b) for a, b in counts]),
        "segment_request_iou_vs_segment": _mean(seg_vs_segment),
        "segment_request_iou_vs_label": _mean(seg_vs_label),
        "caption_semantic_similarity": semantic_similarity(cap_pred, cap_ref) if cap_ref else None,
        "distinct_caption_share": len(set(cap_pred)) / len(cap_pred) if cap_pred else None,
        "short_reply_share": float(np.mean(short)) if short else None,
        "examples": [{"caption": p, "reference": r} for p, r in list(zip(cap_pred, cap_ref))[:3]],
    }
    out.update(_regions(model, records, regions, seed))
    if uc_merced is not None:
        out.update(_scenes(model, uc_merced, seed))
    out["counts"] = {"images": len(records), "presence_questions": len(presence), "count_questions": len(counts),
                     "replies_checked": len(short)}
    return out


def _regions(model: Any, records: Sequence[ImageRecord], limit: int, seed: int) -> dict[str, Any]:
    from .dataset import InstructDataset
    from .instruct import make_samples

    samples = make_samples(records, tasks=("region_class",), split="eval", seed=seed, per_record=4, max_targets=3)
    ds = InstructDataset(records, samples, int(model.config.tile_size))
    right = total = 0
    for i in range(len(samples)):
        if total >= limit:
            break
        it = ds[i]
        names, _ = model.classify_regions(it["image"][None].to(model.device), it["region_masks"][None].bool())
        for pred, lab in zip(names[0], it["sample"].region_categories):
            right += pred == lab
            total += 1
    return {"region_accuracy": right / total if total else None, "regions_scored": total}


def _scenes(model: Any, root: str | Path, seed: int) -> dict[str, Any]:
    from geopix_tiles.model.answer import article
    from geopix_tiles.model.dialogue import View

    from .dialogue_heads import chip_pixels, scene_split

    if model.scene_head is None:
        return {}
    rng = random.Random(seed)
    classes = list(model.config.scene_classes)
    chips = scene_split(root)["eval"]
    right, pres = [], []
    for path, k in chips:
        x = torch.from_numpy(chip_pixels(path, int(model.config.tile_size)))
        view = View(model, model.encode_images(x[None].to(model.device)))
        probs = model.scene_probabilities(encoding=view.encoding)[0]
        right.append(int(probs.argmax()) == k)
        other = rng.choice([j for j in range(len(classes)) if j != k])
        for j, truth in ((k, True), (other, False)):
            r = model.chat(view, f"Is there {article(classes[j])} {classes[j]} in this image?")
            pres.append(r.text.startswith("Yes") == truth)
    return {"scene_accuracy": float(np.mean(right)), "scene_presence_accuracy": float(np.mean(pres)),
            "scene_chips": len(chips)}
