"""Segmentation and region metrics with the exact definitions used by LISA / GeoPix / Osprey.

* cIoU (cumulative IoU) = sum_i I_i / sum_i U_i over all (prediction, target) pairs, so
  large objects weigh more. If every pair is empty (total union 0) it is 1.0: nothing to
  find and nothing found.
* gIoU = mean_i I_i / U_i, with 1.0 for a pair whose union is empty (an absent target
  correctly predicted absent).
* per-class IoU = sum I / sum U over the pairs of each class.
* region accuracy = fraction of regions whose predicted class equals the label, after
  normalising case and whitespace.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

__all__ = ["intersection_union", "SegmentationMeter", "region_accuracy", "normalise_label"]


def intersection_union(pred: np.ndarray, target: np.ndarray) -> tuple[int, int]:
    """Pixel counts ``(|P & T|, |P | T|)`` of two binary masks of one shape."""
    p = np.asarray(pred).astype(bool)
    t = np.asarray(target).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and target {t.shape} differ in shape")
    return int(np.count_nonzero(p & t)), int(np.count_nonzero(p | t))


@dataclass
class SegmentationMeter:
    """Accumulates I and U per (prediction, target) pair; mergeable across processes."""

    inter: list[int] = field(default_factory=list)
    union: list[int] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)

    def add(self, pred: np.ndarray, target: np.ndarray, category: str = "") -> None:
        i, u = intersection_union(pred, target)
        self.add_counts(i, u, category)

    def add_counts(self, inter: int, union: int, category: str = "") -> None:
        if inter < 0 or union < inter:
            raise ValueError(f"invalid counts I={inter} U={union}")
        self.inter.append(int(inter))
        self.union.append(int(union))
        self.classes.append(category)

    def merge(self, other: "SegmentationMeter") -> "SegmentationMeter":
        return SegmentationMeter(self.inter + other.inter, self.union + other.union, self.classes + other.classes)

    def __len__(self) -> int:
        return len(self.inter)

    @property
    def ciou(self) -> float:
        total_u = sum(self.union)
        if total_u == 0:
            return 1.0 if self.inter else float("nan")
        return sum(self.inter) / total_u

    @property
    def giou(self) -> float:
        if not self.inter:
            return float("nan")
        return float(np.mean([1.0 if u == 0 else i / u for i, u in zip(self.inter, self.union)]))

    def per_class_iou(self) -> dict[str, float]:
        inter: dict[str, int] = defaultdict(int)
        union: dict[str, int] = defaultdict(int)
        for i, u, c in zip(self.inter, self.union, self.classes):
            inter[c] += i
            union[c] += u
        return {c: (1.0 if union[c] == 0 else inter[c] / union[c]) for c in sorted(inter)}


def normalise_label(text: str) -> str:
    """Case- and whitespace-insensitive class name (``"Storage  Tank."`` -> ``"storage tank"``)."""
    return " ".join(str(text).lower().replace("_", " ").strip(" .,;:!?\n\t").split())


def region_accuracy(predicted: Sequence[str], labels: Sequence[str]) -> float:
    """Fraction of regions classified correctly; ``nan`` when there are none."""
    if len(predicted) != len(labels):
        raise ValueError(f"{len(predicted)} predictions for {len(labels)} labels")
    if not labels:
        return float("nan")
    return sum(normalise_label(p) == normalise_label(t) for p, t in zip(predicted, labels)) / len(labels)


def class_confusion(predicted: Iterable[str], labels: Iterable[str]) -> dict[str, dict[str, int]]:
    """``{label: {predicted: count}}`` for reporting which classes are confused."""
    out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for p, t in zip(predicted, labels):
        out[normalise_label(t)][normalise_label(p)] += 1
    return {k: dict(v) for k, v in out.items()}
