"""GeoPix training forward: loss terms, gradients to every trainable module, learning."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from geopix_tiles.model import GeoPixConfig, GeoPixModel


def _mixed_batch(model: GeoPixModel, size: int = 96) -> dict:
    """Segmentation (two targets) + region captioning in one conversation per image."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, size, size, generator=g)
    proc = model.processor
    masks = torch.zeros(2, 2, size, size)
    masks[:, 0, : size // 2] = 1
    masks[:, 1, :, : size // 3] = 1
    regions = torch.zeros(2, 1, size, size)
    regions[:, 0, size // 4: size // 2, size // 4: size // 2] = 1
    # a place in one prompt so the location prior is on the gradient path too
    conv = [(proc.segmentation_question("the buildings in the upper left"), proc.segmentation_answer()),
            (proc.region_question(1), "a small storage tank"),
            (proc.segmentation_question("water"), "The water is here: " + proc.seg_text + ".")]
    batch = proc.build_batch(images, [conv, conv[:2] + [conv[2]]], gt_masks=list(masks), region_masks=list(regions))
    batch["class_labels"] = [torch.tensor([1, 2]), torch.tensor([1, -1])]
    return batch


def test_loss_terms_present_and_finite() -> None:
    torch.manual_seed(0)
    model = GeoPixModel(GeoPixConfig.tiny())
    out = model(**_mixed_batch(model))
    for name in ("loss", "ce_loss", "bce_loss", "dice_loss", "class_loss"):
        v = getattr(out, name)
        assert v.ndim == 0 and torch.isfinite(v), name
    assert out.ce_loss > 0 and out.bce_loss > 0 and out.dice_loss > 0 and out.class_loss > 0
    expected = 1.0 * out.ce_loss + 2.0 * out.bce_loss + 0.5 * out.dice_loss + out.class_loss
    torch.testing.assert_close(out.loss, expected)
    assert [m.shape for m in out.mask_logits] == [(2, 96, 96), (2, 96, 96)]
    assert out.class_weights.shape == (4, model.config.memory_classes)


@pytest.mark.parametrize("freeze", [False, True])
def test_gradients_reach_every_trainable_module(freeze: bool) -> None:
    torch.manual_seed(0)
    model = GeoPixModel(GeoPixConfig.tiny(freeze_vision=freeze))
    model(**_mixed_batch(model)).loss.backward()
    no_grad = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert freeze and name.startswith("vision."), f"{name} is frozen unexpectedly"
            continue
        if p.grad is None or not torch.any(p.grad != 0):
            no_grad.append(name)
    assert not no_grad, f"no gradient reaches: {no_grad}"
    vision_trainable = any(p.requires_grad for p in model.vision.parameters())
    assert vision_trainable is (not freeze)
    for top in ("projector", "seg_head", "necks", "mask_predictor", "region_extractor", "shape_embed", "llm",
                "location_prior"):
        assert any(p.grad is not None for p in getattr(model, top).parameters()), top


def test_a_few_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = GeoPixModel(GeoPixConfig.tiny())
    proc = model.processor
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 64, 64)
    mask[:, 10:40, 20:50] = 1
    batch = proc.build_segmentation_batch(image, [["storage tanks"]], [mask])
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(8):
        out = model(**batch)
        losses.append((out.loss.item(), out.ce_loss.item(), out.bce_loss.item(), out.dice_loss.item()))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    first, last = losses[0], losses[-1]
    assert last[0] < 0.7 * first[0], losses
    assert last[1] < first[1] and last[2] < first[2] and last[3] < first[3], losses


def test_batch_builder_rejects_mismatched_targets() -> None:
    model = GeoPixModel(GeoPixConfig.tiny())
    with pytest.raises(ValueError):
        model.processor.build_segmentation_batch(torch.rand(1, 3, 32, 32), [["a", "b"]], [torch.zeros(1, 32, 32)])
    batch = model.processor.build_region_batch(torch.rand(1, 3, 32, 32), [["a tank"]], [torch.ones(1, 32, 32)])
    with pytest.raises(ValueError, match="SEG"):
        model(**batch, gt_masks=[torch.zeros(1, 32, 32)])  # masks but no SEG group in the text
