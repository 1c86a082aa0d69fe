"""A Llama-architecture causal decoder in plain PyTorch, for inference without transformers' model stack.

Why: a segment run needs the LLM only for two short forwards per batch (the image prefix and
the SEG answers), but importing ``transformers.modeling_utils`` (fp8, DeepGEMM, sharding and
dynamo imports included) costs ~4.5 s and ~300 MB before the first tile, more than a small
scene's whole run. This decoder has the same parameter names as
``transformers.LlamaForCausalLM`` (``model.embed_tokens``, ``model.layers.i.self_attn.q_proj``,
..., ``lm_head`` tied to the embeddings), so our checkpoints load into it strictly, and the
same semantics: RMSNorm in float32, default RoPE, grouped-query attention, SiLU-gated MLP,
causal attention plus a key padding mask, positions counted on from the cache length.

transformers stays the reference (training, LoRA, local LLM folders, other architectures);
``tests/test_model_native.py`` checks this decoder against it.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NativeLlama", "KVCache", "supports"]

#: config keys whose non-default values this implementation does not cover
_REQUIRED = {"model_type": "llama", "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
             "pretraining_tp": 1}


def supports(cfg: dict[str, Any]) -> bool:
    """Whether ``cfg`` (an ``llm_config`` dict) is a plain Llama this module reproduces exactly."""
    if any(cfg.get(k, v) != v for k, v in _REQUIRED.items()) or cfg.get("model_type") != "llama":
        return False
    rope = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    return rope.get("rope_type", rope.get("type", "default")) == "default" and cfg.get("tie_word_embeddings", True)


class KVCache:
    """Keys and values per layer ``[B, kv_heads, T, head_dim]``, with the batch edits GeoPix uses."""

    def __init__(self, n_layers: int) -> None:
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layers

    def get_seq_length(self) -> int:
        return 0 if self.layers[0] is None else int(self.layers[0][0].shape[2])

    def update(self, i: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.layers[i] is not None:
            k = torch.cat([self.layers[i][0], k], 2)
            v = torch.cat([self.layers[i][1], v], 2)
        self.layers[i] = (k, v)
        return k, v

    def batch_repeat_interleave(self, n: int) -> None:
        """Row ``b`` becomes rows ``b*n .. b*n+n-1`` (one image prefix per prompt)."""
        self.layers = [None if kv is None else (kv[0].repeat_interleave(n, 0), kv[1].repeat_interleave(n, 0))
                       for kv in self.layers]

    def batch_select_indices(self, idx: torch.Tensor) -> None:
        self.layers = [None if kv is None else (kv[0][idx], kv[1][idx]) for kv in self.layers]


class _RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class _Attention(nn.Module):
    def __init__(self, hidden: int, heads: int, kv_heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, heads * head_dim, bias=False)
        self.k_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(hidden, kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(heads * head_dim, hidden, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None,
                cache: KVCache | None, layer: int) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.q_proj(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        if cache is not None:
            k, v = cache.update(layer, k, v)
        rep = self.heads // self.kv_heads
        if rep > 1:
            k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=n > 1)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, n, -1))


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, -1)
    return torch.cat([-b, a], -1)


class _Layer(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        hidden, eps = int(cfg["hidden_size"]), float(cfg.get("rms_norm_eps", 1e-6))
        heads = int(cfg["num_attention_heads"])
        self.input_layernorm = _RMSNorm(hidden, eps)
        self.self_attn = _Attention(hidden, heads, int(cfg.get("num_key_value_heads") or heads),
                                    int(cfg.get("head_dim") or hidden // heads))
        self.post_attention_layernorm = _RMSNorm(hidden, eps)
        inter = int(cfg["intermediate_size"])
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.mlp.up_proj = nn.Linear(hidden, inter, bias=False)
        self.mlp.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x, cos, sin, mask, cache, i):  # noqa: ANN001 - internal
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, i)
        h = self.post_attention_layernorm(x)
        return x + self.mlp.down_proj(F.silu(self.mlp.gate_proj(h)) * self.mlp.up_proj(h))


class _Body(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(int(cfg["vocab_size"]), int(cfg["hidden_size"]))
        self.layers = nn.ModuleList(_Layer(cfg) for _ in range(int(cfg["num_hidden_layers"])))
        self.norm = _RMSNorm(int(cfg["hidden_size"]), float(cfg.get("rms_norm_eps", 1e-6)))
        heads = int(cfg["num_attention_heads"])
        dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
        rope = cfg.get("rope_parameters") or {}
        theta = float(rope.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        self.register_buffer("inv_freq", 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)),
                             persistent=False)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
                cache: KVCache | None = None, use_cache: bool = False) -> tuple[torch.Tensor, KVCache | None]:
        b, n, _ = inputs_embeds.shape
        if cache is None and use_cache:
            cache = KVCache(len(self.layers))
        past = 0 if cache is None else cache.get_seq_length()
        pos = torch.arange(past, past + n, device=inputs_embeds.device, dtype=torch.float)
        freqs = pos[:, None] * self.inv_freq.to(inputs_embeds.device)[None]
        emb = torch.cat([freqs, freqs], -1)
        cos, sin = emb.cos().to(inputs_embeds.dtype), emb.sin().to(inputs_embeds.dtype)
        mask = None
        if attention_mask is not None or (past and n > 1):
            keys = torch.arange(past + n, device=inputs_embeds.device)
            causal = keys[None, :] <= (past + torch.arange(n, device=inputs_embeds.device))[:, None]
            mask = causal[None, None]
            if attention_mask is not None:
                mask = mask & attention_mask.to(torch.bool)[:, None, None, :]
        x = inputs_embeds
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, cache, i)
        return self.norm(x), cache


class NativeLlama(nn.Module):
    """``LlamaForCausalLM`` stand-in for inference: ``model`` (body) and a tied ``lm_head``."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        if not supports(cfg):
            raise ValueError("this llm_config is not a plain Llama; build it with transformers")
        self.llm_config = dict(cfg)
        self.model = _Body(cfg)
        self.lm_head = nn.Linear(int(cfg["hidden_size"]), int(cfg["vocab_size"]), bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def get_decoder(self) -> _Body:
        return self.model
