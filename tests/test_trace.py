"""The numpy edge tracer draws exactly the polygons of GDAL's polygonizer (4-connectivity)."""
from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage

from geopix_tiles.outputs.trace import burn_pieces, trace_labels


def _gdal(labels: np.ndarray, x0: float, y0: float) -> dict[int, shapely.Geometry]:
    polys = {}
    for geom, value in shapes(labels, mask=labels > 0, connectivity=4, transform=Affine.translation(x0, y0)):
        assert int(value) not in polys  # one ring set per 4-connected label
        polys[int(value)] = shapely.geometry.shape(geom)
    return polys


def _check(labels: np.ndarray, x0: float = 0.0, y0: float = 0.0) -> int:
    values, polys = trace_labels(labels, x0, y0)
    ref = _gdal(labels, x0, y0)
    assert values.tolist() == sorted(ref)
    for v, p in zip(values.tolist(), polys):
        assert p.is_valid, (v, p.wkt)
        assert p.area == pytest.approx(float((labels == v).sum()))
        # same vertices, same rings: exact equality once both are in normal form
        assert shapely.normalize(p).equals_exact(shapely.normalize(ref[v]), 0), (v, p.wkt, ref[v].wkt)
    return len(values)


def test_random_label_images_match_gdal():
    rng = np.random.default_rng(7)
    traced = 0
    for _ in range(120):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        fg = rng.random((h, w)) < rng.uniform(0.2, 0.8)
        labels, _ = ndimage.label(fg)  # 4-connected, as the vectorizer labels
        traced += _check(labels.astype(np.int32), float(rng.integers(-50, 50)), float(rng.integers(0, 900)))
    assert traced > 2000


def test_corner_touches_and_holes():
    # one ring of pixels around a hole whose outline meets itself at a corner; two labels
    # diagonal to each other; a pixel island inside a hole
    a = np.array([[1, 1, 1, 1, 0, 0, 0],
                  [1, 0, 0, 1, 0, 0, 0],
                  [1, 0, 1, 1, 0, 0, 2],
                  [1, 1, 0, 1, 0, 2, 0],
                  [0, 1, 1, 1, 0, 0, 0]], dtype=np.int32)
    labels, n = ndimage.label(a > 0)
    assert n == 3  # the two diagonal 2-pixels are separate under 4-connectivity
    _check(labels.astype(np.int32))
    values, polys = trace_labels(labels.astype(np.int32))
    ring = polys[0]
    assert len(ring.interiors) == 2 and ring.area == 15  # holes (1,1)-(1,2)-(2,1) and (3,2) meet at a corner

    island = np.zeros((7, 7), np.int32)
    island[1:6, 1:6] = 1
    island[2:5, 2:5] = 0
    island[3, 3] = 2
    values, polys = trace_labels(island)
    assert values.tolist() == [1, 2]
    assert polys[0].area == 16 and len(polys[0].interiors) == 1 and polys[1].area == 1
    _check(island)


def test_empty_and_full():
    values, polys = trace_labels(np.zeros((4, 5), np.int32))
    assert len(values) == 0 and len(polys) == 0
    values, polys = trace_labels(np.ones((4, 5), np.int32), 10, 20)
    assert values.tolist() == [1]
    assert polys[0].equals(shapely.box(10, 20, 15, 24))
    with pytest.raises(ValueError, match="2-D"):
        trace_labels(np.ones((2, 2, 2), np.int32))
    two_parts = np.array([[1, 0, 1]], np.int32)  # one value, two 4-connected components
    with pytest.raises(ValueError, match="4-connected"):
        trace_labels(two_parts)



def test_burn_pieces_fills_exactly_the_traced_pixels():
    rng = np.random.default_rng(11)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        fg = rng.random((h, w)) < rng.uniform(0.2, 0.8)
        labels, n = ndimage.label(fg)
        _, polys = trace_labels(labels.astype(np.int32), 5, -3)
        burnt = burn_pieces(list(polys), 5, -3, h, w)
        assert burnt.dtype == np.uint8 and np.array_equal(burnt.astype(bool), fg)


def _box(pieces):
    x0, y0, x1, y1 = (int(v) for v in shapely.total_bounds(pieces))
    return x0, y0, y1 - y0, x1 - x0


def test_join_pieces_redraws_objects_cut_by_strips_and_panels(monkeypatch):
    """Pieces cut by a strip seam and a panel seam join into the polygon GEOS's union gives."""
    from geopix_tiles.outputs import vectorize

    rng = np.random.default_rng(5)
    joined = 0
    for force in ((0, 10**9), vectorize._JOIN_PIXELS):  # the redraw, then the shipped rule
        monkeypatch.setattr(vectorize, "_JOIN_PIXELS", force)
        for _ in range(40):
            h, w = (int(v) for v in rng.integers(6, 60, 2))
            labels, n = ndimage.label(rng.random((h, w)) < 0.65)
            if n == 0:
                continue
            obj = labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1
            cy, cx = int(rng.integers(1, h)), int(rng.integers(1, w))
            pieces = []
            for r0, r1, c0, c1 in ((0, cy, 0, cx), (0, cy, cx, w), (cy, h, 0, cx), (cy, h, cx, w)):
                part, _ = ndimage.label(obj[r0:r1, c0:c1])
                pieces += list(trace_labels(part.astype(np.int32), c0 + 100, r0 + 200)[1])
            if len(pieces) < 2:
                continue
            got = vectorize.join_pieces(pieces)
            if force[0] == 0:  # the redraw's answer, not a fallback to GEOS
                assert got.equals(trace_labels(burn_pieces(pieces, *_box(pieces)), *_box(pieces)[:2])[1][0])
            want = shapely.union_all(pieces)
            assert got.is_valid and got.geom_type == "Polygon" and got.equals(want)
            assert got.area == pytest.approx(float(obj.sum()))
            joined += 1
    assert joined > 40


def test_join_pieces_of_two_objects_falls_back_to_the_union(monkeypatch):
    from geopix_tiles.outputs import vectorize

    monkeypatch.setattr(vectorize, "_JOIN_PIXELS", (0, 10**9))
    pieces = [shapely.box(0, 0, 2, 2), shapely.box(3, 0, 5, 2)]  # not touching: no single polygon
    got = vectorize.join_pieces(pieces)
    assert got.geom_type == "MultiPolygon" and got.area == 8


def test_chat_reply_polygons_are_gdal_polygons_in_the_scene_crs():
    """``masks_to_polygons`` (a chat reply's GeoDataFrame) traces with the same tracer as ``segment``."""
    from shapely.ops import unary_union

    from geopix_tiles.answers.conversation import masks_to_polygons

    rng = np.random.default_rng(3)
    transform = Affine(0.6, 0.0, 500000.0, 0.0, -0.6, 4100000.0)
    masks = rng.random((3, 40, 56)) < np.array([0.0, 0.4, 0.7])[:, None, None]  # mask 1 empty
    frame = masks_to_polygons(masks, transform, "EPSG:32615", "where?", "here", prompts=["a", "b", "c"])
    assert frame["mask"].tolist() == [2, 3] and frame.crs.to_epsg() == 32615
    for k, geom in zip(frame["mask"], frame.geometry):
        m = masks[k - 1]
        ref = unary_union([shapely.geometry.shape(g) for g, v in shapes(m.astype(np.uint8), mask=m,
                                                                          transform=transform) if v == 1])
        assert geom.equals(ref)
        assert geom.area == pytest.approx(m.sum() * 0.36)


def test_strip_labels_by_foreground_boxes_equal_whole_strip_labels():
    """Labelling box by box in place gives the objects of one ndimage.label over the strip:
    same pixel partition, labels 1..n unique across boxes (the later boxes renumbered)."""
    from geopix_tiles.outputs.vectorize import _TRACE_BLOCK, _foreground_boxes, _label_boxes

    rng = np.random.default_rng(3)
    w = 5 * _TRACE_BLOCK
    for blank in ([1, 3], [2], []):  # all-background column blocks -> 3, 2 and 1 boxes
        fg = rng.random((40, w)) < 0.45
        for b in blank:
            fg[:, b * _TRACE_BLOCK:(b + 1) * _TRACE_BLOCK] = False
        fg[:5] = False  # rows outside every box
        boxes = _foreground_boxes(fg)
        assert len(boxes) == len(blank) + 1
        labels, n = _label_boxes(fg, boxes)
        ref, m = ndimage.label(fg)
        assert n == m and labels.dtype == np.int32
        assert ((labels > 0) == fg).all()
        assert sorted(np.unique(labels[fg]).tolist()) == list(range(1, n + 1))
        # the same partition: each reference object is exactly one label and vice versa
        pairs = np.unique(np.stack([labels[fg], ref[fg]]), axis=1)
        assert pairs.shape[1] == n
