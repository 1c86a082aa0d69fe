"""The inference build (native tower, native LLM, plain tokenizer, folded BatchNorm) against the reference.

The reference is the pure timm / transformers model the recipe trains; the inference build is
what ``--model default`` runs. They must agree on real chips to well within 1/255 in
probability, and a segment run must not import transformers' or timm's model stacks.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

UC = Path(__file__).resolve().parent / "data" / "uc_merced"
NAIP = Path(__file__).resolve().parents[1] / "geopix_tiles" / "data" / "naip_sample.tif"
PROMPTS = ["water", "vegetation", "buildings", "roads", "the small houses near the road", "wind turbines"]


def _chips() -> torch.Tensor:
    """Four real 256 px tiles: three of the shipped NAIP sample and one UC Merced chip (odd size padded)."""
    import rasterio
    from PIL import Image

    with rasterio.open(NAIP) as src:
        a = src.read([1, 2, 3], window=((100, 356), (0, 768))).astype(np.float32) / 255.0
    tiles = [a[:, :, i * 256:(i + 1) * 256] for i in range(3)]
    chip = UC / "harbor65.jpg"
    img = np.asarray(Image.open(chip).convert("RGB"), dtype=np.float32)[:256, :256] / 255.0
    tiles.append(np.pad(img.transpose(2, 0, 1), ((0, 0), (0, 256 - img.shape[0]), (0, 256 - img.shape[1])),
                        mode="edge"))
    return torch.from_numpy(np.stack(tiles))


@pytest.fixture(scope="module")
def models():
    from geopix_tiles.model import GeoPixModel

    ref = GeoPixModel.from_pretrained("default")
    fast = GeoPixModel.from_pretrained("default", native=True).fuse_for_inference()
    return ref, fast


def test_inference_build_uses_the_native_parts(models):
    from geopix_tiles.model.efficientnet_lite import EfficientNetLiteFeatures
    from geopix_tiles.model.llama_native import NativeLlama
    from geopix_tiles.model.plain_tokenizer import PlainTokenizer

    ref, fast = models
    assert isinstance(fast.vision.trunk, EfficientNetLiteFeatures) and isinstance(fast.llm, NativeLlama)
    assert isinstance(fast.tokenizer, PlainTokenizer)
    assert not isinstance(ref.llm, NativeLlama) and not isinstance(ref.vision.trunk, EfficientNetLiteFeatures)


def test_native_segment_matches_the_reference_on_real_chips(models):
    ref, fast = models
    x = _chips()
    with torch.inference_mode():
        a = torch.sigmoid(ref.segment(x, PROMPTS))
        b = torch.sigmoid(fast.segment(x, PROMPTS))
    assert a.shape == b.shape == (4, len(PROMPTS), 256, 256)
    assert float((a - b).abs().max()) < 1e-3  # goal: within 1/255; measured ~2e-5
    assert float(((a > 0.5) != (b > 0.5)).float().mean()) < 1e-4
    assert float((a > 0.5).float().mean()) > 0.01  # not two empty answers agreeing


@pytest.mark.parametrize("name, fused_op", [("tf_efficientnet_lite0", True), ("tf_efficientnet_lite2", True),
                                             ("tf_efficientnet_lite0", False)])
def test_native_tower_equals_timm_before_and_after_folding(name, fused_op, monkeypatch):
    """Unfolded: bit-identical to timm (random BN statistics, odd sizes); folded: float rounding only,
    through oneDNN's fused conv + ReLU6 and through the eager conv-then-clamp fallback (what CUDA runs)."""
    import copy

    from geopix_tiles.model import efficientnet_lite
    from geopix_tiles.model.efficientnet_lite import EfficientNetLiteFeatures, fold_batchnorm

    if not fused_op:
        monkeypatch.setattr(efficientnet_lite, "_FUSED", None)

    torch.manual_seed(0)
    ref = timm.create_model(name, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4)).eval()
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    nat = EfficientNetLiteFeatures(name)
    nat.load_state_dict(ref.state_dict(), strict=True)
    nat.eval()
    folded = fold_batchnorm(copy.deepcopy(nat)).to(memory_format=torch.channels_last)
    for shape in [(2, 3, 128, 160), (1, 3, 97, 131)]:
        x = torch.rand(shape)
        with torch.no_grad():
            want = ref(x)
            got = nat(x)
            fused = folded(x.contiguous(memory_format=torch.channels_last))
        assert [tuple(t.shape) for t in got] == [tuple(t.shape) for t in want]
        for w, g, f in zip(want, got, fused):
            assert torch.equal(w, g)
            assert float((w - f).abs().max()) <= 1e-4 * float(w.abs().max())


def test_native_llama_equals_transformers_with_cache_and_padding():
    from geopix_tiles.model.llm import build_llm, decoder_forward

    cfg = json.loads((Path(__file__).resolve().parents[1] / "geopix_tiles" / "data" / "default_model"
                      / "config.json").read_text())["llm_config"]
    torch.manual_seed(0)
    ref = build_llm(cfg, 840).eval()
    nat = build_llm(cfg, 840, native=True).eval()
    nat.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(3, 7, ref.config.hidden_size)
    with torch.no_grad():
        h_ref, c_ref = decoder_forward(ref, x, None, use_cache=True)
        h_nat, c_nat = decoder_forward(nat, x, None, use_cache=True)
        assert float((h_ref - h_nat).abs().max()) < 1e-5
        # continue both caches with a right-padded suffix, repeated per "prompt" as segment_encoded does
        c_ref.batch_repeat_interleave(2)
        c_nat.batch_repeat_interleave(2)
        y = torch.randn(6, 5, ref.config.hidden_size)
        attn = torch.ones(6, 12, dtype=torch.long)
        attn[1, -2:] = 0
        attn[4, -1:] = 0
        s_ref, _ = decoder_forward(ref, y, attn, c_ref)
        s_nat, _ = decoder_forward(nat, y, attn, c_nat)
    valid = attn[:, 7:].bool()
    assert float((s_ref - s_nat)[valid].abs().max()) < 1e-5
    assert torch.equal(ref.get_input_embeddings().weight, nat.get_output_embeddings().weight)  # tied head


def test_plain_tokenizer_gives_transformers_ids():
    from geopix_tiles.model.checkpoint import resolve_checkpoint_dir
    from geopix_tiles.model.plain_tokenizer import load_plain_tokenizer
    from geopix_tiles.model.tokenizer import load_local_tokenizer, special_tokens

    d = resolve_checkpoint_dir("default")
    ref, plain = load_local_tokenizer(d), load_plain_tokenizer(d, special_tokens())
    assert plain is not None
    texts = json.loads((d / "config.json").read_text())["text_bank_phrases"] + [
        "USER: <image>\nPlease segment the water. ASSISTANT: Sure, it is [SEG0][SEG1][SEG2][SEG3][SEG4][SEG5].",
        "Describe region1 <mask><pos> briefly.", "héllo wörld 東京", "  two  spaces ", ""]
    for t in texts:
        assert plain(t, add_special_tokens=False).input_ids == ref(t, add_special_tokens=False).input_ids, t
    assert (len(plain), plain.bos_token_id, plain.eos_token_id, plain.pad_token_id) == \
        (len(ref), ref.bos_token_id, ref.eos_token_id, ref.pad_token_id)
    ids = ref("Sure, it is [SEG0] a building", add_special_tokens=False).input_ids + [ref.eos_token_id]
    assert plain.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)


def test_text_bank_phrases_skip_minilm_and_equal_its_embeddings(models):
    """Trained prompts read their stored MiniLM row; the row is what MiniLM gives for the phrase."""
    from geopix_tiles.model.text_encoder import SentenceEncoder

    _, fast = models
    phrases = list(fast.config.text_bank_phrases)
    assert len(phrases) == fast.config.text_bank_size > 0
    fresh = SentenceEncoder()._encode(["water", "houses", phrases[-1]], 8)
    stored = fast._prompt_embeddings(["water", "houses", phrases[-1]]).numpy()
    assert np.abs(fresh - stored).max() < 1e-3


def test_fused_model_refuses_to_save(models, tmp_path):
    _, fast = models
    with pytest.raises(ValueError, match="fused"):
        fast.save_pretrained(tmp_path / "x")


def test_segment_run_imports_no_transformers_or_timm_models(tmp_path):
    """Cold start: a learned-model segment run loads neither stack (nor MiniLM for trained prompts).

    Nor torchvision: the model-runtime install (``.[run]``) has none, so it can sit on a CPU build
    of torch (benchmarks/results/runtime_rss.md)."""
    code = (
        "import sys, geopix_tiles\n"
        "from geopix_tiles.api import segment\n"
        f"segment({str(NAIP)!r}, ['water', 'buildings'], model='default', out={str(tmp_path / 'o.gpkg')!r})\n"
        "bad = [m for m in ('transformers', 'timm', 'open_clip', 'torchvision', 'xarray') if m in sys.modules]\n"
        "print('LOADED', bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "LOADED []" in out.stdout, out.stdout
    assert (tmp_path / "o.gpkg").is_file()
