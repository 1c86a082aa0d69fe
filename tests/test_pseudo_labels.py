"""Teacher masks on scene-labelled chips (training/pseudo_labels.py): storage, rules, and the committed file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geopix_tiles.training import rle
from geopix_tiles.training.pseudo_labels import (DISTILLED_CLASSES, add_pseudo_positives, read_pseudo_labels,
                                                 write_pseudo_labels)
from geopix_tiles.training.records import ImageRecord
from geopix_tiles.training.scene_negatives import ABSENT_BY_SCENE

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "training" / "pseudo_labels" / "uc_merced_default_v2.jsonl.gz"


def _record(folder: str, name: str, size=(256, 256)) -> ImageRecord:
    return ImageRecord(image_path=f"/data/uc_merced/{folder}/{name}", instances=[],
                       meta={"scene_class": folder, "window": [0, 0, *size], "classes": list(ABSENT_BY_SCENE[folder])})


def test_round_trip_and_the_scene_table_wins_over_the_teacher(tmp_path):
    forest = _record("forest", "forest03.jpg")
    tanks = _record("storagetanks", "storagetanks06.jpg", (253, 256))
    veg = np.zeros((256, 256), np.uint8)
    veg[10:200, 5:250] = 1
    roof = np.zeros((253, 256), np.uint8)
    roof[50:90, 60:100] = 1
    # the teacher painted water on the tank chip: the table rules water out there
    masks = [{"vegetation": veg, "building": veg}, {"building": roof, "water": roof}]
    path = tmp_path / "p.jsonl.gz"
    write_pseudo_labels(path, [forest, tanks], masks, "teacher-x")
    labels = read_pseudo_labels(path)
    assert set(labels) == {"forest/forest03.jpg", "storagetanks/storagetanks06.jpg"}
    assert np.array_equal(rle.decode(labels["forest/forest03.jpg"]["masks"]["vegetation"]), veg)
    added = add_pseudo_positives([forest, tanks], labels)
    # forest rules buildings out, tanks rule water out: only vegetation and the roof survive
    assert added == 2
    assert [i.category for i in forest.instances] == ["vegetation"]
    assert [i.category for i in tanks.instances] == ["building"]
    assert tanks.instances[0].area == int(roof.sum()) and tanks.size == (253, 256)
    assert forest.meta["pseudo_labels"] == "teacher-x"
    # what the negatives sampler may ask for with an empty mask is unchanged
    assert forest.meta["classes"] == list(ABSENT_BY_SCENE["forest"])


def test_a_mask_of_another_size_is_refused(tmp_path):
    rec = _record("forest", "forest03.jpg", (250, 256))
    path = tmp_path / "p.jsonl.gz"
    write_pseudo_labels(path, [_record("forest", "forest03.jpg")], [{"vegetation": np.ones((256, 256), np.uint8)}],
                        "t")
    with pytest.raises(ValueError, match="regenerate"):
        add_pseudo_positives([rec], read_pseudo_labels(path))


def test_samples_from_a_record_with_positives_and_negatives():
    from geopix_tiles.training.dataset import InstructDataset
    from geopix_tiles.training.instruct import make_samples

    rec = _record("forest", "forest03.jpg")
    veg = np.zeros((256, 256), np.uint8)
    veg[:, :200] = 1
    path_masks = {"forest/forest03.jpg": {"teacher": "t", "masks": {"vegetation": rle.encode(veg)}}}
    add_pseudo_positives([rec], path_masks)
    rec.image = np.zeros((3, 256, 256), np.float32)
    recs = [rec] * 30  # one category sample per record and draw
    samples = make_samples(recs, tasks=["category_seg"], seed=0, per_record=1, max_targets=3, negatives=0.3)
    ds = InstructDataset(recs, samples, 256)
    seen = set()
    for i, s in enumerate(samples):
        for c, m in zip(s.target_categories, ds[i]["gt_masks"]):
            seen.add(c)
            # vegetation is the teacher's mask; a ruled-out class is asked for with an empty one
            assert float(m.sum()) == (float(veg.sum()) if c == "vegetation" else 0.0), c
    assert "vegetation" in seen and seen - {"vegetation"} <= set(ABSENT_BY_SCENE["forest"])
    assert seen & set(ABSENT_BY_SCENE["forest"])


def test_the_committed_teacher_masks_cover_the_v4_split_and_respect_the_table():
    split = json.loads((ROOT / "training" / "splits" / "default_v4.json").read_text())
    spec = split["scene_negatives"]["uc_merced"]
    assert (ROOT / spec["pseudo_labels"]) == COMMITTED
    labels = read_pseudo_labels(COMMITTED)
    assert len(labels) == 20 * len(ABSENT_BY_SCENE)
    from geopix_tiles.training.scene_negatives import chip_index

    assert {chip_index(k) for k in labels} == set(spec["train_indices"])
    for key, entry in labels.items():
        scene = key.split("/")[0]
        assert entry["teacher"] == "default_v2"
        assert set(entry["masks"]) <= set(DISTILLED_CLASSES) - set(ABSENT_BY_SCENE[scene]), key
    forest = [rle.area(e["masks"]["vegetation"]) / 256 ** 2 for k, e in labels.items() if k.startswith("forest/")]
    assert len(forest) == 20 and np.mean(forest) > 0.9  # the teacher sees the forest as vegetation


def test_teacher_classes_limit_what_is_taught(tmp_path):
    rec = _record("storagetanks", "storagetanks06.jpg")
    m = np.zeros((256, 256), np.uint8)
    m[:20, :20] = 1
    labels = {"storagetanks/storagetanks06.jpg": {"teacher": "t", "masks": {"land": rle.encode(m),
                                                                           "building": rle.encode(m)}}}
    assert add_pseudo_positives([rec], labels, ["building", "road", "vegetation", "water"]) == 1
    assert [i.category for i in rec.instances] == ["building"]
