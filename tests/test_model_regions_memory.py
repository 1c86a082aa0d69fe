"""Region placeholders (Aquila-plus path) and prompt-driven class memory (GeoPix)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from geopix_tiles.model import GeoPixConfig, GeoPixModel


@pytest.fixture(scope="module")
def model(tiny_model_factory) -> GeoPixModel:
    return tiny_model_factory()


def test_region_placeholders_are_replaced_at_exactly_their_positions(model: GeoPixModel) -> None:
    proc = model.processor
    images = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    a = torch.zeros(2, 128, 128)
    a[0, :40, :40] = 1
    a[1, 60:, 60:] = 1
    b = a.clone()
    b[1] = 0
    b[1, 10:30, 90:120] = 1  # only the second region changes
    batch = proc.build_region_batch(images, [["a tank", "a road"]], [a])
    ids = batch["input_ids"]
    with torch.no_grad():
        enc = model.encode_images(images)
        ea = model.embed_inputs(enc, ids, [a])
        eb = model.embed_inputs(enc, ids, [b])
        plain = model.llm.get_input_embeddings()(ids)
    changed = (ea - eb).abs().sum(-1) > 0
    mask_pos = (ids == proc.ids.mask).nonzero()[:, 1].tolist()
    pos_pos = (ids == proc.ids.pos).nonzero()[:, 1].tolist()
    assert len(mask_pos) == len(pos_pos) == 2
    # exactly the second region's <mask> and <pos> change
    assert changed[0].nonzero()[:, 0].tolist() == sorted([mask_pos[1], pos_pos[1]])
    # placeholders and image tokens are overwritten, ordinary text is untouched
    replaced = (ea - plain).abs().sum(-1) > 0
    special = (ids == proc.ids.mask) | (ids == proc.ids.pos) | (ids == proc.ids.image)
    assert torch.equal(replaced, special)
    # and the loss ignores them
    assert (batch["labels"][special] == -100).all()
    assert (batch["labels"] != -100).sum() > 0


def test_region_count_must_match_placeholders(model: GeoPixModel) -> None:
    proc = model.processor
    images = torch.rand(1, 3, 64, 64)
    batch = proc.build_region_batch(images, [["a tank"]], [torch.ones(1, 64, 64)])
    enc = model.encode_images(images)
    with pytest.raises(ValueError):
        model.embed_inputs(enc, batch["input_ids"], [torch.ones(2, 64, 64)])


def test_memory_class_weights_follow_the_prompt(model: GeoPixModel) -> None:
    images = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits, weights = model.segment_encoded(model.encode_images(images), ["buildings", "water", "buildings"])
    assert weights.shape == (2, 3, model.config.memory_classes)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    assert (weights[:, 0] - weights[:, 1]).abs().max() > 1e-6  # different prompt -> different weighting
    torch.testing.assert_close(weights[:, 0], weights[:, 2], atol=1e-7, rtol=1e-6)  # same prompt, same weighting
    # the weighting is used: forcing one class changes the masks
    mem = model.mask_predictor.memory
    original = mem.class_weights
    try:
        mem.class_weights = lambda p: torch.nn.functional.one_hot(  # type: ignore[method-assign]
            torch.zeros(p.shape[0], dtype=torch.long), mem.slots.shape[0]).float()
        with torch.no_grad():
            forced, _ = model.segment_encoded(model.encode_images(images), ["buildings", "water", "buildings"])
    finally:
        mem.class_weights = original  # type: ignore[method-assign]
    assert not torch.allclose(forced, logits)


def test_memory_is_compact(model: GeoPixModel) -> None:
    """GeoPix's dense memory is 75 x 2 x 64 x 64 x 32 x 32 (~629 M values); ours, built at base size, is
    the whole module (slots, class head, attention) and must stay well under a million parameters."""
    from geopix_tiles.model.memory import ClassMemory

    base = GeoPixConfig.base()
    mem = ClassMemory(base.memory_classes, base.num_seg_scales, base.memory_slots, base.decoder_dim,
                      base.memory_heads, base.prompt_dim)
    n_base = sum(p.numel() for p in mem.parameters())
    assert mem.slots.numel() == base.memory_classes * base.num_seg_scales * base.memory_slots * base.decoder_dim
    assert n_base < 1_000_000, n_base
    assert n_base * 600 < 75 * 2 * 64 * 64 * 32 * 32
    assert model.mask_predictor.memory.slots.numel() == (
        model.config.memory_classes * model.config.num_seg_scales * model.config.memory_slots
        * model.config.decoder_dim)

