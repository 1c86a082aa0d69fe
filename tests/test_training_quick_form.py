"""The config-free training form: stages fitted to each preset, and evaluate takes the run folder.

Issue 11 item 8 also asks that two real chips be fitted to cIoU >= 0.7 in 400 steps; that is
not met yet (measured through `evaluate` with its held-out templates: tiny 0.04-0.05, small
0.31; the tiny run is not converged at 400 steps), so it is not asserted here.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

VAL = Path(__file__).resolve().parent / "data" / "default_val"


@pytest.mark.parametrize("preset, vision_scale, lr", [("tiny", 1.0, 1e-3), ("small", 0.1, 1e-3), ("base", 0.1, 1e-4)])
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


def test_evaluate_accepts_the_run_folder(tmp_path, capsys):
    from geopix_tiles.cli import main
    from geopix_tiles.training.records import read_jsonl, write_jsonl

    records = [r for r in read_jsonl(VAL / "val.jsonl") if r.instances][:2]
    assert len(records) == 2
    for r in records:  # the JSONL resolves image paths relative to itself
        shutil.copy(r.image_path, tmp_path / Path(r.image_path).name)
        r.image_path = str(tmp_path / Path(r.image_path).name)
    data = tmp_path / "two_chips.jsonl"
    write_jsonl(records, data)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--val", str(data), "--preset", "tiny", "--steps", "3",
                 "--out", str(run), "--no-progress"]) in (0, None)
    assert (run / "model" / "config.json").is_file() and not (run / "config.json").exists()
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(data), "--json", "--no-semantic"]) in (0, None)
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["counts"]["images"] == 2 and res["ciou"] is not None
