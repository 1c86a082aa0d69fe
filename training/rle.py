"""COCO run-length encoding of binary masks, in numpy.

GeoPixInstruct (and every COCO-style release) stores instance masks as *compressed* RLE
strings. Implementing the codec here keeps the training stack free of pycocotools (a C
extension that often fails to build) while staying byte-compatible with it:

* runs are counted over the mask flattened in column-major (Fortran) order, starting with a
  run of zeros (possibly empty);
* each count is written as little-endian groups of 5 bits, 6 bits per character offset by
  48, bit 0x20 meaning "more groups follow" and bit 0x10 of the last group the sign;
* from the fourth count on (index > 2, a quirk of the reference C code), the count is
  stored as the difference to the count two positions earlier.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = [
    "counts_from_mask",
    "mask_from_counts",
    "counts_to_string",
    "counts_from_string",
    "encode",
    "decode",
    "area",
    "bbox",
]


def counts_from_mask(mask: np.ndarray) -> list[int]:
    """Uncompressed RLE counts of a 2-D mask (column-major, first run = zeros)."""
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    flat = (m.T.reshape(-1) != 0).astype(np.int8)
    if flat.size == 0:
        return []
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(edges).tolist()
    if flat[0] == 1:
        counts = [0] + counts
    return [int(c) for c in counts]


def mask_from_counts(counts: list[int] | np.ndarray, size: tuple[int, int] | list[int]) -> np.ndarray:
    """Decode uncompressed counts to a ``uint8`` mask of ``size = (h, w)``."""
    h, w = int(size[0]), int(size[1])
    c = np.asarray(counts, dtype=np.int64)
    if (c < 0).any():
        raise ValueError("RLE counts must be non-negative")
    if int(c.sum()) != h * w:
        raise ValueError(f"RLE counts sum to {int(c.sum())}, expected h*w = {h * w}")
    values = np.zeros(c.size, dtype=np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, c)
    return flat.reshape(w, h).T.copy()


def counts_to_string(counts: list[int]) -> str:
    """Compress counts into the COCO character string."""
    out: list[str] = []
    for i, cnt in enumerate(counts):
        x = int(cnt)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def counts_from_string(s: str) -> list[int]:
    """Inverse of :func:`counts_to_string`."""
    counts: list[int] = []
    p = 0
    n = len(s)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("truncated COCO RLE string")
            c = ord(s[p]) - 48
            if c < 0 or c > 63:
                raise ValueError(f"invalid character {s[p]!r} in COCO RLE string")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> dict[str, Any]:
    """Mask -> ``{"size": [h, w], "counts": str}`` (compressed, JSON-ready)."""
    m = np.asarray(mask)
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": counts_to_string(counts_from_mask(m))}


def decode(rle: Mapping[str, Any]) -> np.ndarray:
    """COCO RLE (compressed string, bytes, or uncompressed list) -> ``uint8`` mask."""
    try:
        size = rle["size"]
        counts = rle["counts"]
    except (KeyError, TypeError) as exc:
        raise ValueError("RLE must be a mapping with 'size' and 'counts'") from exc
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = counts_from_string(counts)
    return mask_from_counts(counts, size)


def area(rle: Mapping[str, Any]) -> int:
    """Foreground pixel count without materialising the mask."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = counts_from_string(counts)
    return int(sum(counts[1::2]))


def bbox(mask: np.ndarray) -> list[float]:
    """``[x1, y1, x2, y2]`` in pixels, exclusive max edge; zeros for an empty mask."""
    m = np.asarray(mask) != 0
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    if rows.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]
