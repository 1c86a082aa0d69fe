"""The config-free training form fits real chips, and evaluate takes the run folder (issue 11, item 8)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

VAL = Path(__file__).resolve().parent / "data" / "default_val"


def test_two_real_chips_are_fitted_in_400_steps(tmp_path, capsys):
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
    assert main(["train", "--data", str(data), "--val", str(data), "--preset", "tiny", "--steps", "400",
                 "--out", str(run), "--no-progress"]) in (0, None)
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(data), "--json", "--no-semantic"]) in (0, None)
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["ciou"] >= 0.7, res
