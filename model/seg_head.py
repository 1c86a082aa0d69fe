"""GeoPix SEG-token head: LLM hidden states at the 2 x 3 SEG tokens -> one prompt per scale.

Each scale gets three tokens so the LLM can spread what it knows about the target over
several states; learnable scalars (initialised to an even 1/3 mix) let training decide how
much each contributes instead of fixing a mean.
"""
from __future__ import annotations

import torch
from torch import nn


class SegTokenHead(nn.Module):
    """``[N, scales*tokens, hidden]`` -> ``[N, scales, prompt_dim]``."""

    def __init__(self, hidden_size: int, prompt_dim: int, num_scales: int, tokens_per_scale: int) -> None:
        super().__init__()
        self.num_scales = num_scales
        self.tokens_per_scale = tokens_per_scale
        self.mlp = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(inplace=True),
                                 nn.Linear(hidden_size, prompt_dim))
        self.mix = nn.Parameter(torch.full((num_scales, tokens_per_scale), 1.0 / tokens_per_scale))

    def forward(self, seg_hidden: torch.Tensor) -> torch.Tensor:
        n = seg_hidden.shape[0]
        emb = self.mlp(seg_hidden.to(self.mix.dtype))
        emb = emb.view(n, self.num_scales, self.tokens_per_scale, -1)
        return (emb * self.mix[None, :, :, None]).sum(2)
