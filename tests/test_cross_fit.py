"""Out-of-fold masks for the presence check (training/cross_fit.py): folds hold whole scenes apart,
a fold model's config is the recipe's on that fold's complement, and the check's examples take the
fold model's masks with the shipped model's features."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from geopix_tiles.training.config import load_config  # noqa: E402
from geopix_tiles.training.cross_fit import FOLDS, fold_config, fold_models, split_folds  # noqa: E402
from geopix_tiles.training.records import ImageRecord, read_jsonl  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT / "tests" / "data" / "default_val" / "val.jsonl"


def _rec(source: str, window, classes=("building",)) -> ImageRecord:
    return ImageRecord(image_path=f"/x/{source.replace('/', '_')}_{window[0]}_{window[1]}.tif", instances=[],
                       meta={"source": source, "window": list(window), "classes": list(classes)})


def test_folds_keep_whole_scenes_apart_and_split_single_scenes_along_their_spread():
    recs = [_rec(f"dubai_aerial/tile_{t}/image_part_00{p}", (p * 10, t * 10, 256, 256)) for t in range(1, 7) for p in (1, 2)]
    recs += [_rec(f"naip_weak/m_4709963_se_14_1_{y}0801", (0, 0, 256, 256)) for y in range(2009, 2020)]
    recs += [_rec("open_cities", (x, 5, 256, 256)) for x in range(0, 1000, 100)]  # spread along x
    recs += [_rec("s2_cloud", (0, y, 256, 256)) for y in range(0, 300, 30)]  # one column: spread along y
    recs += [_rec("uc_merced_negatives", (0, 0, 256, 256)), _rec("puerto_rico", (0, 0, 256, 256), classes=())]
    folds = split_folds(recs)
    assert set(folds) == set(FOLDS)
    a, b = ({str(r.meta["source"]) for r in folds[f]} for f in FOLDS)
    dubai = lambda names: {n.split("/")[1] for n in names if n.startswith("dubai")}  # noqa: E731
    assert dubai(a) == {"tile_1", "tile_2", "tile_3", "tile_6"} and dubai(b) == {"tile_4", "tile_5"}
    naip = lambda names: {n[-8:-4] for n in names if n.startswith("naip")}  # noqa: E731
    assert naip(a) and naip(b) and not naip(a) & naip(b)  # whole dates
    for src, axis in (("open_cities", 0), ("s2_cloud", 1)):
        cut = [[r.meta["window"][axis] for r in folds[f] if r.meta["source"] == src] for f in FOLDS]
        assert len(cut[0]) == len(cut[1]) == 5 and max(cut[0]) < min(cut[1])
    kept = [r for f in FOLDS for r in folds[f]]
    assert len(kept) == len({id(r) for r in kept}) == len(recs) - 2  # UC Merced negatives and unlabelled left out


def test_a_fold_config_is_the_recipe_scaled_onto_the_fold(tmp_path):
    cfg = load_config(ROOT / "training" / "configs" / "default_v2.yaml")
    f = fold_config(cfg, tmp_path, 2500)
    assert sum(s.steps for s in f.stages) == 2500 and [s.name for s in f.stages] == [s.name for s in cfg.stages]
    assert f.stages[0].steps == round(cfg.stages[0].steps * 2500 / 4000)
    assert [s.tasks for s in f.stages] == [s.tasks for s in cfg.stages] and f.stages[1].lr == cfg.stages[1].lr
    assert Path(f.output_dir) == tmp_path and Path(f.data.train) == tmp_path / "chips.jsonl"
    assert f.data.augment == cfg.data.augment and f.seed == cfg.seed
    assert fold_models(tmp_path) is None


def test_check_examples_take_the_fold_models_masks_and_the_shipped_features():
    """Real held-out chips, the shipped model and a second (tiny) model as the masker: the examples are
    exactly the questions the masker's masks say "yes" to, their features the shipped tower's inside them."""
    from geopix_tiles.model import GeoPixConfig, GeoPixModel
    from geopix_tiles.model.answer import present
    from geopix_tiles.model.dialogue import class_phrases
    from geopix_tiles.model.presence_check import PresenceCheck
    from geopix_tiles.segmenters.registry import load_answer_model
    from geopix_tiles.training.presence_check import _images, _truths, check_examples

    model = load_answer_model("default", "cpu")
    recs = [r for r in read_jsonl(VAL) if r.meta.get("classes")][:4]
    classes = model.class_names()
    check = PresenceCheck(model.vision.channels, classes)
    torch.manual_seed(0)
    cfg = GeoPixConfig.tiny(tile_size=256)
    cfg.extra["memory_class_names"] = classes
    masker = GeoPixModel(cfg).eval()
    own = check_examples(model, check, recs)
    oof = check_examples(model, check, recs, mask_model=masker)
    phrases = dict(class_phrases(model))
    with torch.no_grad():  # one batch of 4 chips, as check_examples cuts them (8 at a time)
        x = _images(recs, 256)
        asked = [[(c, t) for c, t in _truths(r, 256) if c in phrases] for r in recs]
        names = sorted({c for q in asked for c, _ in q})
        probs = torch.sigmoid(masker.segment_encoded(masker.encode_images(x), [phrases[c] for c in names])[0])
        f = check.features(model.encode_images(x).feats, probs, names)
        want_x, want_y = [], []
        for i, q in enumerate(asked):
            for c, t in q:
                m = probs[i, names.index(c)] > 0.5
                if present(int(m.sum()), float(m.float().mean())):
                    want_x.append(f[i, names.index(c)])
                    want_y.append(float(t))
    assert len(want_y) == len(oof[1]) and len(want_y) > 0
    assert torch.allclose(oof[0], torch.stack(want_x), atol=1e-4) and oof[1].tolist() == want_y
    assert len(own[1]) != len(oof[1]) or not torch.allclose(own[0], oof[0])  # the masks did change
    assert np.isfinite(oof[0].numpy()).all()


def test_the_check_fitted_on_both_kinds_of_masks_sees_each_chip_twice():
    """``own_masks_too``: every chip's questions under the model's own masks *and* under its fold model's, so the
    examples per class are exactly the sum of the two kinds' (real held-out chips, a tiny model as both folds' masker)."""
    from collections import Counter

    from geopix_tiles.model import GeoPixConfig, GeoPixModel
    from geopix_tiles.model.presence_check import PresenceCheck
    from geopix_tiles.segmenters.registry import load_answer_model
    from geopix_tiles.training.presence_check import add_presence_check, check_examples

    model = load_answer_model("default", "cpu")
    shipped = model.presence_check
    recs = [r for r in read_jsonl(VAL) if r.meta.get("classes")]
    torch.manual_seed(0)
    cfg = GeoPixConfig.tiny(tile_size=256)
    cfg.extra["memory_class_names"] = model.class_names()
    masker = GeoPixModel(cfg).eval()
    check = PresenceCheck(model.vision.channels, model.class_names())
    own = Counter(check_examples(model, check, recs)[2])
    oof = Counter(check_examples(model, check, recs, mask_model=masker)[2])  # every chip is in some fold
    try:
        both = add_presence_check(model, recs, [], fold_models={f: masker for f in FOLDS}, own_masks_too=True)
        alone = add_presence_check(model, recs, [], fold_models={f: masker for f in FOLDS})
    finally:
        model.presence_check = shipped  # the cached shipped model is shared with other tests
    assert both["masks"] == "the model's own and out-of-fold" and alone["masks"].startswith("out-of-fold")
    assert both["examples_per_class"] == dict(own + oof) and alone["examples_per_class"] == dict(oof)
    assert own != oof  # the tiny masker's "yes" answers are not the shipped model's


def test_own_masks_too_without_fold_models_is_refused_not_a_silent_plain_fit():
    from geopix_tiles.training.presence_check import add_presence_check

    with pytest.raises(ValueError, match="pass fold_models too"):
        add_presence_check(object(), [], [], own_masks_too=True)


def test_load_fold_models_names_the_missing_folder_and_how_to_make_it(tmp_path):
    from geopix_tiles.training.cross_fit import load_fold_models

    with pytest.raises(SystemExit, match=f"no fold models in {tmp_path}; run --step folds"):
        load_fold_models(tmp_path, "run --step folds")
