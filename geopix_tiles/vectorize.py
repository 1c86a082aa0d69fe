"""Streaming vectorization: masks arrive as row strips, objects leave as whole polygons.

Each strip is labelled (4-connectivity, like ``rasterio.features.shapes``) and traced with
``shapes(mask=...)``; a label touching the strip's last row stays *open* and is joined, by
union-find over the pixel columns it shares with the next strip's first row, to the pieces
that continue it. An object crossing any number of seams therefore comes out as ONE polygon,
and nothing but the open pieces and one row of ids per prompt is ever held. Geometry is
built in integer pixel coordinates, where pieces share exact edges and union cleanly, and
moved to the CRS once, when the object closes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage


@dataclass
class OpenObject:
    """Pieces of one object still touching the strip frontier (pixel coordinates)."""

    pieces: list
    total: float
    count: int


@dataclass
class ClosedObjects:
    """Objects finished in one call: pixel-space polygons and their probability sums."""

    prompt_index: list[int] = field(default_factory=list)
    geometry: list = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    count: list[int] = field(default_factory=list)

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


class StripVectorizer:
    """Turns consecutive full-width strips of one prompt's mask into closed objects."""

    def __init__(self, prompt_index: int, width: int, height: int) -> None:
        self.prompt_index = prompt_index
        self.width = width
        self.height = height
        self.next_id = 1
        self.open: dict[int, OpenObject] = {}
        self.frontier = np.zeros(width, dtype=np.int64)  # object id per column of the last row seen
        self.row = 0  # raster row the next strip starts at

    def add(self, y0: int, foreground: np.ndarray, probs: np.ndarray) -> ClosedObjects:
        """Consume rows ``[y0, y0 + n)``; return the objects that can no longer grow."""
        if y0 != self.row:
            raise RuntimeError(f"strip starts at row {y0}, expected {self.row}")
        n = foreground.shape[0]
        self.row = y0 + n
        last = self.row >= self.height
        labels = np.empty(foreground.shape, dtype=np.int32)
        nlab = ndimage.label(foreground, output=labels)
        new: dict[int, OpenObject] = {}
        ids = np.zeros(nlab + 1, dtype=np.int64)
        if nlab:
            on = np.flatnonzero(foreground)  # sums over foreground pixels only
            flat = labels.ravel()[on]
            totals = np.bincount(flat, weights=probs.ravel()[on], minlength=nlab + 1)[1:]
            counts = np.bincount(flat, minlength=nlab + 1)[1:]
            ids[1:] = np.arange(self.next_id, self.next_id + nlab)
            self.next_id += nlab
            # trace only the columns that hold foreground: sparse masks cost little
            cols = np.flatnonzero(foreground.any(axis=0))
            c0, c1 = int(cols[0]), int(cols[-1]) + 1
            sub = labels[:, c0:c1]
            for geom, value in shapes(sub, mask=foreground[:, c0:c1], connectivity=4,
                                      transform=Affine.translation(c0, y0)):
                k = int(value)
                poly = shapely.geometry.shape(geom)
                obj = new.get(int(ids[k]))
                if obj is None:
                    new[int(ids[k])] = OpenObject([poly], float(totals[k - 1]), int(counts[k - 1]))
                else:  # defensive: a label traced in several rings
                    obj.pieces.append(poly)
        uf = _UnionFind()
        if nlab:
            first = ids[labels[0]]
            both = (self.frontier > 0) & (first > 0)
            for a, b in set(zip(self.frontier[both].tolist(), first[both].tolist())):
                uf.union(a, b)
        everything = {**self.open, **new}
        groups: dict[int, list[int]] = {}
        for oid in everything:
            groups.setdefault(uf.find(oid), []).append(oid)
        bottom = set() if (last or not nlab) else set(np.unique(ids[labels[-1]]).tolist()) - {0}
        closed = ClosedObjects()
        still_open: dict[int, OpenObject] = {}
        remap: dict[int, int] = {}
        for root, members in groups.items():
            pieces: list = []
            total, count = 0.0, 0
            for m in members:
                o = everything[m]
                pieces += o.pieces
                total += o.total
                count += o.count
            if bottom.intersection(members):
                still_open[root] = OpenObject(pieces, total, count)
                for m in members:
                    remap[m] = root
            else:
                geom = pieces[0] if len(pieces) == 1 else shapely.union_all(pieces)
                closed.prompt_index.append(self.prompt_index)
                closed.geometry.append(geom)
                closed.total.append(total)
                closed.count.append(count)
        self.open = still_open
        if nlab and not last:
            row_ids = ids[labels[-1]]
            self.frontier = np.array([remap.get(int(i), 0) for i in row_ids.tolist()], dtype=np.int64) \
                if remap else np.zeros(self.width, dtype=np.int64)
        else:
            self.frontier = np.zeros(self.width, dtype=np.int64)
        return closed

    # -- checkpoint state: plain arrays, never pickles -------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        oids = sorted(self.open)
        owner = [i for i, o in enumerate(oids) for _ in self.open[o].pieces]
        wkb = [shapely.to_wkb(p) for o in oids for p in self.open[o].pieces]
        return {
            "next_id": np.array([self.next_id, self.row], dtype=np.int64),
            "frontier": self.frontier,
            "open_ids": np.array(oids, dtype=np.int64),
            "open_total": np.array([self.open[o].total for o in oids], dtype=np.float64),
            "open_count": np.array([self.open[o].count for o in oids], dtype=np.int64),
            "piece_owner": np.array(owner, dtype=np.int64),
            "piece_wkb": np.frombuffer(b"".join(wkb), dtype=np.uint8),
            "piece_wkb_len": np.array([len(w) for w in wkb], dtype=np.int64),
        }

    def load_state(self, s: dict[str, np.ndarray]) -> None:
        self.next_id, self.row = (int(v) for v in s["next_id"])
        self.frontier = s["frontier"].astype(np.int64)
        buf = s["piece_wkb"].tobytes()
        ends = np.cumsum(s["piece_wkb_len"])
        starts = ends - s["piece_wkb_len"]
        pieces: dict[int, list] = {}
        for owner, a, b in zip(s["piece_owner"].tolist(), starts.tolist(), ends.tolist()):
            pieces.setdefault(owner, []).append(shapely.from_wkb(buf[a:b]))
        self.open = {
            int(o): OpenObject(pieces.get(i, []), float(t), int(c))
            for i, (o, t, c) in enumerate(zip(s["open_ids"], s["open_total"], s["open_count"]))
        }


def to_crs_geometry(geoms: list, transform: Affine) -> np.ndarray:
    """Pixel-space geometries -> geometries in the raster CRS, in one vectorized pass."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    m = np.array([[a, d], [b, e]])
    off = np.array([c, f])
    return shapely.transform(np.asarray(geoms, dtype=object), lambda xy: xy @ m + off)
