"""Causal LM construction: from a config dict (random init) or a local directory.

Only model types that ``transformers`` implements itself are accepted, and directories are
read with ``local_files_only=True, trust_remote_code=False, use_safetensors=True``, so
neither Python code nor pickles from a download are ever executed.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

import torch

from .config import REMOTE_CODE_KEYS
from .llama_native import NativeLlama
from .llama_native import supports as native_supports

if TYPE_CHECKING:  # transformers' model stack is imported only when a reference LLM is built
    from transformers import PreTrainedModel


def build_llm(llm_config: dict[str, Any], vocab_size: int, native: bool = False) -> "PreTrainedModel | NativeLlama":
    """Random-init causal LM of a built-in ``model_type`` (llama, qwen2, ...).

    ``native=True`` builds :class:`~.llama_native.NativeLlama` instead when the config is a plain
    Llama (inference: no transformers import); anything else is built by transformers.
    """
    cfg = dict(llm_config)
    if native and native_supports(cfg):
        cfg["vocab_size"] = max(int(cfg.get("vocab_size") or 0), vocab_size)
        return NativeLlama(cfg)
    model_type = cfg.pop("model_type", None)
    if not model_type:
        raise ValueError("llm_config needs a model_type such as 'llama' or 'qwen2'")
    for key in REMOTE_CODE_KEYS:
        if key in cfg:
            raise ValueError(f"llm_config key {key!r} asks for remote code, which is refused")
    # keep a padded vocabulary (e.g. Qwen's 151936 > len(tokenizer)) so saved weights still fit
    cfg["vocab_size"] = max(int(cfg.get("vocab_size") or 0), vocab_size)
    from transformers import AutoConfig, AutoModelForCausalLM

    hf_cfg = AutoConfig.for_model(model_type, **cfg)
    hf_cfg._attn_implementation = "sdpa"
    return AutoModelForCausalLM.from_config(hf_cfg, trust_remote_code=False)


def load_llm(path: str | Path) -> "PreTrainedModel":
    """Load a causal LM from a local directory (safetensors weights only)."""
    from transformers import AutoModelForCausalLM

    from geopix_tiles.errors import InputError

    path = Path(path)
    if not (path / "config.json").is_file():
        raise InputError(f"LLM directory {path} has no config.json; pass a local transformers model directory")
    import json

    data = json.loads((path / "config.json").read_text())
    if any(k in data for k in REMOTE_CODE_KEYS):
        raise InputError(f"LLM in {path} asks for custom code (auto_map); only built-in transformers "
                         "architectures are loaded")
    try:
        return AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, trust_remote_code=False,
                                                    use_safetensors=True, attn_implementation="sdpa")
    except Exception as exc:
        raise InputError(f"cannot load the LLM from {path} ({type(exc).__name__}: {exc}); it needs "
                         "config.json and *.safetensors weights") from exc


def llm_config_dict(llm: "PreTrainedModel | NativeLlama") -> dict[str, Any]:
    """The LLM's architecture as plain JSON (for a self-contained checkpoint config)."""
    if isinstance(llm, NativeLlama):
        return dict(llm.llm_config, vocab_size=llm.get_input_embeddings().weight.shape[0])
    d = llm.config.to_diff_dict()
    d["model_type"] = llm.config.model_type
    for key in (*REMOTE_CODE_KEYS, "_name_or_path", "architectures", "transformers_version", "torch_dtype",
                "dtype", "_attn_implementation_autoset", "_commit_hash"):
        d.pop(key, None)
    d["vocab_size"] = llm.get_input_embeddings().weight.shape[0]
    return d


def decoder_forward(llm: "PreTrainedModel | NativeLlama", inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                    past_key_values: Any = None, use_cache: bool = False) -> tuple[torch.Tensor, Any]:
    """Run the transformer body only: last-layer (final-norm) hidden states and the cache.

    Skipping ``lm_head`` matters when only SEG hidden states are needed: for a 32k vocab the
    head is the largest matmul of a short forward.
    """
    body = llm.get_decoder()
    if isinstance(llm, NativeLlama):
        return body(inputs_embeds, attention_mask, past_key_values, use_cache)
    name = _cache_argument(type(body))
    out = body(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=use_cache, return_dict=True,
               **{name: past_key_values})
    return out.last_hidden_state, getattr(out, name)


@functools.lru_cache(maxsize=16)
def _cache_argument(body_type: type) -> str:
    """``cache`` (transformers >= 5.2x) or ``past_key_values`` (older): the name the decoder takes."""
    import inspect

    return "cache" if "cache" in inspect.signature(body_type.forward).parameters else "past_key_values"
