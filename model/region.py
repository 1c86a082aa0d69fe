"""Aquila-plus / Osprey region path: a mask becomes two LLM input embeddings.

``<mask>`` carries *what* is inside the region (mask-aware average pooling of every
ConvNeXt stage, so both fine texture and coarse context survive); ``<pos>`` carries *where
and what shape* it is (the mask itself, downsampled and embedded). Pooling with
``sum(x*m) / (sum(m) + eps)`` keeps tiny regions finite and makes the feature independent of
region size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MaskAwareExtractor(nn.Module):
    """Per-level masked average pooling -> per-level Linear -> sum -> Linear to LLM width."""

    def __init__(self, channels: list[int], region_dim: int, hidden_size: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.level_proj = nn.ModuleList(nn.Linear(c, region_dim) for c in channels)
        self.out = nn.Sequential(nn.GELU(), nn.Linear(region_dim, hidden_size))

    def forward(self, feats: list[torch.Tensor], masks: torch.Tensor, tile_index: torch.Tensor) -> torch.Tensor:
        """``feats``: per-tile stage features; ``masks [R, H, W]``; ``tile_index [R]`` -> ``[R, hidden]``."""
        total = 0
        for proj, f in zip(self.level_proj, feats):
            m = F.interpolate(masks[:, None].to(f.dtype), size=f.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            x = f.index_select(0, tile_index)
            pooled = torch.einsum("rhw,rchw->rc", m, x) / (m.sum((1, 2))[:, None] + self.eps)
            total = total + proj(pooled)
        return self.out(total)


class ShapeEmbedding(nn.Module):
    """Mask resized to ``size x size``, flattened, MLP -> ``[R, hidden]``."""

    def __init__(self, size: int, shape_hidden: int, hidden_size: int) -> None:
        super().__init__()
        self.size = size
        self.mlp = nn.Sequential(nn.Linear(size * size, shape_hidden), nn.ReLU(inplace=True),
                                 nn.Linear(shape_hidden, hidden_size))

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        m = F.interpolate(masks[:, None].to(self.mlp[0].weight.dtype), size=(self.size, self.size),
                          mode="bilinear", align_corners=False)
        return self.mlp(m.flatten(1))
