"""GeoPix checkpoints: round trip, and refusal of pickles, corrupt files and remote code."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from geopix_tiles.errors import InputError
from geopix_tiles.model import GeoPixConfig, GeoPixModel


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[GeoPixModel, Path]:
    torch.manual_seed(0)
    model = GeoPixModel(GeoPixConfig.tiny()).eval()
    # move weights away from init so a load that silently re-initialises would be caught
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    d = tmp_path_factory.mktemp("ckpt") / "geopix"
    model.save_pretrained(d)
    return model, d


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_round_trip_gives_identical_outputs(saved: tuple[GeoPixModel, Path]) -> None:
    model, d = saved
    names = sorted(p.name for p in d.iterdir())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(names)
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["llm_path"] is None and cfg["llm_config"]["model_type"] == "llama"
    loaded = GeoPixModel.from_pretrained(d)
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    prompts = ["buildings", "storage tanks"]
    assert torch.equal(model.segment(x, prompts), loaded.segment(x, prompts))
    regions = torch.zeros(2, 1, 96, 128, dtype=torch.bool)
    regions[:, :, 10:50, 20:90] = True
    assert model.describe(x, regions, max_new_tokens=4) == loaded.describe(x, regions, max_new_tokens=4)
    assert loaded.tokenizer.get_vocab() == model.tokenizer.get_vocab()
    sd_a, sd_b = model.state_dict(), loaded.state_dict()
    assert sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "weights.pt", "extra.pkl"])
def test_pickled_checkpoint_is_refused(saved: tuple[GeoPixModel, Path], tmp_path: Path, name: str) -> None:
    d = _copy(saved[1], tmp_path)
    (d / name).write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(InputError, match="pickle"):
        GeoPixModel.from_pretrained(d)
    with pytest.raises(InputError, match="pickle"):
        GeoPixModel.from_pretrained(d / name)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "missing"])
def test_corrupt_weights_are_refused(saved: tuple[GeoPixModel, Path], tmp_path: Path, damage: str) -> None:
    d = _copy(saved[1], tmp_path)
    w = d / "model.safetensors"
    if damage == "garbage":
        w.write_bytes(b"not a safetensors file at all" * 10)
    elif damage == "truncate":
        w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    else:
        w.unlink()
    with pytest.raises(InputError) as err:
        GeoPixModel.from_pretrained(d)
    assert "\n" not in str(err.value) and "model.safetensors" in str(err.value)


def test_weights_that_do_not_match_config_are_refused(saved: tuple[GeoPixModel, Path], tmp_path: Path) -> None:
    d = _copy(saved[1], tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["decoder_dim"] = 2 * cfg["decoder_dim"]
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="does not match"):
        GeoPixModel.from_pretrained(d)


@pytest.mark.parametrize("edit", [
    lambda c: c.update(auto_map={"AutoModel": "evil.Model"}),
    lambda c: c["llm_config"].update(auto_map={"AutoModelForCausalLM": "evil.LM"}),
    lambda c: c.update(trust_remote_code=True),
    lambda c: c.update(llm_path="../../elsewhere"),
    lambda c: c.update(vision_weights="/etc/passwd"),
    lambda c: c.update(unknown_key=1),
])
def test_bad_config_is_refused(saved: tuple[GeoPixModel, Path], tmp_path: Path, edit) -> None:
    d = _copy(saved[1], tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    edit(cfg)
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError):
        GeoPixModel.from_pretrained(d)


def test_invalid_json_missing_dir_and_default(saved: tuple[GeoPixModel, Path], tmp_path: Path) -> None:
    d = _copy(saved[1], tmp_path)
    (d / "config.json").write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        GeoPixModel.from_pretrained(d)
    with pytest.raises(InputError, match="does not exist"):
        GeoPixModel.from_pretrained(tmp_path / "nope")
    from geopix_tiles.model.checkpoint import default_checkpoint_dir

    if not (default_checkpoint_dir() / "config.json").is_file():  # until a trained model is shipped
        with pytest.raises(InputError, match="no default"):
            GeoPixModel.from_pretrained("default")


def test_remote_code_tokenizer_is_refused(saved: tuple[GeoPixModel, Path], tmp_path: Path) -> None:
    d = _copy(saved[1], tmp_path)
    tc = json.loads((d / "tokenizer_config.json").read_text())
    tc["auto_map"] = {"AutoTokenizer": ["evil.Tok", None]}
    (d / "tokenizer_config.json").write_text(json.dumps(tc))
    with pytest.raises(InputError, match="custom code"):
        GeoPixModel.from_pretrained(d)


def test_vision_weights_load_from_local_safetensors_only(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    torch.manual_seed(0)
    donor = GeoPixModel(GeoPixConfig.tiny())
    # an open_clip-style full checkpoint: visual.trunk.* keys plus unrelated text-tower keys
    sd = {f"visual.trunk.{k}": v.clone() for k, v in donor.vision.visual.trunk.state_dict().items()}
    sd["text_projection"] = torch.zeros(2, 2)
    path = tmp_path / "open_clip_model.safetensors"
    save_file(sd, str(path))
    model = GeoPixModel(GeoPixConfig.tiny(vision_weights=str(path), freeze_vision=True))
    for k, v in donor.vision.visual.trunk.state_dict().items():
        assert torch.equal(model.vision.visual.trunk.state_dict()[k], v)
    assert not any(p.requires_grad for p in model.vision.parameters())
    pickled = tmp_path / "open_clip_model.bin"
    pickled.write_bytes(b"\x80\x04.")
    with pytest.raises(InputError, match="pickled"):
        GeoPixModel(GeoPixConfig.tiny(vision_weights=str(pickled)))


def test_checkpoints_without_a_pixel_decoder_still_load(tmp_path: Path) -> None:
    """``pixel_decoder_dim`` 0 is the layout written before the stride-4 path existed."""
    torch.manual_seed(1)
    legacy = GeoPixModel(GeoPixConfig.tiny(pixel_decoder_dim=0)).eval()
    assert legacy.pixel_decoder is None and legacy.mask_predictor.pixel_embed is None
    legacy.save_pretrained(tmp_path / "legacy")
    cfg = json.loads((tmp_path / "legacy" / "config.json").read_text())
    del cfg["pixel_decoder_dim"]  # a config.json from before the key existed
    (tmp_path / "legacy" / "config.json").write_text(json.dumps(cfg))
    loaded = GeoPixModel.from_pretrained(tmp_path / "legacy")
    assert loaded.pixel_decoder is None
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(legacy.segment(x, ["water"]), loaded.segment(x, ["water"]))


def test_pixel_decoder_shapes_and_contribution() -> None:
    torch.manual_seed(0)
    model = GeoPixModel(GeoPixConfig.tiny()).eval()
    assert model.config.pixel_decoder_dim == 48
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    enc = model.encode_images(x)
    assert enc.pixel_feats is not None and tuple(enc.pixel_feats.shape) == (2, 48, 24, 32)  # stride 4
    with torch.no_grad():
        full = model.segment(x, ["buildings"])
        # the stride-4 path changes the answer: zero its prompt projection and the logits move
        model.mask_predictor.pixel_embed[-1].weight.zero_()
        model.mask_predictor.pixel_embed[-1].bias.zero_()
        without = model.segment(x, ["buildings"])
    assert full.shape == without.shape == (2, 1, 96, 128)
    assert not torch.allclose(full, without)
    with pytest.raises(ValueError, match="pixel_feats"):
        model.mask_predictor(enc.scale_feats, torch.zeros(1, 2, 64), torch.zeros(1, dtype=torch.long), enc.padded)
