"""Image tokens for the LLM (LLaVA-style projector).

The chosen stage is pooled to a fixed ``grid x grid`` before projection so the LLM sees the
same number of image tokens for any tile size: the KV prefix, the position budget and the
processor's placeholder count stay constant when the engine changes ``--tile``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ImageProjector(nn.Module):
    """``[B, C, h, w]`` stage features -> ``[B, grid*grid, hidden]`` LLM input embeddings."""

    def __init__(self, in_channels: int, hidden_size: int, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.mlp = nn.Sequential(nn.Linear(in_channels, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        if feats.shape[-2:] != (self.grid, self.grid):
            feats = F.adaptive_avg_pool2d(feats, self.grid)
        return self.mlp(feats.flatten(2).transpose(1, 2))
