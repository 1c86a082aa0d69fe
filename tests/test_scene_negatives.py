"""Scene-labelled negatives (UC Merced): records, the samples they make, and false-alarm scoring."""
from __future__ import annotations

import numpy as np
import pytest

from geopix_tiles.training.scene_negatives import (ABSENT_BY_SCENE, HELD_OUT_INDICES, chip_index, scene_chips,
                                                    scene_negative_records)


def test_the_table_names_every_uc_merced_scene_and_only_model_classes():
    from geopix_tiles.training.dialogue_heads import UC_MERCED_NAMES

    assert set(ABSENT_BY_SCENE) == set(UC_MERCED_NAMES)
    model_classes = {"building", "road", "water", "vegetation", "land", "cloud"}
    for scene, absent in ABSENT_BY_SCENE.items():
        assert absent and set(absent) <= model_classes, scene
        assert "land" not in absent  # bare patches occur in every kind of scene
    # the places people swim or park next to are never claimed empty of water / buildings
    for scene in ("denseresidential", "mediumresidential", "sparseresidential", "tenniscourt", "harbor"):
        assert "water" not in ABSENT_BY_SCENE[scene]
    assert "water" in ABSENT_BY_SCENE["storagetanks"] and "cloud" in ABSENT_BY_SCENE["storagetanks"]


def test_records_are_instance_free_chips_asking_only_for_what_the_scene_rules_out(shared_data):
    from geopix_tiles.training.instruct import make_samples
    from geopix_tiles.training.dataset import InstructDataset

    recs = scene_negative_records(shared_data / "uc_merced", [0, 30])
    assert len(recs) == 2 * len(ABSENT_BY_SCENE)
    assert {r.meta["scene_class"] for r in recs} == set(ABSENT_BY_SCENE)
    forest = next(r for r in recs if r.meta["scene_class"] == "forest")
    assert forest.instances == [] and forest.meta["classes"] == list(ABSENT_BY_SCENE["forest"])
    assert forest.size == (256, 256) and forest.meta["weak_labels"] is True
    px = forest.load()
    assert px.shape == (3, 256, 256) and 0.0 <= px.min() and px.max() <= 1.0
    # the chip's own 2-98 % stretch: a few per cent at 0 and at 1 (more with ties of 8-bit values)
    assert 0.005 < float((px == 0).mean()) < 0.15 and 0.005 < float((px == 1).mean()) < 0.15

    samples = make_samples(recs, tasks=["category_seg", "referring_seg", "region_class"], seed=0, per_record=6,
                           max_targets=3, negatives=0.3, paraphrases=0.5, unrelated=0.25)
    assert samples, "negatives must turn instance-free records into samples"
    ds = InstructDataset(recs, samples, 256)
    for i, s in enumerate(samples):
        assert s.task == "category_seg"  # no instance: nothing to refer to or classify
        absent = set(recs[s.record].meta["classes"])
        assert set(s.target_categories) <= absent | {"unrelated"}
        assert set(s.target_categories) & absent  # every sample asks for at least one ruled-out class
        assert float(ds[i]["gt_masks"].sum()) == 0.0


def test_held_out_chips_are_disjoint_from_training_chips(shared_data):
    import json
    from pathlib import Path

    split = json.loads((Path(__file__).parents[1] / "training" / "splits" / "default_v3.json").read_text())
    spec = split["scene_negatives"]["uc_merced"]
    train = {p for p, _ in scene_chips(shared_data / "uc_merced", spec["train_indices"])}
    held = {p for p, _ in scene_chips(shared_data / "uc_merced", HELD_OUT_INDICES)}
    assert train and held and not train & held
    # the scene head holds out chips 60-79: the negatives never train on them either
    assert max(spec["train_indices"]) < 60 <= min(HELD_OUT_INDICES)


def test_scene_label_score_counts_each_ruled_out_and_ruled_in_class_once(shared_data, tiny_model_factory):
    from geopix_tiles.training.prompt_eval import evaluate_scene_labels

    model = tiny_model_factory()
    recs = [r for r in scene_negative_records(shared_data / "uc_merced", [60])
            if r.meta["scene_class"] in ("forest", "storagetanks", "beach")]
    out = evaluate_scene_labels(model, recs, batch_size=2)
    asked = sum(len(r.meta["classes"]) for r in recs)
    assert out["counts"] == {"images": 3, "questions": asked, "detections_asked": 1}  # forest: vegetation
    assert set(out["detection_rate"]) == {"vegetation"} and 0.0 <= out["detection_rate_all"] <= 1.0
    assert set(out["false_alarm_rate"]) == {c for r in recs for c in r.meta["classes"]}
    assert set(out["false_alarm_rate_by_scene"]) == {"forest", "storagetanks", "beach"}
    for v in list(out["false_alarm_rate"].values()) + list(out["painted_share"].values()):
        assert 0.0 <= v <= 1.0
    # a painted share of zero cannot be a false alarm under the presence rule
    for c, share in out["painted_share"].items():
        if share == 0.0:
            assert out["false_alarm_rate"][c] == 0.0
    assert np.isclose(out["false_alarm_rate_all"] * asked,
                      sum(out["false_alarm_rate"][c] * sum(c in r.meta["classes"] for r in recs)
                          for c in out["false_alarm_rate"]))


def test_chip_index_reads_the_number_of_a_chip_name():
    assert chip_index("forest07.jpg") == 7 and chip_index("/x/denseresidential75.jpg") == 75
    assert chip_index("README.md") is None
