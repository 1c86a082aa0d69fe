"""GeoPix mask predictor: per-scale SAM-style decoders, coarse-to-fine gating, fusion.

Split into an image-only part (:class:`Neck`, run once per tile) and a per-prompt part
(:class:`MaskPredictor`), so whole-scene inference pays for the neck once no matter how
many prompts are asked.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .memory import ClassMemory
from .two_way import RandomFourierPE, TwoWayTransformer


class LayerNorm2d(nn.Module):
    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # one fused pass over channels-last memory (the channel axis last), statistics in fp32
        # even under bf16 autocast; five elementwise passes in the NCHW formulation
        dtype = x.dtype
        y = F.layer_norm(x.float().permute(0, 2, 3, 1), (x.shape[1],), self.weight.float(), self.bias.float(),
                         self.eps)
        return y.permute(0, 3, 1, 2).to(dtype)


class Neck(nn.Module):
    """conv3x3 + norm + act -> resize to the scale's grid -> conv3x3 to the decoder width."""

    def __init__(self, in_channels: int, dim: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, dim, 3, padding=1, bias=False)
        self.norm = LayerNorm2d(dim)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, feats: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
        x = self.act(self.norm(self.conv1(feats)))
        size = (image_hw[0] // self.stride, image_hw[1] // self.stride)
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.conv2(x)


class PixelDecoder(nn.Module):
    """FPN over all four tower stages -> one stride-4 pixel embedding per tile.

    The SAM-style decoders see stride-16/8 features only; 10-30 px roofs and 3-8 px roads need
    stride 4 and the tower's earliest stage. The embedding is image-only (run once per tile),
    and each prompt reads it with a single dot product (Mask2Former's "mask embedding x pixel
    embedding"), so the fine path costs almost nothing per extra prompt.
    """

    def __init__(self, in_channels: list[int], dim: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.out = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), LayerNorm2d(dim), nn.GELU(),
                                 nn.Conv2d(dim, dim, 1))

    def forward(self, feats: list[torch.Tensor], image_hw: tuple[int, int]) -> torch.Tensor:
        x = self.lateral[-1](feats[-1])
        for lateral, f in zip(reversed(self.lateral[:-1]), reversed(feats[:-1])):
            x = lateral(f) + F.interpolate(x, size=f.shape[-2:], mode="bilinear", align_corners=False)
        size = (image_hw[0] // 4, image_hw[1] // 4)
        if x.shape[-2:] != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.out(x)


class ScaleDecoder(nn.Module):
    """One scale: (mask token, prompt) x image -> two-way passes with a memory read -> mask.

    Pass 1 refines the image tokens, the class memory is read by cross-attention, pass 2
    (same weights) decodes the mask from the memory-enriched features.
    """

    def __init__(self, dim: int, prompt_dim: int, depth: int, heads: int, mlp_dim: int, downsample: int) -> None:
        super().__init__()
        self.prompt_proj = nn.Linear(prompt_dim, dim) if prompt_dim != dim else nn.Identity()
        self.mask_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.no_mask_embed = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.pe = RandomFourierPE(dim)
        self.transformer = TwoWayTransformer(dim, depth, heads, mlp_dim, downsample)
        self.upscale = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, 2, stride=2), LayerNorm2d(dim // 4), nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, 2, stride=2), nn.GELU(),
        )
        self.hyper = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim // 8))

    def forward(self, image: torch.Tensor, prompt: torch.Tensor, memory: ClassMemory, weights: torch.Tensor,
                level: int) -> torch.Tensor:
        """``image [N, D, h, w]``, ``prompt [N, prompt_dim]`` -> logits ``[N, 4h, 4w]``."""
        n, d, h, w = image.shape
        tokens = torch.cat([self.mask_token.expand(n, -1, -1), self.prompt_proj(prompt)[:, None]], 1)
        # contiguous once here, instead of an implicit copy inside every Linear below
        src = (image + self.no_mask_embed).flatten(2).transpose(1, 2).contiguous()
        pe = self.pe(h, w).to(src.dtype)[None]
        _, src = self.transformer(tokens, src, pe, final=False)
        src = memory.read(src, weights, level)
        out_tokens, src = self.transformer(tokens, src, pe)
        up = self.upscale(src.transpose(1, 2).reshape(n, d, h, w))
        hyper = self.hyper(out_tokens[:, 0])
        return torch.einsum("nc,nchw->nhw", hyper, up)


def _per_tile_dot(emb: torch.Tensor, feats: torch.Tensor, tile_index: torch.Tensor,
                  in_order: bool | None = None) -> torch.Tensor:
    """``einsum("nc,nchw->nhw", emb, feats[tile_index])`` without copying ``feats`` per prompt.

    Inference asks P prompts of each of B tiles in order (``tile_index = [0]*P + [1]*P ...``):
    then one batched matmul reads each tile's stride-4 embedding once instead of P times.
    ``in_order=None`` compares ``tile_index`` with that order (a host synchronisation on a GPU);
    ``True`` takes the caller's word for it.
    """
    b, c, h, w = feats.shape
    n = emb.shape[0]
    if n % b == 0:
        p = n // b
        if in_order is None:
            expected = torch.arange(b, device=tile_index.device).repeat_interleave(p)
            in_order = torch.equal(tile_index, expected)
        if in_order:
            flat = feats.reshape(b, c, h * w)
            return torch.bmm(emb.view(b, p, c).to(flat.dtype), flat).view(n, h, w)
    return torch.einsum("nc,nchw->nhw", emb, feats.index_select(0, tile_index))


class MaskPredictor(nn.Module):
    """Per-prompt part of the mask path.

    Scales run coarse to fine; each finer scale's features are gated by the previous mask,
    ``(sigmoid(mean(prev)) + 1) * feats`` (background keeps its features, likely foreground
    is amplified up to 2x), and the scale logits are fused with learnable weights.
    """

    def __init__(self, prompt_dim: int, dim: int, num_scales: int, depth: int, heads: int, mlp_dim: int,
                 downsample: int, memory: ClassMemory, pixel_dim: int = 0) -> None:
        super().__init__()
        self.decoders = nn.ModuleList(ScaleDecoder(dim, prompt_dim, depth, heads, mlp_dim, downsample)
                                      for _ in range(num_scales))
        self.memory = memory
        self.fusion = nn.Parameter(torch.full((num_scales,), 1.0 / num_scales))
        # optional fine path: all SEG prompts -> one vector dotted with the stride-4 pixel embedding
        self.pixel_embed = (nn.Sequential(nn.Linear(num_scales * prompt_dim, pixel_dim), nn.GELU(),
                                          nn.Linear(pixel_dim, pixel_dim)) if pixel_dim else None)

    def forward(self, scale_feats: list[torch.Tensor], prompts: torch.Tensor, tile_index: torch.Tensor,
                out_hw: tuple[int, int], pixel_feats: torch.Tensor | None = None, tiles_in_order: bool | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``scale_feats``: per-tile neck outputs; ``prompts [N, scales, prompt_dim]``;
        ``tile_index [N]`` says which tile each prompt belongs to (``tiles_in_order=True``: it is
        ``[0]*P + [1]*P + ...``, see :func:`_per_tile_dot`); ``pixel_feats`` is the
        per-tile stride-4 embedding when the model has a pixel decoder. Returns logits
        ``[N, H, W]`` and the class weights ``[N, classes]``."""
        if (pixel_feats is None) != (self.pixel_embed is None):
            raise ValueError("pixel_feats must be given exactly when the model has a pixel decoder")
        weights = self.memory.class_weights(prompts)
        prev = None
        logits = []
        for k, (decoder, feats) in enumerate(zip(self.decoders, scale_feats)):
            feats = feats.index_select(0, tile_index)
            if prev is not None:
                gate = F.interpolate(prev[:, None], size=feats.shape[-2:], mode="bilinear", align_corners=False)
                feats = (torch.sigmoid(gate.mean(1, keepdim=True)) + 1) * feats
            prev = decoder(feats, prompts[:, k], self.memory, weights, k)
            logits.append(prev)
        fine = logits[-1].shape[-2:]

        def at_fine(l: torch.Tensor) -> torch.Tensor:
            return l if l.shape[-2:] == fine else F.interpolate(l[:, None], size=fine, mode="bilinear",
                                                                 align_corners=False)[:, 0]

        fused = sum(self.fusion[k] * at_fine(l) for k, l in enumerate(logits))
        if pixel_feats is not None and self.pixel_embed is not None:  # the stride-4 path, added unweighted
            emb = self.pixel_embed(prompts.flatten(1))
            fused = fused + at_fine(_per_tile_dot(emb, pixel_feats, tile_index, tiles_in_order))
        if fused.shape[-2:] != tuple(out_hw):
            fused = F.interpolate(fused[:, None], size=out_hw, mode="bilinear", align_corners=False)[:, 0]
        return fused, weights
