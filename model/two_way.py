"""SAM-style two-way transformer, written for GeoPix's per-scale mask decoder.

Tokens (a learned mask token plus the SEG prompt) and image features attend to each other
in both directions. Only the few tokens get self-attention and an MLP; the image side gets
cross-attention alone, so the cost grows linearly with the number of pixels - important
because the fine scale runs at stride 8 and is repeated for every prompt.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention with an optional reduced internal width (SAM's downsample)."""

    def __init__(self, dim: int, heads: int, downsample: int = 1) -> None:
        super().__init__()
        inner = dim // downsample
        if inner % heads:
            raise ValueError("attention width must be divisible by the head count")
        self.heads = heads
        self.q = nn.Linear(dim, inner)
        self.k = nn.Linear(dim, inner)
        self.v = nn.Linear(dim, inner)
        self.out = nn.Linear(inner, dim)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b = q.shape[0]

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(b, x.shape[1], self.heads, -1).transpose(1, 2)

        o = F.scaled_dot_product_attention(split(self.q(q)), split(self.k(k)), split(self.v(v)))
        return self.out(o.transpose(1, 2).reshape(b, q.shape[1], -1))


class TwoWayBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, downsample: int, first: bool) -> None:
        super().__init__()
        self.first = first
        self.self_attn = Attention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.t2i = Attention(dim, heads, downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.ReLU(inplace=True), nn.Linear(mlp_dim, dim))
        self.norm3 = nn.LayerNorm(dim)
        self.i2t = Attention(dim, heads, downsample)
        self.norm4 = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, image: torch.Tensor, token_pe: torch.Tensor,
                image_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.first:  # SAM: the first layer's queries *are* the prompt, no residual yet
            tokens = self.self_attn(tokens, tokens, tokens)
        else:
            q = tokens + token_pe
            tokens = tokens + self.self_attn(q, q, tokens)
        tokens = self.norm1(tokens)
        q, k = tokens + token_pe, image + image_pe
        tokens = self.norm2(tokens + self.t2i(q, k, image))
        tokens = self.norm3(tokens + self.mlp(tokens))
        q = tokens + token_pe
        image = self.norm4(image + self.i2t(k, q, tokens))
        return tokens, image


class TwoWayTransformer(nn.Module):
    """``tokens [N, T, D]``, ``image [N, HW, D]`` -> refined (tokens, image)."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_dim: int, downsample: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(TwoWayBlock(dim, heads, mlp_dim, downsample, first=i == 0) for i in range(depth))
        self.final_t2i = Attention(dim, heads, downsample)
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, image: torch.Tensor, image_pe: torch.Tensor,
                final: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """``final=False`` skips the last token->image attention, for passes whose tokens are
        discarded (it would project every image token only to throw the result away)."""
        token_pe = tokens
        for block in self.blocks:
            tokens, image = block(tokens, image, token_pe, image_pe)
        if not final:
            return tokens, image
        q, k = tokens + token_pe, image + image_pe
        tokens = self.norm(tokens + self.final_t2i(q, k, image))
        return tokens, image


class RandomFourierPE(nn.Module):
    """Position encoding from a fixed Gaussian projection of normalised (x, y) (as in SAM).

    Resolution-free, so one decoder serves every tile size and scale.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("gauss", torch.randn(2, dim // 2, generator=g))

    def forward(self, h: int, w: int) -> torch.Tensor:
        ys = (torch.arange(h, device=self.gauss.device, dtype=self.gauss.dtype) + 0.5) / h
        xs = (torch.arange(w, device=self.gauss.device, dtype=self.gauss.dtype) + 0.5) / w
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1) * 2 - 1  # [h, w, 2]
        proj = 2 * math.pi * grid @ self.gauss
        return torch.cat([proj.sin(), proj.cos()], -1).reshape(h * w, -1)  # [hw, dim]
