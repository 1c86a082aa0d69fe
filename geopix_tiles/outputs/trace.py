"""Pixel-edge polygons of a label image, traced in vectorized numpy.

GDAL's polygonizer (``rasterio.features.shapes``) scans every pixel of the window it is given
at ~15-40 ns each, holding the GIL while rasterio turns its rings into GeoJSON lists; on a
2-core machine that was the largest cost of a GeoPackage output beside the model. Here the
boundary is found with whole-array comparisons (a few ns per pixel), and only the boundary
edges (a small fraction of the pixels) are chained into rings, so the per-pixel work is
numpy's and the GIL is mostly free for the threads that read, predict and write.

The polygons are the ones GDAL draws with 4-connectivity: rings run along pixel edges, each
label (one 4-connected component) is one polygon whose shell and holes are the closed edge
chains with that label on one side. Where a label touches itself only at a corner (two of
its pixels diagonal across a vertex, joined elsewhere) the chain turns so the ring does not
cross itself there, which keeps every polygon valid (a hole may touch its shell at a point).

:func:`burn_pieces` is the inverse on the same grid (polygons back to pixels), which lets the
vectorizer join the pieces of an object cut by strip and panel seams by filling and tracing
them once instead of a GEOS union.
"""
from __future__ import annotations

import numpy as np
import shapely

__all__ = ["burn_pieces", "trace_labels"]

# Directions, numbered in the order a right turn follows on a north-up grid (x east, y south):
# 0 east, 1 south, 2 west, 3 north. The object is kept on the right of the direction of travel.


def _runs(k: np.ndarray, lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of consecutive boundary positions with one label: (first, last, label) of each.

    Along a run the label holds the pixels on one side and not the other, so no other edge of
    that label meets its inner vertices: the run is one straight edge of the ring.
    """
    on = lab > 0
    k, lab = k[on], lab[on]
    if not len(k):
        return k, k, lab
    new = np.ones(len(k), dtype=bool)
    new[1:] = (k[1:] != k[:-1] + 1) | (lab[1:] != lab[:-1])
    first = np.flatnonzero(new)
    last = np.r_[first[1:], len(k)] - 1
    return k[first], k[last], lab[first]


def _edges(labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Directed boundary edges: start (x, y), end (x, y), direction, label on their right.

    The label image is padded with a zero frame and flattened; a horizontal boundary is where
    an element differs from the one a row later, a vertical one where it differs from the next
    element (one shifted comparison each). Runs of such unit edges with one label become single
    edges, so the chaining below works on corners and straight runs, not on every pixel edge.
    """
    h, w = labels.shape
    p = np.zeros((h + 2, w + 2), dtype=labels.dtype)
    p[1:-1, 1:-1] = labels
    out = []
    row = w + 2  # stride of a padded row in row-major order
    f = p.ravel()
    k = np.flatnonzero(f[:-row] != f[row:])  # between f[k] (above) and f[k + row] (below): edge at y = k // row
    # object below: east along its top; object above: west along its bottom
    for side, d in ((f[k + row], 0), (f[k], 2)):
        a, b, lab = _runs(k, side)
        y, x0 = np.divmod(a, row)
        x1 = b % row
        sx, ex = (x0 - 1, x1) if d == 0 else (x1, x0 - 1)
        out.append((sx, y, ex, y, d, lab))
    # vertical edges: found in row-major order (between f[k] west and f[k + 1] east), then only
    # those positions are renumbered column-major (x * (h + 2) + y) and sorted, so runs down a
    # column are consecutive without transposing the whole image
    k = np.flatnonzero(f[:-1] != f[1:])
    west, east = f[k], f[k + 1]
    y, x = np.divmod(k, row)
    col = h + 2  # stride of a padded column in column-major order
    k = x * col + y  # the edge at x between p[y, x] and p[y, x + 1]
    order = np.argsort(k)
    k, west, east = k[order], west[order], east[order]
    # object west: south along its east side; object east: north along its west side
    for side, d in ((west, 1), (east, 3)):
        a, b, lab = _runs(k, side)
        x, y0 = np.divmod(a, col)
        y1 = b % col
        sy, ey = (y0 - 1, y1) if d == 1 else (y1, y0 - 1)
        out.append((x, sy, x, ey, d, lab))
    cols = list(zip(*out))
    sx, sy, ex, ey = (np.concatenate(c).astype(np.int64) for c in cols[:4])
    d = np.concatenate([np.full(len(l), dd, np.int8) for dd, l in zip(cols[4], cols[5])])
    lab = np.concatenate(cols[5]).astype(np.int64)
    return sx, sy, ex, ey, d, lab


def _key(lab: np.ndarray, x: np.ndarray, y: np.ndarray, w: int) -> np.ndarray:
    """Sort key of an edge: its label, then its start vertex (row-major over w + 1 columns)."""
    return (lab << 40) | (y * (w + 1) + x)


def _successors(x: np.ndarray, y: np.ndarray, ex: np.ndarray, ey: np.ndarray, d: np.ndarray,
                lab: np.ndarray, w: int) -> np.ndarray:
    """Index of the edge that continues each edge's ring (edges sorted by label, start vertex)."""
    start = _key(lab, x, y, w)
    end = _key(lab, ex, ey, w)
    nxt = np.searchsorted(start, end)
    # a vertex where the label holds two diagonal pixels has two edges leaving it: take the
    # left turn, which follows the label across the corner instead of closing a ring there
    two = np.flatnonzero(nxt + 1 < len(start))
    two = two[start[nxt[two] + 1] == end[two]]
    if len(two):
        left = (d[two].astype(np.int64) + 3) % 4
        nxt[two] = np.where(d[nxt[two]] == left, nxt[two], nxt[two] + 1)
    return nxt


def _ring_order(nxt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ring id (its smallest edge index) and position along the ring for every edge."""
    n = len(nxt)
    head = np.arange(n)
    jump = nxt.copy()
    while True:  # pointer doubling: after k rounds, head = min over the next 2^k edges
        new = np.minimum(head, head[jump])
        if np.array_equal(new, head):  # unchanged only once 2^k covers every ring
            break
        head, jump = new, jump[jump]
    # rank: distance from each edge to the last edge of its ring (the one whose successor is the head)
    succ = np.where(nxt == head, -1, nxt)
    dist = (succ >= 0).astype(np.int64)
    live = np.flatnonzero(succ >= 0)
    while len(live):
        s = succ[live]
        dist[live] += dist[s]
        succ[live] = succ[s]
        live = live[succ[live] >= 0]
    return head, dist


def trace_labels(labels: np.ndarray, x0: float = 0.0, y0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Polygons of every non-zero label of ``labels`` (each label one 4-connected component).

    Returns ``(values, polygons)``: the label values in increasing order and one shapely
    Polygon each, in pixel coordinates shifted by ``(x0, y0)`` (pixel ``[r, c]`` covers
    ``x0 + c .. x0 + c + 1``, ``y0 + r .. y0 + r + 1``), as ``rasterio.features.shapes`` with
    ``connectivity=4`` and ``Affine.translation(x0, y0)`` would give them. A label in parts
    apart from each other raises ``ValueError`` (it would need a multipolygon); parts meeting
    only at a corner are not caught, so label with ``ndimage.label``'s default structure.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D, got shape {labels.shape}")
    x, y, ex, ey, d, lab = _edges(labels)
    if not len(x):
        return np.zeros(0, np.int64), np.zeros(0, dtype=object)
    w = labels.shape[1]
    order = np.argsort(_key(lab, x, y, w), kind="stable")
    x, y, ex, ey, d, lab = x[order], y[order], ex[order], ey[order], d[order], lab[order]
    nxt = _successors(x, y, ex, ey, d, lab, w)
    head, dist = _ring_order(nxt)
    order = np.lexsort((-dist, head))  # rings one after another, each from its head along the chain
    x, y, d, lab, head = x[order], y[order], d[order], lab[order], head[order]
    first = np.r_[True, head[1:] != head[:-1]]
    starts = np.flatnonzero(first)
    ends = np.r_[starts[1:], len(head)]
    prev_d = np.roll(d, 1)
    prev_d[starts] = d[ends - 1]
    corner = d != prev_d  # a vertex where the chain turns; collinear ones are dropped
    cx, cy, cring = x[corner], y[corner], np.cumsum(first)[corner] - 1
    n_rings = len(starts)
    counts = np.bincount(cring, minlength=n_rings)
    cstart = np.r_[0, np.cumsum(counts)[:-1]]
    # shoelace over each ring (closing pair included) -> shells > 0, holes < 0
    nx = np.roll(cx, -1)
    ny = np.roll(cy, -1)
    last = cstart + counts - 1
    nx[last], ny[last] = cx[cstart], cy[cstart]
    area2 = np.bincount(cring, weights=(cx * ny - nx * cy).astype(np.float64), minlength=n_rings)
    ring_lab = lab[starts]
    hole = area2 < 0
    values, per_label = np.unique(ring_lab, return_counts=True)
    shells = np.unique(ring_lab[~hole], return_counts=True)[1]
    if len(shells) != len(values) or (shells != 1).any():
        raise ValueError("every label must be one 4-connected component (ndimage.label's default structure)")
    ring_sort = np.lexsort((hole, ring_lab))  # per label: its shell, then its holes
    # closed coordinate sequences, rings in ring_sort order
    sizes = counts[ring_sort] + 1
    idx = np.repeat(cstart[ring_sort] - np.r_[0, np.cumsum(sizes)[:-1]], sizes) + np.arange(sizes.sum())
    closing = np.cumsum(sizes) - 1
    idx[closing] = cstart[ring_sort]
    coords = np.column_stack([cx[idx] + x0, cy[idx] + y0]).astype(np.float64)
    ring_offsets = np.r_[0, np.cumsum(sizes)]
    geom_offsets = np.r_[0, np.cumsum(per_label)]
    polys = shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords, (ring_offsets, geom_offsets))
    return values, polys


def burn_pieces(pieces, x0: int, y0: int, height: int, width: int) -> np.ndarray:
    """The pixels covered by pixel-aligned polygons (even-odd rule), as a ``uint8`` 0/1 image.

    Every ring edge of a traced polygon runs along pixel edges, so a scanline fill needs no
    geometry at all: each vertical edge toggles the rows it spans from its column on, and an
    XOR along the rows gives the inside. ``(x0, y0)`` is the image's top-left vertex.
    """
    coords, (ring_offsets, _) = shapely.to_ragged_array(pieces)[1:]
    xy = np.rint(coords).astype(np.int64) - (x0, y0)
    last = np.zeros(len(xy), dtype=bool)
    last[ring_offsets[1:] - 1] = True  # a ring's closing vertex starts no edge
    a = np.flatnonzero(~last)
    a = a[(xy[a, 0] == xy[a + 1, 0]) & (xy[a, 1] != xy[a + 1, 1])]
    top = np.minimum(xy[a, 1], xy[a + 1, 1])
    span = np.abs(xy[a + 1, 1] - xy[a, 1])
    rows = np.repeat(top - np.r_[0, np.cumsum(span)[:-1]], span) + np.arange(span.sum())
    cols = np.repeat(xy[a, 0], span)
    toggles = np.zeros(height * (width + 1), dtype=np.uint8)
    np.bitwise_xor.at(toggles, rows * (width + 1) + cols, 1)  # edges shared by two pieces cancel
    return np.bitwise_xor.accumulate(toggles.reshape(height, width + 1), axis=1)[:, :width]
