"""LISA / GeoPix training objective: 1.0 x token CE + 2.0 x BCE + 0.5 x DICE.

Mask terms are computed per mask and then averaged over masks, so a sample with many small
targets does not outweigh one with a single large target by its pixel count.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def token_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross entropy; ``-100`` labels are ignored. Zero when nothing is labelled."""
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    if not (shift_labels != -100).any():
        return shift_logits.sum() * 0.0
    return F.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
                           ignore_index=-100)


def mask_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-mask mean pixel BCE, ``[N, H, W]`` -> ``[N]``."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none").flatten(1).mean(1)


def mask_dice(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Per-mask soft DICE loss, ``[N, H, W]`` -> ``[N]`` (LISA's form, smooth 1)."""
    p = logits.float().sigmoid().flatten(1)
    t = targets.float().flatten(1)
    inter = (p * t).sum(1)
    return 1 - (2 * inter + smooth) / (p.sum(1) + t.sum(1) + smooth)
