"""Fit the presence check (:class:`model.presence_check.PresenceCheck`) on a trained model.

Its examples are the questions the mask rule answers "yes" to (the check can only veto a
yes): every class a training chip is labelled for, with the label mask's verdict as truth,
and UC Merced chips of the scene head's training indices (0-59) with the classes their
scene rules out (truth "no") or surely shows (truth "yes", :mod:`.scene_negatives`). The
second set is what teaches it other sensors: the shipped mask head says "yes" to 45 % of
the classes UC Merced scenes rule out. Held-out chips (the validation split, UC Merced
60-79) are never seen here.

A class-balanced, L2-regularised logistic regression on standardised features, fitted with
L-BFGS in torch (no new dependency); ``C`` as in scikit-learn. The segmentation weights do
not move, so ``segment`` outputs are unchanged.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .records import ImageRecord

__all__ = ["check_examples", "fit_check", "add_presence_check", "scene_check_records"]


def _truths(rec: ImageRecord, size: int) -> list[tuple[str, bool]]:
    from geopix_tiles.model.answer import present

    if rec.meta.get("source") == "uc_merced_negatives":
        return [(c, False) for c in rec.meta.get("classes") or []] + \
            [(c, True) for c in rec.meta.get("present_classes") or []]
    from .dialogue_eval import _label_masks

    labels = _label_masks(rec, size)
    out = []
    for c in rec.meta.get("classes") or []:
        gt = labels.get(c)
        out.append((c, gt is not None and present(int(gt.sum()), float(gt.mean()))))
    return out


def _images(records: Sequence[ImageRecord], size: int) -> torch.Tensor:
    """Pixels exactly as chat and evaluate see them: exported chips through the dataset, scene chips resized."""
    if records[0].meta.get("source") == "uc_merced_negatives":
        import warnings

        from rasterio.errors import NotGeoreferencedWarning

        from .prompt_eval import tile_batch

        with warnings.catch_warnings():  # UC Merced chips are plain JPEGs: no georeferencing by design
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return tile_batch(records, size)
    from .dataset import InstructDataset

    ds = InstructDataset(list(records), [], size, cache=1)
    return torch.stack([ds.image(i) for i in range(len(records))])


@torch.no_grad()
def check_examples(model: Any, check: Any, records: Sequence[ImageRecord], batch: int = 8,
                   log_every: int = 0, mask_model: Any = None) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Features ``[N, D]``, truths ``[N]`` and class names of the questions the mask rule says "yes" to.

    ``mask_model``: the masks (and so which questions the rule says "yes" to, and where features
    are pooled) come from this model instead, a fold model that never trained on ``records``
    (:mod:`.cross_fit`); the features stay ``model``'s, as when the check answers.
    """
    from geopix_tiles.model.answer import present
    from geopix_tiles.model.dialogue import class_phrases

    phrases = dict(class_phrases(model))
    size = int(model.config.tile_size)
    xs, ys, names = [], [], []
    for start in range(0, len(records), batch):
        chunk = list(records[start:start + batch])
        asked = [[(c, t) for c, t in _truths(r, size) if c in phrases] for r in chunk]
        classes = sorted({c for q in asked for c, _ in q})
        if not classes:
            continue
        images = _images(chunk, size).to(model.device)
        enc = model.encode_images(images)
        masker = model if mask_model is None else mask_model
        menc = enc if mask_model is None else masker.encode_images(images)
        probs = torch.sigmoid(masker.segment_encoded(menc, [phrases[c] for c in classes])[0].float())
        feats = check.features(enc.feats, probs, classes)
        for i, q in enumerate(asked):
            for c, truth in q:
                j = classes.index(c)
                m = probs[i, j] > 0.5
                if present(int(m.sum()), float(m.float().mean())):
                    xs.append(feats[i, j].cpu())
                    ys.append(float(truth))
                    names.append(c)
        if log_every and (start // batch) % log_every == 0:
            print(f"presence check examples: {start + len(chunk)}/{len(records)} chips", flush=True)
    if not xs:
        raise ValueError("no chip gave a mask-rule 'yes'; nothing to fit the presence check on")
    return torch.stack(xs), torch.tensor(ys), names


def fit_check(check: Any, x: torch.Tensor, y: torch.Tensor, c: float = 0.03, steps: int = 200) -> dict[str, float]:
    """Set ``check``'s standardisation and weights: balanced logistic regression, L2 ``1 / (2 C)``."""
    x, y = x.double(), y.double()
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / scale
    pos = float(y.mean())
    if pos in (0.0, 1.0):
        raise ValueError("the presence check needs both true and false 'yes' examples")
    weight = torch.where(y > 0.5, 0.5 / pos, 0.5 / (1 - pos))  # scikit-learn's "balanced"
    w = torch.zeros(z.shape[1], dtype=torch.double, requires_grad=True)
    b = torch.zeros((), dtype=torch.double, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def loss_fn() -> torch.Tensor:
        opt.zero_grad()
        logits = z @ w + b
        loss = (weight * torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")).sum() \
            + 0.5 / c * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(loss_fn)
    with torch.no_grad():
        check.mean.copy_(mean.float())
        check.scale.copy_(scale.float())
        check.fc.weight.copy_(w.detach().float()[None])
        check.fc.bias.copy_(b.detach().float()[None])
        p = torch.sigmoid(z @ w + b)
        acc = float(((p >= check.threshold) == (y > 0.5)).double().mean())
    return {"examples": int(len(y)), "true_yes_share": pos, "train_accuracy": acc}


def add_presence_check(model: Any, records: Sequence[ImageRecord], scene_records: Sequence[ImageRecord],
                       c: float = 0.03, threshold: float = 0.5,
                       fold_models: Mapping[str, Any] | None = None, own_masks_too: bool = False) -> dict[str, Any]:
    """Fit a presence check on ``records`` (labelled chips) and ``scene_records`` and attach it to ``model``.

    ``fold_models`` (fold name -> the model trained without that fold, :mod:`.cross_fit`): each
    labelled chip's masks come from the model that did not train on it (out-of-fold), so the
    check learns from the mistakes the mask head makes on unseen scenes. UC Merced chips were
    never trained on: the shipped model's own masks. ``own_masks_too``: the labelled chips' examples
    under the model's own masks as well (both kinds of mistakes; the 2026-12-04 design study's "both").
    """
    from geopix_tiles.model.presence_check import PresenceCheck

    if own_masks_too and not fold_models:
        raise ValueError("own_masks_too adds the model's own masks beside out-of-fold ones; pass fold_models too")
    model.eval()
    classes = model.class_names()
    check = PresenceCheck(model.vision.channels, classes, threshold).to(model.device)
    t0 = time.time()
    groups: list[tuple[Sequence[ImageRecord], Any]] = [(records, None), (scene_records, None)]
    if fold_models:
        from .cross_fit import split_folds

        folds = split_folds(records)
        groups = [(folds[f], m) for f, m in fold_models.items()] + [(scene_records, None)]
        if own_masks_too:
            groups.insert(0, (records, None))
    xs, ys, names = [], [], []
    for group, masker in groups:
        if group:
            x, y, n = check_examples(model, check, group, log_every=40, mask_model=masker)
            xs.append(x), ys.append(y), names.extend(n)
    stats = fit_check(check, torch.cat(xs), torch.cat(ys), c)
    model.presence_check = check
    model.config.extra["presence_check"] = {"classes": classes, "threshold": threshold}
    stats.update({"C": c, "threshold": threshold, "feature_s": round(time.time() - t0, 1),
                  "masks": ("the model's own and out-of-fold" if own_masks_too else "out-of-fold (training.cross_fit)")
                  if fold_models else "the model's own",
                  "examples_per_class": {k: int(v) for k, v in zip(*np.unique(names, return_counts=True))}})
    return stats


def scene_check_records(uc_root: str | Path) -> list[ImageRecord]:
    """UC Merced chips 0-59 (the scene head's training indices) as presence-check examples."""
    from .scene_negatives import scene_negative_records

    return scene_negative_records(uc_root, range(0, 60))
