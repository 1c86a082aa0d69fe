"""GeoPix inference paths: shapes, prompt batching, KV-prefix reuse, decode vs teacher forcing."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest
import torch

from geopix_tiles.errors import InputError
from geopix_tiles.model import GeoPixModel
from geopix_tiles.segmenters.protocol import Segmenter


@pytest.fixture(scope="module")
def model(tiny_model_factory) -> GeoPixModel:
    return tiny_model_factory()


def _images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g)


@pytest.mark.parametrize("size,prompts", [((256, 256), ["buildings"]), ((128, 192), ["water", "roads", "ships"]),
                                          ((100, 70), ["storage tanks", "x"])])
def test_segment_shapes(model: GeoPixModel, size: tuple[int, int], prompts: list[str]) -> None:
    out = model.segment(_images(2, *size), prompts)
    assert out.shape == (2, len(prompts), *size)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    # different prompts are different questions: their masks must differ
    if len(prompts) > 1:
        assert not torch.allclose(out[:, 0], out[:, 1])


def test_batched_prompts_match_single_prompts(model: GeoPixModel) -> None:
    """Right padding of the batched suffix and the shared prefix cache change nothing."""
    x = _images(2, 128, 128, seed=1)
    prompts = ["storage tanks", "a very long description of the small white boats near the old harbour"]
    both = model.segment(x, prompts)
    for i, p in enumerate(prompts):
        alone = model.segment(x, [p])
        torch.testing.assert_close(both[:, i], alone[:, 0], atol=1e-4, rtol=1e-4)
    # tiles are independent: tile 1 alone equals tile 1 in the batch
    torch.testing.assert_close(model.segment(x[1:], prompts), both[1:], atol=1e-4, rtol=1e-4)


def test_teacher_forced_segment_equals_kv_cached_decode(model: GeoPixModel) -> None:
    """When the generator emits the SEG template, generate() and segment() give the same masks."""
    proc = model.processor
    forced = proc.answer_ids(proc.segmentation_answer(), eos=True)

    def force_template(generated: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(logits, float("-inf"))
        out[:, forced[generated.shape[1]]] = 0.0
        return out

    x = _images(1, 160, 160, seed=2)
    reply = model.generate(x, [proc.segmentation_question("storage tanks")], logits_processor=force_template)[0]
    assert reply.token_ids == forced
    assert reply.mask_logits.shape == (1, 160, 160)
    seg = model.segment(x, ["storage tanks"])[0]
    torch.testing.assert_close(reply.mask_logits, seg, atol=1e-4, rtol=1e-4)
    assert torch.equal(reply.masks, reply.mask_logits > 0)


def test_training_forward_matches_segment(model: GeoPixModel) -> None:
    """The full-sequence training forward and the cached inference path agree."""
    x = _images(1, 128, 128, seed=3)
    batch = model.processor.build_segmentation_batch(x, [["water", "roads"]], [torch.zeros(2, 128, 128)])
    with torch.no_grad():
        out = model(**batch)
    seg = model.segment(x, ["water", "roads"])[0]
    # turn 1 has exactly segment()'s context; turn 2 also sees turn 1, so it may differ
    torch.testing.assert_close(out.mask_logits[0][0], seg[0], atol=1e-4, rtol=1e-4)
    single = model.processor.build_segmentation_batch(x, [["roads"]], [torch.zeros(1, 128, 128)])
    with torch.no_grad():
        torch.testing.assert_close(model(**single).mask_logits[0][0], seg[1], atol=1e-4, rtol=1e-4)


def test_describe_and_chat_outputs(model: GeoPixModel) -> None:
    x = _images(2, 96, 96, seed=4)
    regions = torch.zeros(2, 3, 96, 96, dtype=torch.bool)
    regions[:, 0, :40, :40] = True
    regions[:, 1, 50:, 50:] = True
    regions[:, 2, 20:70, 10:30] = True
    texts = model.describe(x, regions, max_new_tokens=5)
    assert len(texts) == 2 and all(len(t) == 3 for t in texts)
    assert all(isinstance(s, str) for t in texts for s in t)
    assert model.describe(x, regions[:, :0]) == [[], []]
    gen = model.generate(x, ["Where are the storage tanks?", "What is here?"], max_new_tokens=6)
    assert len(gen) == 2 and all(isinstance(g.text, str) and len(g.token_ids) <= 6 for g in gen)
    assert all(g.masks.dtype == torch.bool and g.masks.shape[1:] == (96, 96) for g in gen)
    # questions of different lengths about one image each: same answers as asked one by one
    alone = model.generate(x[1:], ["What is here?"], max_new_tokens=6)[0]
    assert alone.token_ids == gen[1].token_ids
    # describe is generate() with the region question: one region per row, same tile encoding
    one = model.generate(x[:1], [model.processor.region_question(1)], regions[:1, :1], max_new_tokens=5)[0]
    assert one.text == texts[0][0]


def test_chat_without_concepts_refuses_in_a_sentence(model: GeoPixModel) -> None:
    """A model with no concept list cannot know what a question names: it says so, with no masks."""
    x = _images(1, 96, 96, seed=5)
    reply = model.chat(x[0], "Where are the storage tanks?")
    assert reply.text.startswith("I can't tell") and reply.text.endswith(".")
    assert reply.masks.shape == (0, 96, 96)


def test_seg_groups_are_parsed_in_order(model: GeoPixModel) -> None:
    seg = list(model.processor.ids.seg)
    toks = [5, *seg, 7, *seg[:3], 9, *seg, 2]
    groups = model._complete_seg_groups(toks)
    assert groups == [list(range(1, 7)), list(range(12, 18))]


def test_segmenter_contract(model: GeoPixModel) -> None:
    seg = model.as_segmenter(device="cpu")
    assert isinstance(seg, Segmenter)
    assert seg.band_roles == ("red", "green", "blue") and seg.scaling == "unit" and seg.tile_size == 256
    tiles = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    probs = seg.predict(tiles, ["buildings", "water"])
    assert probs.shape == (2, 2, 64, 64) and probs.dtype == np.float32
    assert probs.min() >= 0 and probs.max() <= 1
    expected = torch.sigmoid(model.segment(torch.from_numpy(tiles), ["buildings", "water"])).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert repr(seg) == repr(model.as_segmenter(device="cpu"))  # stable: the resume journal keys on it
    for bad in ([], [""], ["   "], ["ok", "<image> roofs"], "buildings") * 2:  # refused every time (never cached)
        with pytest.raises(InputError):
            seg.check_prompts(bad)
    seg.check_prompts(["buildings", "water"])  # accepted once: the next calls skip the tokenizer
    assert ("buildings", "water") in seg._checked
    with pytest.raises(InputError, match="tokens"):
        seg.check_prompts(["very long " * 200])
    with pytest.raises(InputError):
        seg.predict(tiles[:, :2], ["buildings"])


def test_bf16_autocast_path_runs_and_stays_close(model: GeoPixModel) -> None:
    """bf16 autocast (opt-in, on any device) runs and stays close to fp32 on a tiny model."""
    tiles = np.random.default_rng(1).random((1, 3, 96, 96), dtype=np.float32)
    fp32 = model.as_segmenter(device="cpu").predict(tiles, ["buildings", "water"])
    bf16 = model.as_segmenter(device="cpu", autocast=True).predict(tiles, ["buildings", "water"])
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    np.testing.assert_allclose(bf16, fp32, atol=0.03)
