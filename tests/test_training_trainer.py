"""Training: overfitting one chip, loss on real data, exact resume, 2-process DDP, CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

torch = pytest.importorskip("torch")
pytest.importorskip("geopix_tiles.model")

from geopix_tiles.training.config import DataSpec, ModelSpec, StageConfig, TrainConfig  # noqa: E402
from geopix_tiles.training.records import ImageRecord, Instance, write_jsonl  # noqa: E402

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]
ALL = ["seg_head", "decoder", "memory", "llm", "embeddings", "projector", "vision", "region"]


def _chip(path: Path, size: int, seed: int) -> np.ndarray:
    """A GeoTIFF chip with two red roofs on noisy ground; returns the roof mask."""
    rng = np.random.default_rng(seed)
    img = rng.normal(90, 10, (3, size, size)).clip(0, 255).astype(np.uint8)
    m = np.zeros((size, size), np.uint8)
    m[size // 4:size // 2, size // 5:size // 2 + 4] = 1
    m[size * 5 // 8:size * 7 // 8, size * 5 // 8:size * 15 // 16] = 1
    img[:, m == 1] = np.array([200, 60, 60], np.uint8)[:, None]
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(500000, 4000000, 0.5, 0.5)) as ds:
        ds.write(img)
    return m


def _dataset(tmp_path: Path, n: int = 1, size: int = 64, water: bool = True) -> Path:
    recs = []
    for i in range(n):
        m = _chip(tmp_path / f"chip{i}.tif", size, i)
        insts = [Instance.from_mask("building", m)]
        if water:
            w = np.zeros_like(m)
            w[: size // 8, :] = 1
            insts.append(Instance.from_mask("water", w))
        recs.append(ImageRecord(str(tmp_path / f"chip{i}.tif"), insts))
    write_jsonl(recs, tmp_path / "data.jsonl")
    return tmp_path / "data.jsonl"


def _cfg(out: Path, data: Path, stages, size: int = 64, **kw) -> TrainConfig:
    base = dict(output_dir=str(out), model=ModelSpec(overrides={"tile_size": size}),
                data=DataSpec(train=str(data), val_fraction=0.0, samples_per_image=2),
                stages=stages, batch_size=1, checkpoint_every=0, progress=False)
    base.update(kw)
    return TrainConfig(**base).validate()


def test_tiny_model_overfits_one_chip(tmp_path):
    from geopix_tiles.training.evaluate import evaluate_model
    from geopix_tiles.training.trainer import Trainer

    data = _dataset(tmp_path, n=1, water=False)
    cfg = _cfg(tmp_path / "run", data, [StageConfig("masks", 50, ALL, ["category_seg"], 1e-3)])
    tr = Trainer(cfg)
    result = tr.run()
    losses = [h["loss"] for h in result["history"]]
    assert losses[-1] < 0.3 * losses[0]
    res = evaluate_model(tr.model, tr.train_records, semantic=False, samples_per_image=4)
    assert res["counts"]["masks"] >= 1
    assert res["ciou"] > 0.9, res
    # the exported checkpoint reloads and segments through the public inference path
    from geopix_tiles.model import GeoPixModel

    model = GeoPixModel.from_pretrained(result["model_dir"])
    img = torch.from_numpy(tr.train_records[0].load())[None]
    pred = (model.segment(img, ["buildings"])[0, 0] > 0).numpy()
    target = tr.train_records[0].instances[0].mask().astype(bool)
    iou = (pred & target).sum() / max((pred | target).sum(), 1)
    assert iou > 0.9


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not available")
def test_loss_decreases_on_small_real_set(tmp_path):
    from geopix_tiles.training.adapters import build_source
    from geopix_tiles.training.catalog import shared_data_specs
    from geopix_tiles.training.trainer import Trainer
    from geopix_tiles.training.windows import export_jsonl, sample_records

    spec = shared_data_specs(SHARED)["open_cities"]
    recs = [r for r in sample_records([build_source(spec)], 256, mode="grid") if r.instances][:4]
    data = export_jsonl(recs, tmp_path / "oc" / "data.jsonl")
    cfg = _cfg(tmp_path / "run", data, [StageConfig("masks", 20, ALL, ["category_seg", "referring_seg"], 5e-4)],
               size=128, batch_size=2, seed=3)
    hist = Trainer(cfg).run()["history"]
    mask_losses = [h["bce"] * 2 + h["dice"] * 0.5 for h in hist]
    first, last = np.mean([h["loss"] for h in hist[:5]]), np.mean([h["loss"] for h in hist[-5:]])
    assert last < 0.8 * first, (first, last)
    assert np.mean(mask_losses[-5:]) < np.mean(mask_losses[:5])


def test_resume_matches_uninterrupted_run(tmp_path):
    from geopix_tiles.training.trainer import Trainer

    data = _dataset(tmp_path, n=2)
    stages = [StageConfig("text", 2, ["projector", "region", "llm", "embeddings"], ["region_class", "caption"], 1e-3),
              StageConfig("masks", 3, ALL, ["category_seg", "region_class"], 1e-3)]
    full = Trainer(_cfg(tmp_path / "a", data, stages, grad_accum=2))
    full.run()
    part = Trainer(_cfg(tmp_path / "b", data, stages, grad_accum=2))
    part.run(stop_after=3)  # interrupted inside stage 2, with optimizer state to restore
    del part
    resumed = Trainer(_cfg(tmp_path / "b", data, stages, grad_accum=2))
    out = resumed.run(resume=True)
    assert out["steps"] == 5 and len(out["history"]) == 2
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ckpt = resumed.latest_checkpoint()
    assert sorted(p.name for p in ckpt.iterdir()) == ["model.safetensors", "trainer.safetensors", "trainer_state.json"]


_DDP_SCRIPT = r"""
import os, sys, json
from pathlib import Path
import torch
from safetensors.torch import save_file
from geopix_tiles.training.config import TrainConfig, StageConfig, ModelSpec, DataSpec
from geopix_tiles.training.trainer import Trainer, DistInfo
out, data, accum = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
stages = [StageConfig("masks", 2, %(ALL)r, ["category_seg", "region_class", "caption"], 1e-3)]
cfg = TrainConfig(output_dir=str(out), model=ModelSpec(overrides={"tile_size": 64}),
                  data=DataSpec(train=data, val_fraction=0.0, samples_per_image=2), stages=stages,
                  batch_size=1, grad_accum=accum, checkpoint_every=0, progress=False).validate()
tr = Trainer(cfg)
tr.accumulate_gradients(0)
grads = {n: p.grad.detach().clone() for n, p in tr.model.named_parameters() if p.grad is not None}
save_file(grads, str(out / f"grads_{tr.info.rank}_{tr.info.world}.safetensors"))
tr.close()
"""


def test_two_process_ddp_gradients_match_single_process(tmp_path):
    from safetensors.torch import load_file

    data = _dataset(tmp_path, n=2)
    script = tmp_path / "ddp_step.py"
    script.write_text(_DDP_SCRIPT % {"ALL": ALL})
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    r = subprocess.run(torchrun + [str(script), str(tmp_path / "ddp"), str(data), "1"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "single"), str(data), "2"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    g0 = load_file(str(tmp_path / "ddp" / "grads_0_2.safetensors"))
    g1 = load_file(str(tmp_path / "ddp" / "grads_1_2.safetensors"))
    ref = load_file(str(tmp_path / "single" / "grads_0_1.safetensors"))
    assert g0.keys() == ref.keys() and len(ref) > 10
    nonzero = 0
    for k in ref:
        assert torch.allclose(g0[k], g1[k], atol=1e-6), k  # DDP averaged: every rank holds the same gradient
        assert torch.allclose(g0[k], ref[k], rtol=1e-4, atol=1e-6), k
        nonzero += int(ref[k].abs().sum() > 0)
    assert nonzero > 10


def test_cli_quick_train_and_evaluate_json(tmp_path, capsys):
    from geopix_tiles.interfaces.cli import main

    data = _dataset(tmp_path, n=3)
    out = tmp_path / "quick"
    assert main(["train", "--data", str(data), "--preset", "tiny", "--steps", "3", "--out", str(out),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert (out / "model" / "model.safetensors").is_file() and (out / "log.jsonl").exists()
    assert main(["evaluate", str(out / "model"), "--data", str(data), "--json", "--no-semantic",
                 "--samples-per-image", "2"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) >= {"ciou", "giou", "per_class_iou", "region_accuracy", "semantic_similarity"}
    assert 0.0 <= res["ciou"] <= 1.0 and 0.0 <= res["region_accuracy"] <= 1.0
    # user errors: one line, non-zero exit
    assert main(["train", "--data", str(tmp_path / "missing.jsonl"), "--steps", "2", "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_yaml_config_is_validated(tmp_path):
    from geopix_tiles.errors import InputError
    from geopix_tiles.training.config import load_config

    (tmp_path / "ok.yaml").write_text(
        "output_dir: run\ndata:\n  train: d.jsonl\nstages:\n  - {name: text, steps: 2}\n  - {name: masks, steps: 5, lr: 3e-4}\n")
    cfg = load_config(tmp_path / "ok.yaml")
    assert cfg.output_dir == str(tmp_path / "run") and cfg.total_steps == 7
    assert cfg.stages[1].lr == 3e-4 and "seg_head" in cfg.stages[1].train
    (tmp_path / "bad.yaml").write_text("data: {train: d.jsonl}\nstages: [{name: x, steps: 1, train: [wings]}]\n")
    with pytest.raises(InputError, match="wings"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "typo.yaml").write_text("data: {train: d.jsonl}\nbatchsize: 3\n")
    with pytest.raises(InputError, match="batchsize"):
        load_config(tmp_path / "typo.yaml")
    (tmp_path / "haze.yaml").write_text("data: {train: d.jsonl, augment: true, haze: 2}\n")
    with pytest.raises(InputError, match=r"data.haze is a probability"):
        load_config(tmp_path / "haze.yaml")
    (tmp_path / "clouds.yaml").write_text("data: {train: d.jsonl, clouds: 0.5}\n")  # over which chips?
    with pytest.raises(InputError, match=r"data.cloud_free"):
        load_config(tmp_path / "clouds.yaml")
    (tmp_path / "clouds_ok.yaml").write_text("data: {train: d.jsonl, clouds: 0.5, cloud_free: [naip_weak]}\n"
                                             "stages: [{name: masks, steps: 5}]\n")
    assert load_config(tmp_path / "clouds_ok.yaml").data.cloud_free == ["naip_weak"]


def test_lora_adapters_train_only_adapters_and_merge_on_export(tmp_path):
    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training.config import LoraSpec
    from geopix_tiles.training.trainer import Trainer, parameter_groups

    data = _dataset(tmp_path, n=1)
    cfg = _cfg(tmp_path / "run", data, [StageConfig("masks", 2, ["llm", "seg_head", "decoder"], ["category_seg"], 1e-3)],
               lora=LoraSpec(enabled=True, r=4))
    tr = Trainer(cfg)
    llm_params = parameter_groups(tr.model)["llm"]
    assert llm_params and all("lora_" in n for n, _ in llm_params)
    base = {n: p.detach().clone() for n, p in tr.model.llm.named_parameters() if "lora_" not in n}
    result = tr.run()
    for n, p in tr.model.llm.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), f"frozen LLM weight {n} changed"
    reloaded = GeoPixModel.from_pretrained(result["model_dir"])
    img = torch.from_numpy(tr.train_records[0].load())[None]
    tr.model.eval()
    with torch.no_grad():
        a = tr.model.segment(img, ["buildings"])
    assert torch.allclose(a, reloaded.segment(img, ["buildings"]), atol=1e-4)


def test_a_bare_cuda_device_gets_the_ranks_index():
    """torch >= 2.11 refuses ``set_device("cuda")``; the trainer asks for ``cuda:<local rank>``."""
    from geopix_tiles.training.trainer import training_device

    assert training_device("cuda", 3) == torch.device("cuda", 3)
    assert training_device("cuda:1", 3) == torch.device("cuda", 1)
    assert training_device("cpu", 3) == torch.device("cpu")
    assert training_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_anchor_keeps_other_classes_on_the_old_models_masks(tmp_path):
    """data.anchor: targets of anchored classes become the old model's probabilities; free ones keep labels."""
    import torch

    from geopix_tiles.training.dataset import collate
    from geopix_tiles.training.trainer import Trainer, anchor_targets

    data = _dataset(tmp_path, n=2)
    old = Trainer(_cfg(tmp_path / "old", data, [StageConfig("masks", 3, ALL, ["category_seg"], 1e-3)]))
    old_dir = old.run()["model_dir"]
    cfg = _cfg(tmp_path / "new", data, [StageConfig("masks", 2, ALL, ["category_seg"], 1e-3)])
    cfg.data.anchor, cfg.data.anchor_free = str(old_dir), ["water"]
    tr = Trainer(cfg)
    assert tr.anchor is not None and not any(p.requires_grad for p in tr.anchor.parameters())
    ds = tr.dataset(0)
    idx = [i for i, s in enumerate(ds.samples) if {"building", "water"} <= set(s.target_categories)][:1] \
        or list(range(2))
    items = [ds[i] for i in idx]
    batch = collate(items, tr.model.processor)
    labels = [m.clone() for m in batch["gt_masks"]]
    with torch.no_grad():
        expect = tr.anchor(**collate(items, tr.model.processor)).mask_logits
    n = anchor_targets(tr.anchor, batch, items, cfg.data.anchor_free)
    assert n >= 1
    for b, item in enumerate(items):
        for j, c in enumerate(item["sample"].target_categories):
            got = batch["gt_masks"][b][j]
            if c == "water":  # free: still the human label (0/1)
                assert torch.equal(got, labels[b][j])
            elif c == "building":  # anchored: the old model's own probabilities, not the label
                assert torch.allclose(got, torch.sigmoid(expect[b][j]), atol=1e-6)
                assert not torch.equal(got, labels[b][j])
                assert 0.0 < float(got.min()) and float(got.max()) < 1.0
    # a class a scene label rules out (labelled absent) keeps its empty target on the listed sources only
    ds.records[ds.samples[idx[0]].record].meta["classes"] = ["building", "water", "road"]
    assert ds[idx[0]]["absent"] == ("road",)
    for keeps, anchored in ((["scene_labels"], False), (["another_source"], True)):
        fresh = [ds[i] for i in idx]  # the first call overwrote the items' own target tensors
        batch2 = collate(fresh, tr.model.processor)
        labels2 = [m.clone() for m in batch2["gt_masks"]]
        marked = [dict(it, source="scene_labels", absent=("building",)) for it in fresh]
        anchor_targets(tr.anchor, batch2, marked, cfg.data.anchor_free, keeps)
        for b, item in enumerate(items):
            for j, c in enumerate(item["sample"].target_categories):
                if c == "building":
                    assert torch.equal(batch2["gt_masks"][b][j], labels2[b][j]) is not anchored
    # data.degrade: a degraded chip's anchored targets are the anchor's masks on its clean copy
    fresh = [ds[i] for i in idx]
    clean = [it["image"].clone() for it in fresh]
    seen = [dict(it, image=(it["image"] * 0.5).contiguous(), clean_image=c) for it, c in zip(fresh, clean)]
    batch3 = collate(seen, tr.model.processor)
    with torch.no_grad():
        on_clean = tr.anchor(**collate(fresh, tr.model.processor)).mask_logits
        on_dark = tr.anchor(**collate(seen, tr.model.processor)).mask_logits
    anchor_targets(tr.anchor, batch3, seen, cfg.data.anchor_free)
    assert torch.equal(batch3["images"], torch.stack([it["image"] for it in seen]))  # the student's input is untouched
    for b, item in enumerate(seen):
        for j, c in enumerate(item["sample"].target_categories):
            if c == "building":
                assert torch.allclose(batch3["gt_masks"][b][j], torch.sigmoid(on_clean[b][j]), atol=1e-6)
                assert not torch.allclose(batch3["gt_masks"][b][j], torch.sigmoid(on_dark[b][j]), atol=1e-4)
    # data.anchor_flips: the anchor's probabilities averaged over mirrored views, each mapped back
    fresh = [ds[i] for i in idx]
    batch4 = collate(fresh, tr.model.processor)
    views = []
    with torch.no_grad():
        for axes in ((), (-1,), (-2,), (-2, -1)):
            mirrored = [dict(it, image=it["image"].flip(axes) if axes else it["image"]) for it in fresh]
            logits = tr.anchor(**collate(mirrored, tr.model.processor)).mask_logits
            views.append([torch.sigmoid(lg).flip(axes) if axes else torch.sigmoid(lg) for lg in logits])
    anchor_targets(tr.anchor, batch4, fresh, cfg.data.anchor_free, flips=4)
    for b, item in enumerate(fresh):
        for j, c in enumerate(item["sample"].target_categories):
            if c == "building":
                mean = sum(v[b][j] for v in views) / 4
                assert torch.allclose(batch4["gt_masks"][b][j], mean, atol=1e-5)
                assert not torch.allclose(mean, views[0][b][j], atol=1e-4)  # the views do differ
    fresh = [ds[i] for i in idx]  # anchor_flips_classes: the classes not named keep the single view
    batch5 = collate(fresh, tr.model.processor)
    anchor_targets(tr.anchor, batch5, fresh, cfg.data.anchor_free, flips=4, flips_classes=["road"])
    for b, item in enumerate(fresh):
        for j, c in enumerate(item["sample"].target_categories):
            if c == "building":
                assert torch.allclose(batch5["gt_masks"][b][j], views[0][b][j], atol=1e-5)
    from geopix_tiles.errors import InputError

    for bad in ({"anchor": str(old_dir), "anchor_flips": 3}, {"anchor_flips": 4}):
        with pytest.raises(InputError, match="anchor_flips"):
            TrainConfig(output_dir=str(tmp_path / "bad"), data=DataSpec(train=str(data), **bad),
                        stages=[StageConfig("masks", 1, ALL, ["category_seg"], 1e-3)]).validate()
    assert tr.run()["steps"] == 2  # trains with the anchor in the loop
