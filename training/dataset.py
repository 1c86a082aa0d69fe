"""Instruction samples -> model batches, with a step-indexed, rank-aware sample order.

The order of samples is a pure function of ``(seed, stage, step)``: the global batch of a
step is a slice of a seeded permutation (one per epoch), and micro-batch ``m`` of it goes to
rank ``m % world`` at accumulation step ``m // world``. So resuming at step ``s`` needs no
sampler state, and ``world=2, accum=1`` sees exactly the micro-batches of ``world=1,
accum=2``: the property that makes DDP gradients equal single-process ones.
"""
from __future__ import annotations

import math
import random
from collections import OrderedDict
from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from geopix_tiles.errors import InputError

from . import rle
from .augment import DEGRADATIONS, augment_sample, degrade, recolor_objects, with_cloud
from .instruct import IMAGE, SEG, InstructSample, expand_seg
from .records import ImageRecord

__all__ = ["InstructDataset", "step_indices", "collate"]


@lru_cache(maxsize=8)
def _permutation(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return tuple(torch.randperm(n, generator=g).tolist())


def step_indices(n: int, seed: int, step: int, global_batch: int) -> list[int]:
    """Sample indices of the global batch of ``step`` (epochs of seeded permutations)."""
    if n <= 0:
        raise InputError("no training samples: the data has no images or no instances for the stage's tasks")
    start = step * global_batch
    return [_permutation(n, seed, pos // n)[pos % n] for pos in range(start, start + global_batch)]


def micro_indices(global_idx: Sequence[int], batch: int, world: int, rank: int, micro_step: int) -> list[int]:
    m = micro_step * world + rank
    return list(global_idx[m * batch:(m + 1) * batch])


class InstructDataset:
    """Decodes images and masks of instruction samples; images cached (LRU) per record."""

    def __init__(self, records: Sequence[ImageRecord], samples: Sequence[InstructSample], size: int,
                 channels: int = 3, cache: int = 64, class_names: Sequence[str] = (), augment: bool = False,
                 seed: int = 0, haze: float = 0.0, clouds: float = 0.0, coarse: Sequence[str] = (),
                 coarse_zoom: Sequence[float] = (0.08, 0.5), coarse_p: float = 0.5, degrade: float = 0.0,
                 degrade_ops: Sequence[str] = (), recolor: float = 0.0,
                 recolor_classes: Sequence[str] = ("building",)) -> None:
        self.records = list(records)
        self.samples = list(samples)
        self.size = int(size)
        self.channels = channels
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._cache_n = cache
        self.class_ids = {c: i for i, c in enumerate(class_names)}
        self.augment = augment
        self.haze = haze
        self.clouds = clouds
        self.coarse = tuple(coarse)
        self.coarse_zoom = (float(coarse_zoom[0]), float(coarse_zoom[1]))
        self.coarse_p = float(coarse_p)
        self.degrade = float(degrade)
        self.degrade_ops = tuple(degrade_ops) or DEGRADATIONS
        self.recolor = float(recolor)
        self.recolor_classes = tuple(recolor_classes)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.samples)

    def image(self, ri: int) -> torch.Tensor:
        if ri in self._cache:
            self._cache.move_to_end(ri)
            return self._cache[ri]
        arr = self.records[ri].load()
        c = arr.shape[0]
        if c == 1:
            arr = np.repeat(arr, self.channels, axis=0)
        elif c > self.channels:
            arr = arr[: self.channels]
        elif c < self.channels:
            raise InputError(f"image {self.records[ri].image_path} has {c} bands; the model needs {self.channels}")
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        if t.shape[-2:] != (self.size, self.size):
            t = F.interpolate(t[None], size=(self.size, self.size), mode="bilinear", align_corners=False)[0]
        self._cache[ri] = t
        if len(self._cache) > self._cache_n:
            self._cache.popitem(last=False)
        return t

    def _masks(self, rles: Sequence[dict[str, Any]]) -> torch.Tensor:
        if not rles:
            return torch.zeros((0, self.size, self.size), dtype=torch.float32)
        m = torch.from_numpy(np.stack([rle.decode(r) for r in rles]).astype(np.float32))
        if m.shape[-2:] != (self.size, self.size):
            m = F.interpolate(m[None], size=(self.size, self.size), mode="nearest")[0]
        return m

    def _cloud_over(self, image: torch.Tensor, masks: torch.Tensor, k: int,
                    i: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """With chance ``clouds``: a synthetic cloud over a cloud-free chip, answer ``k`` its mask.

        Ground under the opaque part is not seen, so the other targets lose it there, as a
        labeller would have drawn them. Its own seed: the geometric and colour draws of
        :func:`augment_sample` stay those of a run without clouds.
        """
        rng = random.Random((self.seed + 1) * 7_000_003 + i)
        if rng.random() >= self.clouds:
            return image, masks, False
        image, cloud = with_cloud(image, rng)
        masks = masks * (1.0 - cloud)
        masks[k] = cloud
        return image, masks, True

    def __getitem__(self, i: int) -> dict[str, Any]:
        s = self.samples[i]
        q = s.question.replace(IMAGE, "").strip()
        image, masks = self.image(s.record), self._masks(s.target_masks)
        clouded = False
        if self.clouds and s.task == "category_seg" and "cloud" in s.target_categories \
                and self.records[s.record].meta.get("synthetic_clouds"):
            image, masks, clouded = self._cloud_over(image, masks, s.target_categories.index("cloud"), i)
        painted = None if clouded else self._recolored(s.record, image, i)
        if self.augment:
            zoom = self._coarse_zoom(s, i)
            if painted is not None:  # the same draws (none depends on the pixels): the two stay aligned
                painted, _ = augment_sample(painted, masks, s.task == "category_seg", self.seed, i, self.haze, zoom=zoom)
            image, masks = augment_sample(image, masks, s.task == "category_seg", self.seed, i, self.haze, zoom=zoom)
        clean = None  # what the anchor answers on: the chip before repainting and degrading
        if painted is not None:
            clean, image = image, painted
        if self.degrade:
            rng = random.Random((self.seed + 5) * 11_000_027 + i)  # its own seed: the other draws stay as without it
            if rng.random() < self.degrade:
                if clean is None:
                    clean = image
                image = degrade(image, rng, self.degrade_ops)
        return {
            "image": image,
            "question": q,
            "answer": s.answer,
            "target_texts": s.texts(),
            "gt_masks": masks,
            "region_masks": self._masks(s.region_masks),
            "class_labels": torch.tensor([self.class_ids.get(c, -1) for c in s.target_categories], dtype=torch.long),
            "sample": s,
            "clouded": clouded,
            "clean_image": clean,
            "source": self.records[s.record].meta.get("source"),
            "absent": self._absent(s.record),
        }

    def _recolored(self, r: int, image: torch.Tensor, i: int) -> torch.Tensor | None:
        """With chance ``recolor``: the chip with its ``recolor_classes`` objects repainted (None: not drawn).

        Its own seed, so every other draw is that of a run without it. The anchor answers on the
        original chip (``clean_image``), which is what makes the repainted roof a roof.
        """
        if not self.recolor:
            return None
        objects = {c: [inst.mask_rle for inst in self.records[r].instances if inst.category == c]
                   for c in self.recolor_classes}
        rng = random.Random((self.seed + 9) * 13_000_027 + i)
        if not any(objects.values()) or rng.random() >= self.recolor:
            return None
        for c, rles in objects.items():  # each class in its own colours (training.augment.RECOLOR_PALETTES)
            if rles:
                image = recolor_objects(image, list(self._masks(rles)), rng, category=c)
        return image

    def _coarse_zoom(self, s: InstructSample, i: int) -> float | None:
        """The zoom a ``coarse`` source's category sample is shown at instead of the usual draw (None: usual).

        Its own seed, so every other draw is that of a run without ``coarse``.
        """
        source = str(self.records[s.record].meta.get("source", ""))
        if not self.coarse or s.task != "category_seg" or not source.startswith(self.coarse):
            return None
        rng = random.Random((self.seed + 3) * 9_000_011 + i)
        if rng.random() >= self.coarse_p:
            return None
        lo, hi = self.coarse_zoom
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))

    def _absent(self, r: int) -> tuple[str, ...]:
        """Classes the record is labelled for that it has no instance of (known to be absent)."""
        rec = self.records[r]
        have = {i.category for i in rec.instances}
        return tuple(c for c in rec.meta.get("classes") or () if c not in have)


def mark_cloud_free(records: Sequence[ImageRecord], sources: Sequence[str], clouds_over: Sequence[str] = ()) -> int:
    """Count chips of the cloud-free ``sources`` as labelled for clouds (none there); returns how many.

    Only chips labelled exhaustively for something: a chip with partial labels says nothing
    about what else it holds. Those of ``clouds_over`` (all, when empty) may get a synthetic
    cloud (``InstructDataset(clouds=...)``); the others are only asked and answer "none".
    """
    n = 0
    for rec in records:
        classes, source = rec.meta.get("classes"), str(rec.meta.get("source", ""))
        if classes and source.startswith(tuple(sources)):
            rec.meta["classes"] = sorted(set(classes) | {"cloud"})
            rec.meta["synthetic_clouds"] = not clouds_over or source.startswith(tuple(clouds_over))
            n += 1
    return n


def collate(items: Sequence[dict[str, Any]], processor: Any) -> dict[str, Any]:
    """A batch for ``GeoPixModel.forward`` (SEG placeholders expanded to the model's tokens)."""
    seg_text = processor.seg_text
    convs = [[(it["question"], expand_seg(it["answer"], [seg_text]) if SEG in it["answer"] else it["answer"])]
             for it in items]
    images = torch.stack([it["image"] for it in items])
    batch = processor.build_batch(images, convs, gt_masks=[it["gt_masks"] for it in items],
                                  region_masks=[it["region_masks"] for it in items])
    batch["class_labels"] = [it["class_labels"] for it in items]
    batch["target_texts"] = [it["target_texts"] for it in items]
    return batch
