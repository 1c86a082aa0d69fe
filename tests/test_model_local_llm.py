"""Building GeoPix on a causal LM that lives in a local directory (the base-preset path)."""
from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from geopix_tiles.errors import InputError
from geopix_tiles.model import GeoPixConfig, GeoPixModel


def _local_llm(directory: Path) -> Path:
    """A tiny Qwen2 with its own plain BPE tokenizer (no GeoPix tokens), saved as safetensors."""
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(["please segment the water and the buildings in this image"] * 4,
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    llm = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                       num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                       max_position_embeddings=512, tie_word_embeddings=False))
    llm.save_pretrained(directory, safe_serialization=True)
    tok.save_pretrained(directory)
    return directory


def test_model_on_a_local_llm_directory(tmp_path: Path) -> None:
    llm_dir = _local_llm(tmp_path / "qwen-tiny")
    n_plain = len(PreTrainedTokenizerFast.from_pretrained(str(llm_dir)))
    cfg = GeoPixConfig.tiny(llm_config=None, llm_path=str(llm_dir))
    model = GeoPixModel(cfg).eval()
    assert model.llm.config.model_type == "qwen2"
    assert len(model.tokenizer) == n_plain + 1 + 6 + 2  # <image>, [SEG0..5], <mask>, <pos>
    assert model.llm.get_input_embeddings().weight.shape[0] >= len(model.tokenizer)
    assert model.processor.ids.bos is None  # Qwen-style: no BOS, the prefix copes
    x = torch.rand(1, 3, 64, 64)
    out = model.segment(x, ["water", "buildings"])
    assert out.shape == (1, 2, 64, 64)
    # the checkpoint is self-contained: it no longer needs the LLM directory
    ckpt = model.save_pretrained(tmp_path / "ckpt")
    for f in llm_dir.iterdir():
        f.unlink()
    loaded = GeoPixModel.from_pretrained(ckpt)
    assert torch.equal(loaded.segment(x, ["water", "buildings"]), out)


def test_pickled_llm_directory_is_refused(tmp_path: Path) -> None:
    llm_dir = _local_llm(tmp_path / "qwen-tiny")
    (llm_dir / "model.safetensors").unlink()
    (llm_dir / "pytorch_model.bin").write_bytes(b"\x80\x04.")
    with pytest.raises(InputError, match="safetensors"):
        GeoPixModel(GeoPixConfig.tiny(llm_config=None, llm_path=str(llm_dir)))
