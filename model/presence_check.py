"""A second look at a "yes": do the pixels a mask covers look like the class it names?

Presence, counts and areas in a reply are read from the reply's own mask
(:func:`.answer.present`), so a confident wrong mask becomes a wrong "yes". On scenes from
other places and sensors most wrong "yes" answers are coherent regions the mask head is sure
of (bluish desert painted as vegetation, shadows as water, bright tank roofs as clouds), so no
rule on the mask's size, shape or confidence separates them (``benchmarks/results/presence_rules.md``).
What does separate many of them is what the tower sees *under* the mask, beside the scene
as a whole: this check is a linear probe on the tower features averaged inside the mask
(stride 16 and 32), the scene's pooled features (what the scene head reads), the class and
the mask's shape. It is trained after the model (``training.presence_check``) on in-domain
chips and on another sensor's scene labels, and it can only turn a "yes" into a "no" (or,
for a segment request, add a warning): it never creates pixels. ``segment`` applies it to each
model tile (:func:`veto_tiles`).
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MAX_VETO_SHARE", "PresenceCheck", "SURE_NO", "TILE_CHECK_SKIPS", "largest_part_shares", "mask_shape",
           "mask_shapes", "masked_mean", "presence_check_off", "tile_doubts", "tile_yes", "veto_tiles"]

#: classes ``segment`` never drops from a tile: the check's clouds come from one Sentinel-2 chip and
#: UC Merced negatives, and on the Landsat-7 sample it vetoed real clouds (recall 0.45 -> 0.007)
TILE_CHECK_SKIPS = ("cloud",)

#: a mask over more than this share of its tile (``segment``) or view (a reply) is vetoed only when the
#: check is sure (probability below :data:`SURE_NO`). The check learnt its "no" mostly from stray patches (dark
#: turf, road shadows, bluish sand: on Dubai tile_7 no vetoed tile's mask covered more than 0.37 of
#: it); a mask over most of a tile is the surface the tile shows, and cutting it leaves a tile-shaped
#: hole. On the Landsat-7 sample the check doubted four tiles of open sea (shares 0.63-0.90, check
#: 0.12-0.38); on UC Merced fields painted whole as buildings it is sure (0.00-0.07)
#: (``benchmarks/results/tile_check.md``)
MAX_VETO_SHARE = 0.5
SURE_NO = 0.1

#: tower stages pooled inside the mask (stride 16 and 32)
STAGES = (-2, -1)


def masked_mean(feats: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Features ``[B, C, h, w]`` averaged under each weight map ``[B, K, H, W]`` (area-resampled): ``[B, K, C]``."""
    w = F.adaptive_avg_pool2d(weights.to(feats.dtype), feats.shape[-2:])
    return torch.einsum("bkhw,bchw->bkc", w, feats) / w.sum((2, 3))[..., None].clamp_min(1e-6)


def mask_shape(prob: np.ndarray) -> tuple[float, float, float]:
    """(largest 4-connected part, mean probability inside, log share) of the mask ``prob > 0.5``."""
    from scipy import ndimage

    m = prob > 0.5
    if not m.any():
        return 0.0, 0.0, float(np.log(1e-4))
    lab, _ = ndimage.label(m)
    largest = float(np.bincount(lab.ravel())[1:].max() / m.size)
    return largest, float(prob[m].mean()), float(np.log(m.mean() + 1e-4))


def largest_part_shares(masks: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` bool -> ``[N]`` share of the pixels in each mask's largest 4-connected part.

    The same number as :func:`mask_shape`'s first value, computed where the masks are. On a GPU
    the per-mask ``scipy.ndimage.label`` of :func:`mask_shape` (a copy to the host and ~0.7 ms of
    one CPU core per tile and class) capped the default model at ~220 tiles/s on an H200
    whatever the batch (``benchmarks/results/gpu.md``). Connected parts by label propagation
    with root hooking and pointer jumping: every foreground pixel starts as its own flat index;
    each round takes the smallest label among its 4 neighbours, hooks the roots of both to the
    smaller one and follows labels to their roots, until nothing changes. Labels only ever point
    to pixels of the same part and only decrease, so the loop ends with one label per part
    (a handful of rounds for blobs, more for long thin parts such as roads).
    """
    n, h, w = masks.shape
    hw = h * w
    if n == 0 or hw == 0:
        return torch.zeros(n, device=masks.device)
    fg = masks.reshape(n, hw).bool()
    sentinel = torch.full((n, 1), hw, dtype=torch.long, device=masks.device)
    idx = torch.arange(hw, device=masks.device).expand(n, hw)
    lab = torch.cat([torch.where(fg, idx, hw), sentinel], 1)  # column hw: the background's label
    fg_ext = torch.cat([fg, torch.zeros(n, 1, dtype=torch.bool, device=masks.device)], 1)
    while True:
        grid = lab[:, :hw].view(n, h, w)
        nb = grid.clone()
        nb[:, 1:] = torch.minimum(nb[:, 1:], grid[:, :-1])
        nb[:, :-1] = torch.minimum(nb[:, :-1], grid[:, 1:])
        nb[:, :, 1:] = torch.minimum(nb[:, :, 1:], grid[:, :, :-1])
        nb[:, :, :-1] = torch.minimum(nb[:, :, :-1], grid[:, :, 1:])
        nb = torch.cat([torch.where(fg, nb.view(n, hw), hw), sentinel], 1)
        new = lab.scatter_reduce(1, lab, nb, reduce="amin")  # hook each root to its pixels' smallest neighbour
        new = torch.minimum(new, nb)
        while True:  # pointer jumping: labels to their roots
            jumped = torch.gather(new, 1, new)
            if torch.equal(jumped, new):
                break
            new = jumped
        new = torch.where(fg_ext, new, hw)
        if torch.equal(new, lab):
            break
        lab = new
    keys = (lab[:, :hw] + torch.arange(n, device=masks.device)[:, None] * (hw + 1))[fg]
    counts = torch.bincount(keys, minlength=n * (hw + 1)).view(n, hw + 1)[:, :hw]
    return counts.max(1).values.float() / hw


def mask_shapes(probs: torch.Tensor) -> torch.Tensor:
    """:func:`mask_shape` of every mask of ``probs [B, K, H, W]`` at once, where they are: ``[B, K, 3]``."""
    b, k, h, w = probs.shape
    m = probs > 0.5
    area = m.flatten(2).sum(-1)
    largest = largest_part_shares(m.reshape(b * k, h, w)).view(b, k)
    inside = torch.where(m, probs, 0).flatten(2).sum(-1) / area.clamp_min(1)
    log_share = torch.log(area.float() / (h * w) + 1e-4)
    empty = area == 0
    return torch.stack([largest.masked_fill(empty, 0.0), inside.float().masked_fill(empty, 0.0),
                        log_share.masked_fill(empty, float(np.log(1e-4)))], -1).float()


@contextlib.contextmanager
def presence_check_off(model: Any) -> Iterator[Any]:
    """Answer from the masks alone inside the block (to score what the check adds); yields the check."""
    check = getattr(model, "presence_check", None)
    model.presence_check = None
    try:
        yield check
    finally:
        model.presence_check = check


class PresenceCheck(nn.Module):
    """``P(class really there | mask says yes)`` from pooled tower features and the mask's shape.

    The standardisation (``mean``, ``scale``) is stored with the weights, so the probe reads
    raw features; ``threshold`` is the probability below which a "yes" is vetoed.
    """

    def __init__(self, channels: Sequence[int], classes: Sequence[str], threshold: float = 0.5) -> None:
        super().__init__()
        self.classes = [str(c) for c in classes]
        self.threshold = float(threshold)
        dim = sum(int(channels[s]) for s in STAGES) + int(channels[-2]) + int(channels[-1]) + len(self.classes) + 3
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.fc = nn.Linear(dim, 1)

    def features(self, feats: Sequence[torch.Tensor], probs: torch.Tensor, classes: Sequence[str],
                 needed: torch.Tensor | None = None) -> torch.Tensor:
        """Raw features ``[B, K, D]`` of masks ``probs [B, K, H, W]`` (probabilities) naming ``classes``.

        ``needed`` (``[B, K]`` bool): the masks whose answer will be read; on a CPU the others
        skip the shape measures (their features are then not the real ones).
        """
        b, k = probs.shape[:2]
        probs = probs.float()
        inside = [masked_mean(feats[s].float(), probs) for s in STAGES]
        scene = torch.cat([feats[-2].float().mean((2, 3)), feats[-1].float().mean((2, 3))], 1)
        onehot = torch.zeros(k, len(self.classes))
        for j, c in enumerate(classes):
            if c in self.classes:
                onehot[j, self.classes.index(c)] = 1.0
        dev = inside[0].device
        if probs.device.type == "cpu":  # scipy's labelling is the faster one on a CPU
            arr = probs.detach().numpy()
            want = np.ones((b, k), bool) if needed is None else needed.cpu().numpy()
            blank = (0.0, 0.0, float(np.log(1e-4)))
            shape = torch.tensor([[mask_shape(arr[i, j]) if want[i, j] else blank for j in range(k)] for i in range(b)],
                                 dtype=torch.float32)
        else:
            shape = mask_shapes(probs.detach())
        return torch.cat(inside + [scene[:, None].expand(-1, k, -1), onehot[None].expand(b, -1, -1).to(dev),
                                   shape.to(dev)], -1)

    def vetoes(self, p: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
        """bool: the check's probabilities ``p`` veto masks covering ``share`` of their view or tile.

        The bar is :attr:`threshold`, and :data:`SURE_NO` for a mask over more than
        :data:`MAX_VETO_SHARE` of it (cutting it would cut the surface the view shows).
        """
        return p < torch.where(share > MAX_VETO_SHARE, SURE_NO, self.threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probability that each mask's class is really there, from :meth:`features`."""
        x = (x.to(self.fc.weight.dtype) - self.mean) / self.scale
        return torch.sigmoid(self.fc(x))[..., 0]

    @torch.no_grad()
    def confirm(self, feats: Sequence[torch.Tensor], probs: torch.Tensor, classes: Sequence[str],
                needed: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, K]`` probabilities; a "yes" stands when it is >= :attr:`threshold` (see :meth:`features`)."""
        return self(self.features(feats, probs, classes, needed))


def tile_yes(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``probs [B, K, H, W]`` -> ``[B, K]`` each mask's share of its tile, and whether it says "yes".

    The reply rule of :func:`.answer.present`, on tensors: the tiles the check is asked about.
    """
    from .answer import MIN_PRESENT_PIXELS, MIN_PRESENT_SHARE

    fg = (probs > 0.5).flatten(2)
    share = fg.float().mean(-1)
    return share, (fg.sum(-1) >= MIN_PRESENT_PIXELS) & (share >= MIN_PRESENT_SHARE)


def tile_doubts(check: PresenceCheck, feats: Sequence[torch.Tensor], probs: torch.Tensor,
                classes: Sequence[str | None]) -> torch.Tensor:
    """bool ``[B, P]``: True where tile ``b``'s mask says "yes" to prompt ``p`` and the check does not take it.

    A mask over more than :data:`MAX_VETO_SHARE` of its tile is doubted only below :data:`SURE_NO`.

    The verdicts :func:`veto_tiles` acts on; a conversation over a tiled window keeps them so that
    its words ("what first looked like X does not on a closer look") follow the same tiles as
    its masks. ``classes`` names each prompt's class (``None``: a prompt the check knows nothing of).
    """
    out = torch.zeros(probs.shape[:2], dtype=torch.bool, device=probs.device)
    idx = [j for j, c in enumerate(classes) if c in check.classes and c not in TILE_CHECK_SKIPS]
    if not idx:
        return out
    sub = probs[:, idx]
    share, said_yes = tile_yes(sub)
    if bool(said_yes.any()):
        p = check.confirm(feats, sub, [classes[j] for j in idx], needed=said_yes)
        out[:, idx] = check.vetoes(p, share) & said_yes
    return out


def veto_tiles(check: PresenceCheck, feats: Sequence[torch.Tensor], probs: torch.Tensor,
               classes: Sequence[str | None], doubts: torch.Tensor | None = None) -> torch.Tensor:
    """``probs [B, P, H, W]`` with each class zeroed in the tiles where the check vetoes its "yes".

    What a reply does for a view, ``segment`` does for each model tile: a tile whose mask says
    "yes" under the reply rule (:func:`.answer.present`) but whose pixels the check does not
    take for the class loses that class. On Dubai tile_7 (never trained on) water IoU 0.55 ->
    0.63 through ``segment``, the other classes within 0.003 (``benchmarks/results/tile_check.md``).
    ``classes`` names each prompt's class (``None``: a prompt the check knows nothing of);
    ``doubts`` are :func:`tile_doubts`' verdicts when the caller has them already.
    """
    doubt = tile_doubts(check, feats, probs, classes) if doubts is None else doubts
    if not bool(doubt.any()):
        return probs
    return probs.masked_fill(doubt[..., None, None], 0.0)
