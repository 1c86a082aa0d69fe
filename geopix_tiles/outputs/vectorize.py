"""Streaming vectorization: masks arrive as row strips, objects leave as whole polygons.

Each strip is labelled (4-connectivity, like ``rasterio.features.shapes``) and traced along
pixel edges (:mod:`.trace`, the polygons GDAL's polygonizer draws, without its per-pixel scan);
a label touching the strip's last row stays *open* and is joined, by
union-find over the pixel columns it shares with the next strip's first row, to the pieces
that continue it. An object crossing any number of seams therefore comes out as ONE polygon,
and nothing but the open pieces and one row of ids per prompt is ever held. Geometry is
built in integer pixel coordinates, where pieces share exact edges and union cleanly, and
moved to the CRS once, when the object closes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import shapely
from affine import Affine
from scipy import ndimage

from .trace import burn_pieces, trace_labels


@dataclass
class OpenObject:
    """Pieces of one object still touching the strip frontier (pixel coordinates).

    ``left``/``right`` hold the raster rows where it touches an interior panel edge: such
    an object can only be finished once the neighbouring panel has been processed.
    """

    pieces: list
    total: float
    count: int
    left: list = field(default_factory=list)
    right: list = field(default_factory=list)

    def absorb(self, other: "OpenObject") -> None:
        self.pieces += other.pieces
        self.total += other.total
        self.count += other.count
        self.left += other.left
        self.right += other.right

    @property
    def on_panel_edge(self) -> bool:
        return bool(self.left or self.right)


#: bounding boxes (pixels) where :func:`join_pieces` redraws instead of asking GEOS: below the
#: lower bound GEOS's union of a few small pieces is quicker than the numpy calls; above the
#: upper one the redraw's ~5 bytes per pixel of temporary arrays (80 MB) would be too much
_JOIN_PIXELS = (100_000, 16_000_000)


def join_pieces(pieces: list) -> shapely.Geometry:
    """One polygon from the pixel-aligned pieces of a 4-connected object (strips or panels).

    The pieces share exact pixel edges, so filling them into their bounding box and tracing
    that once (:mod:`.trace`) gives the polygon ``shapely.union_all`` would. For the large
    objects (fields, road networks) that cross many strips this is 3x quicker than GEOS's
    overlay of dozens of pieces with 10^4-10^5 vertices (benchmarks/results/engine.md).
    """
    x0, y0, x1, y1 = (int(round(v)) for v in shapely.total_bounds(pieces))
    if not _JOIN_PIXELS[0] <= (x1 - x0) * (y1 - y0) <= _JOIN_PIXELS[1]:
        return shapely.union_all(pieces)
    try:
        _, polys = trace_labels(burn_pieces(pieces, x0, y0, y1 - y0, x1 - x0), x0, y0)
    except ValueError:  # not one 4-connected object after all: let GEOS decide
        return shapely.union_all(pieces)
    return polys[0]


@dataclass
class ClosedObjects:
    """Objects finished in one call: pixel-space polygons and their probability sums."""

    prompt_index: list[int] = field(default_factory=list)
    geometry: list = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    count: list[int] = field(default_factory=list)

    def add(self, prompt_index: int, obj: OpenObject) -> None:
        self.prompt_index.append(prompt_index)
        self.geometry.append(obj.pieces[0] if len(obj.pieces) == 1 else join_pieces(obj.pieces))
        self.total.append(obj.total)
        self.count.append(obj.count)

    def extend(self, other: "ClosedObjects") -> None:
        self.prompt_index += other.prompt_index
        self.geometry += other.geometry
        self.total += other.total
        self.count += other.count

    def __len__(self) -> int:
        return len(self.geometry)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, a: int) -> int:
        self.parent.setdefault(a, a)
        root = a
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[a] != root:
            self.parent[a], a = root, self.parent[a]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _rows_by_label(column: np.ndarray, y0: int) -> dict[int, np.ndarray]:
    """Raster rows where each label of a one-pixel-wide column occurs."""
    idx = np.flatnonzero(column)
    if not len(idx):
        return {}
    labs = column[idx]
    order = np.argsort(labs, kind="stable")
    labs, idx = labs[order], idx[order]
    cuts = np.flatnonzero(np.diff(labs)) + 1
    return {int(g[0]): r + y0 for g, r in zip(np.split(labs, cuts), np.split(idx, cuts))}


#: column blocks a strip is cut into when looking for foreground (labelling and tracing cost
#: a few ns per pixel they scan, foreground or not)
_TRACE_BLOCK = 256


def _foreground_boxes(foreground: np.ndarray) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Row/column ranges to trace: runs of column blocks that hold foreground, each cut to its rows.

    Runs are separated by at least one all-background block, so no 4-connected object spans
    two of them and tracing them apart gives exactly the polygons of tracing the whole strip.
    """
    w = foreground.shape[1]
    blocks = np.logical_or.reduceat(foreground, np.arange(0, w, _TRACE_BLOCK), axis=1)  # [rows, blocks]
    edges = np.flatnonzero(np.diff(np.concatenate([[False], blocks.any(axis=0), [False]]).astype(np.int8)))
    boxes = []
    for b, e in zip(edges[::2].tolist(), edges[1::2].tolist()):  # runs [b, e) of blocks with foreground
        rows = np.flatnonzero(blocks[:, b:e].any(axis=1))
        boxes.append(((int(rows[0]), int(rows[-1]) + 1), (b * _TRACE_BLOCK, min(w, e * _TRACE_BLOCK))))
    return boxes


def _label_boxes(foreground: np.ndarray, boxes: list) -> tuple[np.ndarray, int]:
    """4-connected labels of a strip, computed only inside its foreground boxes.

    Boxes are separated by all-background columns, so no object spans two of them and
    labelling them apart gives the same objects as labelling the whole strip (numbered box by
    box); on a scene with 12 % foreground this scans about a quarter of the pixels.
    """
    labels = np.zeros(foreground.shape, dtype=np.int32)
    total = 0
    for (r0, r1), (c0, c1) in boxes:
        # labelled in place (ndimage writes through the view; the box's frame stays zero): no
        # copy, and no renumbering pass for the first box, which on most strips is the only one
        part = labels[r0:r1, c0:c1]
        n = ndimage.label(foreground[r0:r1, c0:c1], output=part)
        if n and total:
            np.add(part, np.int32(total), out=part, where=foreground[r0:r1, c0:c1])
        total += n
    return labels, total


@dataclass
class TracedStrip:
    """One strip of one prompt's mask, labelled and traced: everything :meth:`StripVectorizer.join` needs.

    Made by :func:`trace_strip` from the strip alone (no state), so it can be made in another
    process; plain arrays and WKB, so it pickles cheaply and exactly.
    """

    y0: int
    rows: int
    count: int  # labels 1..count
    values: np.ndarray  # label of each polygon (increasing)
    wkb: np.ndarray  # object array of WKB, one polygon per value (pixel coordinates)
    totals: np.ndarray  # probability sum per label 1..count
    counts: np.ndarray  # pixels per label 1..count
    top: np.ndarray  # labels of the first row
    bottom: np.ndarray  # labels of the last row
    left: np.ndarray  # labels of the first column
    right: np.ndarray  # labels of the last column
    _geoms: list | None = field(default=None, repr=False)

    def polygons(self) -> list:
        if self._geoms is None:
            self._geoms = list(shapely.from_wkb(self.wkb)) if len(self.wkb) else []
        return self._geoms


def trace_strip(foreground: np.ndarray, fg_probs: np.ndarray, x0: int, y0: int,
                keep_geometry: bool = True) -> TracedStrip:
    """Label and trace one strip: ``foreground [rows, width]`` and the probabilities at its
    foreground pixels (``probs[foreground]``, row-major), columns starting at raster column ``x0``.

    The stateless, per-pixel part of vectorising (labelling, tracing, per-object sums), ~75 % of
    its time; :meth:`StripVectorizer.join` does the rest in order. ``keep_geometry=False`` leaves
    only WKB (what a worker process sends back).
    """
    boxes = _foreground_boxes(foreground)
    labels, nlab = _label_boxes(foreground, boxes)
    values, geoms = [], []
    totals = counts = np.zeros(0)
    if nlab:
        flat = labels[foreground]  # the same pixels, in the same order, as fg_probs
        totals = np.bincount(flat, weights=fg_probs, minlength=nlab + 1)[1:]
        counts = np.bincount(flat, minlength=nlab + 1)[1:]
        for (r0, r1), (c0, c1) in boxes:
            v, polys = trace_labels(labels[r0:r1, c0:c1], x0 + c0, y0 + r0)
            values.append(v)
            geoms.append(polys)
    values_arr = np.concatenate(values) if values else np.zeros(0, np.int64)
    geom_arr = np.concatenate(geoms) if geoms else np.zeros(0, dtype=object)
    strip = TracedStrip(y0, int(foreground.shape[0]), int(nlab), values_arr,
                        shapely.to_wkb(geom_arr) if not keep_geometry and len(geom_arr) else np.zeros(0, dtype=object),
                        totals, counts, labels[0].copy(), labels[-1].copy(), labels[:, 0].copy(), labels[:, -1].copy())
    if keep_geometry:
        strip._geoms = list(geom_arr)
    return strip


class StripVectorizer:
    """Turns consecutive strips of one prompt's mask (one panel wide) into closed objects.

    ``x0`` is the panel's first raster column; ``left_open``/``right_open`` mark panel
    edges inside the raster. Objects touching them are not emitted but handed to
    ``on_deferred`` (default: collected in ``deferred``) for :func:`merge_deferred`, which joins
    them across panels at the end.
    ``cut_rows`` (pixels) cuts objects at the first strip that starts in each new block of
    that many rows instead of joining across it, so no open object outgrows a block.
    """

    def __init__(self, prompt_index: int, width: int, height: int, x0: int = 0,
                 left_open: bool = False, right_open: bool = False, cut_rows: int | None = None,
                 on_deferred: Callable[[OpenObject], None] | None = None) -> None:
        self.prompt_index = prompt_index
        self.width = width
        self.height = height
        self.x0 = x0
        self.left_open = left_open
        self.right_open = right_open
        self.next_id = 1
        self.open: dict[int, OpenObject] = {}
        self.deferred: list[OpenObject] = []
        self.on_deferred = on_deferred or self.deferred.append
        self.frontier = np.zeros(width, dtype=np.int64)  # object id per column of the last row seen
        self.row = 0  # raster row the next strip starts at
        self.cut_rows = int(cut_rows) if cut_rows else None
        self.block = 0  # with cut_rows: the row block the last strip started in

    def add(self, y0: int, foreground: np.ndarray, probs: np.ndarray) -> ClosedObjects:
        """Consume rows ``[y0, y0 + n)``; return the objects that can no longer grow."""
        return self.join(trace_strip(foreground, probs[foreground], self.x0, y0))

    def join(self, strip: "TracedStrip") -> ClosedObjects:
        """Join a traced strip (:func:`trace_strip`, made anywhere: a worker process) to the open objects."""
        y0 = strip.y0
        if y0 != self.row:
            raise RuntimeError(f"strip starts at row {y0}, expected {self.row}")
        self.row = y0 + strip.rows
        last = self.row >= self.height
        if self.cut_rows and y0 // self.cut_rows != self.block:
            self.block = y0 // self.cut_rows
            self.frontier = np.zeros(self.width, dtype=np.int64)  # nothing above joins what starts here
        nlab = strip.count
        new: dict[int, OpenObject] = {}
        ids = np.zeros(nlab + 1, dtype=np.int64)
        if nlab:
            ids[1:] = np.arange(self.next_id, self.next_id + nlab)
            self.next_id += nlab
            polys = strip.polygons()
            # Python ints and floats up front: indexing numpy arrays per object was 8 % of the vector thread
            # on a scene of 500,000 small objects (py-spy, results/engine.md)
            id_of, totals, counts = ids.tolist(), strip.totals.tolist(), strip.counts.tolist()
            for k, poly in zip(strip.values.tolist(), polys):
                new[id_of[k]] = OpenObject([poly], totals[k - 1], counts[k - 1])
        if nlab and self.left_open:
            for k, rows in _rows_by_label(strip.left, y0).items():
                new[id_of[k]].left.append(rows)
        if nlab and self.right_open:
            for k, rows in _rows_by_label(strip.right, y0).items():
                new[id_of[k]].right.append(rows)
        uf = _UnionFind()
        if nlab:
            first = ids[strip.top]
            both = (self.frontier > 0) & (first > 0)
            for a, b in set(zip(self.frontier[both].tolist(), first[both].tolist())):
                uf.union(a, b)
        everything = {**self.open, **new}
        groups: dict[int, list[int]] = {}
        for oid in everything:
            groups.setdefault(uf.find(oid), []).append(oid)
        bottom = set() if (last or not nlab) else set(np.unique(ids[strip.bottom]).tolist()) - {0}
        closed = ClosedObjects()
        still_open: dict[int, OpenObject] = {}
        remap: dict[int, int] = {}
        for root, members in groups.items():
            obj = OpenObject([], 0.0, 0)
            for m in members:
                obj.absorb(everything[m])
            if bottom.intersection(members):
                still_open[root] = obj
                for m in members:
                    remap[m] = root
            elif obj.on_panel_edge:
                self.on_deferred(obj)
            else:
                closed.add(self.prompt_index, obj)
        self.open = still_open
        if nlab and not last and remap:
            row_ids = ids[strip.bottom]  # each column's new id -> its open object's root (0: closed or none)
            keys = np.fromiter(remap.keys(), dtype=np.int64, count=len(remap))
            roots = np.fromiter(remap.values(), dtype=np.int64, count=len(remap))
            order = np.argsort(keys)
            keys, roots = keys[order], roots[order]
            at = np.minimum(np.searchsorted(keys, row_ids), len(keys) - 1)
            self.frontier = np.where(keys[at] == row_ids, roots[at], 0)
        else:
            self.frontier = np.zeros(self.width, dtype=np.int64)
        return closed

    # -- checkpoint state: plain arrays, never pickles -------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        oids = sorted(self.open)
        return {"next_id": np.array([self.next_id, self.row, self.block], dtype=np.int64), "frontier": self.frontier,
                "open_ids": np.array(oids, dtype=np.int64),
                **objects_state([self.open[o] for o in oids], "open_"),
                **objects_state(self.deferred, "deferred_")}

    def load_state(self, s: dict[str, np.ndarray]) -> None:
        self.next_id, self.row, *block = (int(v) for v in s["next_id"])
        self.block = block[0] if block else 0
        self.frontier = s["frontier"].astype(np.int64)
        self.open = dict(zip((int(o) for o in s["open_ids"]), objects_from_state(s, "open_")))
        self.deferred = objects_from_state(s, "deferred_")


def objects_state(objs: list[OpenObject], prefix: str, pieces_state=None) -> dict[str, np.ndarray]:
    """Plain arrays (WKB bytes, row lists) for a checkpoint: never a pickle.

    ``pieces_state(pieces, prefix)`` encodes the pieces of all objects in order (default: their
    WKB; :class:`.seam_store.SeamStore` keeps file offsets instead).
    """
    owner = [i for i, o in enumerate(objs) for _ in o.pieces]
    out = {
        prefix + "total": np.array([o.total for o in objs], dtype=np.float64),
        prefix + "count": np.array([o.count for o in objs], dtype=np.int64),
        prefix + "piece_owner": np.array(owner, dtype=np.int64),
        **(pieces_state or _wkb_state)([p for o in objs for p in o.pieces], prefix),
    }
    for side in ("left", "right"):
        rows = [np.concatenate(getattr(o, side)) if getattr(o, side) else np.zeros(0, np.int64) for o in objs]
        out[prefix + side + "_rows"] = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
        out[prefix + side + "_len"] = np.array([len(r) for r in rows], dtype=np.int64)
    return out


def objects_from_state(s: dict[str, np.ndarray], prefix: str, pieces_from_state=None) -> list[OpenObject]:
    objs = [OpenObject([], float(t), int(c)) for t, c in zip(s[prefix + "total"], s[prefix + "count"])]
    for owner, piece in zip(s[prefix + "piece_owner"].tolist(), (pieces_from_state or _wkb_from_state)(s, prefix)):
        objs[owner].pieces.append(piece)
    for side in ("left", "right"):
        rows = np.split(s[prefix + side + "_rows"], np.cumsum(s[prefix + side + "_len"])[:-1]) if len(objs) else []
        for o, r in zip(objs, rows):
            if len(r):
                getattr(o, side).append(r)
    return objs


def _wkb_state(pieces: list, prefix: str) -> dict[str, np.ndarray]:
    wkb = [shapely.to_wkb(p) for p in pieces]
    return {prefix + "piece_wkb": np.frombuffer(b"".join(wkb), dtype=np.uint8),
            prefix + "piece_wkb_len": np.array([len(w) for w in wkb], dtype=np.int64)}


def _wkb_from_state(s: dict[str, np.ndarray], prefix: str) -> list:
    buf = s[prefix + "piece_wkb"].tobytes()
    ends = np.cumsum(s[prefix + "piece_wkb_len"])
    starts = ends - s[prefix + "piece_wkb_len"]
    return [shapely.from_wkb(buf[a:b]) for a, b in zip(starts.tolist(), ends.tolist())]


#: bytes of stored pieces :func:`merge_deferred` closes at once (one object may hold more)
MERGE_BATCH_BYTES = 16 << 20


def merge_deferred(deferred: list[list[OpenObject]], height: int, prompt_index: int,
                   load: Callable[[list], list] | None = None,
                   batch_bytes: int = MERGE_BATCH_BYTES) -> Iterator[ClosedObjects]:
    """Join objects that touch panel seams (``deferred[p]`` from panel ``p``) into whole objects.

    Two pieces on either side of a seam belong together when they occupy the same raster row
    on both sides (4-connectivity across the seam), exactly the rule used across strips.
    With ``load``, pieces are ``(offset, length)`` references (:class:`.seam_store.SeamStore`)
    that ``load`` turns into geometries; the joined objects come out in batches of about
    ``batch_bytes`` of stored pieces, so only one batch is ever in memory as geometries.
    """
    flat = [(p, o) for p, objs in enumerate(deferred) for o in objs]
    uf = _UnionFind()
    for i in range(len(flat)):
        uf.find(i)
    for seam in range(len(deferred) - 1):
        right = np.zeros(height, dtype=np.int64)
        left = np.zeros(height, dtype=np.int64)
        for i, (p, o) in enumerate(flat):
            if p == seam and o.right:
                right[np.concatenate(o.right)] = i + 1
            elif p == seam + 1 and o.left:
                left[np.concatenate(o.left)] = i + 1
        both = (right > 0) & (left > 0)
        for a, b in set(zip(right[both].tolist(), left[both].tolist())):
            uf.union(a - 1, b - 1)
    groups: dict[int, OpenObject] = {}
    for i, (_, o) in enumerate(flat):
        root = uf.find(i)
        if root not in groups:
            groups[root] = OpenObject([], 0.0, 0)
        groups[root].absorb(o)
    del flat
    closed, held = ClosedObjects(), 0
    for root in sorted(groups):
        obj = groups.pop(root)
        if load is not None:
            held += sum(n for _, n in obj.pieces)
            obj.pieces = load(obj.pieces)
        closed.add(prompt_index, obj)
        if held >= batch_bytes:
            yield closed
            closed, held = ClosedObjects(), 0
    if len(closed):
        yield closed


def to_crs_geometry(geoms: list, transform: Affine) -> np.ndarray:
    """Pixel-space geometries -> geometries in the raster CRS, in one vectorized pass."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    m = np.array([[a, d], [b, e]])
    off = np.array([c, f])
    return shapely.transform(np.asarray(geoms, dtype=object), lambda xy: xy @ m + off)
