"""Class-wise memory (GeoPix), made compact and prompt-driven.

GeoPix stores a dense ``75 x 2 x 64 x 64 x 32 x 32`` memory (~629M parameters) and picks one
hard-coded class id at inference. Here each class owns a handful of slot vectors per decoder
level (``classes x levels x slots x dim``, well under a million parameters at base size), and
a small head on the SEG prompt predicts a softmax over classes, so the prompt - not a
constant - decides which memories the image features read.
"""
from __future__ import annotations

import torch
from torch import nn

from .two_way import Attention


class ClassMemory(nn.Module):
    def __init__(self, classes: int, levels: int, slots: int, dim: int, heads: int, prompt_dim: int) -> None:
        super().__init__()
        self.slots = nn.Parameter(torch.randn(classes, levels, slots, dim) * 0.02)
        self.class_head = nn.Sequential(nn.Linear(prompt_dim, prompt_dim), nn.GELU(), nn.Linear(prompt_dim, classes))
        # reduced inner width (as SAM's cross-attention): this runs on every pixel token of every prompt
        self.attn = Attention(dim, heads, downsample=2)
        self.norm = nn.LayerNorm(dim)

    def class_weights(self, prompts: torch.Tensor) -> torch.Tensor:
        """``[N, scales, prompt_dim]`` -> ``[N, classes]`` softmax weights (one per target)."""
        return self.class_head(prompts.mean(1)).softmax(-1)

    def class_logits(self, prompts: torch.Tensor) -> torch.Tensor:
        """Unnormalised class scores, for an optional class-supervision loss."""
        return self.class_head(prompts.mean(1))

    def read(self, image: torch.Tensor, weights: torch.Tensor, level: int) -> torch.Tensor:
        """Image tokens ``[N, HW, D]`` attend to the class-weighted slots of ``level``."""
        mem = torch.einsum("nc,csd->nsd", weights.to(self.slots.dtype), self.slots[:, level])
        return self.norm(image + self.attn(image, mem, mem))
