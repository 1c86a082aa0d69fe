"""Objects at panel seams wait on disk: exact geometry round trip, checkpoint and resume, batched joins."""
from __future__ import annotations

import numpy as np
import shapely

from geopix_tiles.outputs.seam_store import SeamStore
from geopix_tiles.outputs.vectorize import OpenObject, StripVectorizer, merge_deferred, objects_state


def _box_object(x0, y0, x1, y1, right_rows=None, left_rows=None):
    obj = OpenObject([shapely.box(x0, y0, x1, y1)], float((x1 - x0) * (y1 - y0)) / 2, (x1 - x0) * (y1 - y0))
    if right_rows is not None:
        obj.right.append(np.asarray(right_rows, dtype=np.int64))
    if left_rows is not None:
        obj.left.append(np.asarray(left_rows, dtype=np.int64))
    return obj


def _two_panels():
    """Panel 0 (columns 0-10) and panel 1 (10-20): two objects meet across the seam at rows 2-4,
    one on each side touches it alone (rows 8 and 12 are not shared)."""
    p0 = [_box_object(4, 2, 10, 5, right_rows=[2, 3, 4]), _box_object(6, 8, 10, 9, right_rows=[8])]
    p1 = [_box_object(10, 0, 13, 4, left_rows=[0, 1, 2, 3]), _box_object(10, 12, 11, 13, left_rows=[12])]
    return p0, p1


def test_pieces_go_to_disk_and_come_back_exactly(tmp_path):
    store = SeamStore(tmp_path / "parts" / "seams.wkb", 1, 2)
    p0, p1 = _two_panels()
    rng = np.random.default_rng(0)
    odd = shapely.Polygon(rng.random((9, 2)) * 1000 + 0.123456789).convex_hull  # non-integer vertices
    p0[1].pieces.append(odd)
    for q, objs in enumerate((p0, p1)):
        for o in objs:
            store.add(0, q, o)
    kept = store.objects[0][0][1]
    assert all(isinstance(off, int) and isinstance(n, int) for off, n in kept.pieces)  # no geometry in memory
    store.commit()
    assert (tmp_path / "parts" / "seams.wkb").stat().st_size == store.size > 0
    back = store.pieces(kept.pieces)
    assert back[0].equals_exact(p0[1].pieces[0], 0) and back[1].equals_exact(odd, 0)
    assert kept.right[0].tolist() == [8] and kept.total == p0[1].total and kept.count == p0[1].count
    store.close()


def test_resume_truncates_what_was_written_after_the_checkpoint(tmp_path):
    path = tmp_path / "seams.wkb"
    store = SeamStore(path, 1, 2)
    p0, p1 = _two_panels()
    for o in p0:
        store.add(0, 0, o)
    store.commit()
    state = store.state()
    committed = store.size
    store.add(0, 1, p1[0])  # after the checkpoint: a crash loses it
    store.close()
    assert path.stat().st_size > committed

    resumed = SeamStore(path, 1, 2)
    resumed.load_state(state)
    assert resumed.size == committed and resumed.objects[0][1] == []
    for o in p1:  # the resumed run re-makes panel 1's objects
        resumed.add(0, 1, o)
    resumed.commit()
    assert path.stat().st_size == resumed.size
    merged = [c for batch in merge_deferred(resumed.objects[0], 20, 0, resumed.pieces) for c in batch.geometry]
    fresh = merge_deferred([p0, p1], 20, 0)
    assert [g.wkb for g in merged] == [g.wkb for batch in fresh for g in batch.geometry]
    assert len(merged) == 3  # the pair across rows 2-4 is one object
    resumed.close()


def test_state_of_the_previous_version_is_taken_over(tmp_path):
    """Journals written when seam objects were kept in memory (their WKB in the state) still resume."""
    p0, _ = _two_panels()
    state = objects_state(p0, "d0_0_")
    store = SeamStore(tmp_path / "seams.wkb", 1, 2)
    store.load_state(state)
    got = store.objects[0][0]
    assert len(got) == 2 and store.size > 0
    assert store.pieces(got[0].pieces)[0].equals_exact(p0[0].pieces[0], 0)
    store.close()


def test_merge_in_small_batches_gives_the_same_objects(tmp_path):
    store = SeamStore(tmp_path / "seams.wkb", 1, 2)
    p0, p1 = _two_panels()
    for q, objs in enumerate((p0, p1)):
        for o in objs:
            store.add(0, q, o)
    one = list(merge_deferred(store.objects[0], 20, 0, store.pieces))
    many = list(merge_deferred(store.objects[0], 20, 0, store.pieces, batch_bytes=1))
    assert len(one) == 1 and len(many) == 3
    flat = [g for b in many for g in b.geometry]
    assert [g.wkb for g in one[0].geometry] == [g.wkb for g in flat]
    assert sorted(b.count[0] for b in many) == sorted(one[0].count)
    joined = max(flat, key=lambda g: g.area)
    assert joined.equals(shapely.union_all([shapely.box(4, 2, 10, 5), shapely.box(10, 0, 13, 4)]))
    store.close()


def test_a_vectorizer_hands_seam_objects_over_instead_of_keeping_them():
    handed = []
    vec = StripVectorizer(0, 8, 6, x0=0, right_open=True, on_deferred=handed.append)
    fg = np.zeros((6, 8), dtype=bool)
    fg[1:3, 5:8] = True  # touches the right panel edge
    fg[4, 1:3] = True  # does not
    closed = vec.add(0, fg, fg.astype(np.float32))
    assert len(closed) == 1 and vec.deferred == [] and len(handed) == 1
    assert handed[0].right[0].tolist() == [1, 2]


def test_a_panelled_run_parks_seam_objects_on_disk_and_joins_them(tmp_path, monkeypatch):
    """Through the engine: objects crossing the panel seams go to the store's file (written while the
    run lasts, gone after it), and come out joined exactly as in a run without panels."""
    from conftest import RGBN, water_scene, write_scene

    from geopix_tiles import segment
    from geopix_tiles.outputs import seam_store

    boxes = [(10, 60, 150, 420), (80, 90, 20, 680), (85, 220, 240, 300), (150, 160, 600, 700)]
    scene = write_scene(tmp_path / "s.tif", water_scene(230, 700, boxes), descriptions=RGBN)
    seen = []
    real_add, real_close = seam_store.SeamStore.add, seam_store.SeamStore.close

    def add(self, prompt, panel, obj):
        seen.append((panel, len(obj.pieces)))
        return real_add(self, prompt, panel, obj)

    def close(self):
        if self.size:
            seen.append(("file", self.path.stat().st_size, self.size))
        return real_close(self)

    monkeypatch.setattr(seam_store.SeamStore, "add", add)
    monkeypatch.setattr(seam_store.SeamStore, "close", close)
    opts = dict(tile=64, overlap=16)
    panels = segment(scene, "water", out=tmp_path / "p.gpkg", panel_width=256, **opts)
    parked = [s for s in seen if s[0] != "file"]
    files = [s for s in seen if s[0] == "file"]
    assert {p for p, _ in parked} == {0, 1, 2}  # every panel handed objects over (seams at 256 and 512)
    assert files and files[-1][1] == files[-1][2] > 0  # everything written reached the file
    assert not (tmp_path / ".p.gpkg.geopix-run").exists()  # the scratch folder (and the file) is gone
    seen.clear()
    whole = segment(scene, "water", panel_width=None, **opts)
    assert seen == []  # one panel: nothing waits at a seam
    assert len(panels) == len(whole) == len(boxes) - 1  # the long bar and the box hanging from it are one object
    key = lambda g: sorted(round(a, 6) for a in g.geometry.area)  # noqa: E731
    assert key(panels) == key(whole)
    assert sorted(panels["pixels"]) == sorted(whole["pixels"])
