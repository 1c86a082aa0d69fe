"""The default recipe's continuation variants start from, and are anchored to, default_v2's exact
weights, which the shipped checkpoint no longer holds once a continuation ships: git keeps them."""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True).stdout


def test_v2_base_extracts_the_recorded_v2_checkpoint(tmp_path, monkeypatch):
    from geopix_tiles.training import default_recipe as recipe

    try:
        blob = _git("show", f"{recipe.V2_COMMIT}:geopix_tiles/data/default_model/model.safetensors")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git clone with the full history (v2 lives in commit V2_COMMIT)")
    monkeypatch.setattr(recipe, "V2_BASE", tmp_path / "runs" / "default_v2" / "model")
    got = recipe.v2_base()
    assert got == tmp_path / "runs" / "default_v2" / "model"
    names = sorted(p.name for p in got.iterdir())
    assert "model.safetensors" in names and "config.json" in names
    assert hashlib.sha256((got / "model.safetensors").read_bytes()).hexdigest() == hashlib.sha256(blob).hexdigest()
    # v2 is what the record says: the training record inside the extracted checkpoint names it
    assert '"geopix-tiles default_v2"' in (got / "training_record.json").read_text()
    assert not [p for p in got.parent.iterdir() if p.name != "model"], "temporary files left beside the base"
    # a second call reuses the extracted copy instead of touching git again
    monkeypatch.setattr(recipe, "V2_COMMIT", "0" * 40)
    assert recipe.v2_base() == got


def test_continuations_read_v2s_chips_and_every_config_points_at_the_base():
    from geopix_tiles.training import default_recipe as recipe
    from geopix_tiles.training.config import load_config

    assert recipe.VARIANT == "default_v24" and "v22" in recipe.CONTINUES.values() and "v18" in recipe.CONTINUES and "v22" in recipe.FROM_SHIPPED
    for v in sorted(recipe.ON_V2_CHIPS):
        cfg = load_config(ROOT / "training" / "configs" / f"default_{v}.yaml")
        # v2's direct continuations start from v2; the later ones from the variant they continue, or from a
        # checkpoint as shipped (taken from git)
        base = (recipe.FROM_SHIPPED[v][1] if v in recipe.FROM_SHIPPED
                else ROOT / "runs" / f"default_{recipe.CONTINUES.get(v, 'v2')}" / "model").resolve()
        assert Path(cfg.model.checkpoint).resolve() == base, v
        if cfg.data.anchor:
            assert Path(cfg.data.anchor).resolve() == base, v
        assert Path(cfg.data.train).resolve() == (ROOT / "runs" / "default_v2" / "data" / "train.jsonl").resolve(), v


def test_the_train_step_trains_what_a_variant_continues_when_its_weights_are_missing(tmp_path, monkeypatch):
    from geopix_tiles.training import default_recipe as recipe

    monkeypatch.setattr(recipe, "ROOT", tmp_path)
    assert recipe.training_chain("v18") == ["v14", "v18"]  # a fresh clone: v14's weights are not there
    assert recipe.training_chain("v14") == ["v14"] and recipe.training_chain("v2") == ["v2"]
    weights = tmp_path / "runs" / "default_v14" / "model" / "model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"")
    assert recipe.training_chain("v18") == ["v18"]
    # the roof-colour continuations of v22 train v22 first (from v18 as shipped, taken from git), and keep the
    # shipped intent head like every continuation of a shipped checkpoint
    assert recipe.training_chain("v24") == ["v22", "v24"] and recipe.training_chain("v25") == ["v22", "v25"]
    assert recipe.continues_shipped("v24") and recipe.continues_shipped("v22") and not recipe.continues_shipped("v18")
