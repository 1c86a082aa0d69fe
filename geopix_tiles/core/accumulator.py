"""Float32 strip accumulator for blended tile probabilities.

Only the rows that tiles of the current grid row can touch are held (one tile height of
the full width): the memory of a run is bounded by the tile size, never by the scene
height. Weights are accumulated beside the sums so nodata pixels (weight 0) and shifted
edge tiles (irregular overlap) are handled by the same division.
"""
from __future__ import annotations

import numpy as np


class StripAccumulator:
    def __init__(self, n_prompts: int, rows: int, width: int, y0: int = 0) -> None:
        self.rows = rows
        self.width = width
        self.y0 = y0  # raster row of buffer row 0
        self.sums = np.zeros((n_prompts, rows, width), dtype=np.float32)
        self.weights = np.zeros((rows, width), dtype=np.float32)

    def add(self, y: int, x: int, probs: np.ndarray, weights: np.ndarray,
            exclusive: tuple[int, int, int, int] | None = None) -> None:
        """Add ``probs [P, h, w]`` blended by ``weights [h, w]`` at raster position ``(y, x)``.

        ``exclusive`` (tile-local ``y0, y1, x0, x1``) is a region no other tile touches and
        where ``weights`` is 1: it is copied (0 + p * 1 == p exactly) and only the frame
        around it is multiplied and added. ``probs`` may be overwritten.
        """
        h, w = weights.shape
        r = y - self.y0
        if r < 0 or r + h > self.rows:
            raise RuntimeError(f"tile rows {y}..{y + h} fall outside the strip {self.y0}..{self.y0 + self.rows}")
        if exclusive is None or exclusive[0] >= exclusive[1] or exclusive[2] >= exclusive[3]:
            regions = [(0, h, 0, w)]
        else:
            ey0, ey1, ex0, ex1 = exclusive
            self.sums[:, r + ey0:r + ey1, x + ex0:x + ex1] = probs[:, ey0:ey1, ex0:ex1]
            self.weights[r + ey0:r + ey1, x + ex0:x + ex1] = 1.0
            regions = [(0, ey0, 0, w), (ey1, h, 0, w), (ey0, ey1, 0, ex0), (ey0, ey1, ex1, w)]
        for a, b, c, d in regions:
            if a >= b or c >= d:
                continue
            part = probs[:, a:b, c:d]
            np.multiply(part, weights[a:b, c:d], out=part)
            self.sums[:, r + a:r + b, x + c:x + d] += part
            self.weights[r + a:r + b, x + c:x + d] += weights[a:b, c:d]

    def flush(self, until: int) -> tuple[int, np.ndarray, np.ndarray]:
        """Finish rows ``[y0, until)``: ``(y0, probabilities [P, n, W], valid [n, W])``.

        The remaining rows move to the top of the buffer, which then starts at ``until``.
        """
        n = until - self.y0
        if not 0 <= n <= self.rows:
            raise RuntimeError(f"cannot flush to row {until} from a strip starting at {self.y0}")
        w = self.weights[:n]
        valid = w > 0
        if valid.all():
            probs = np.divide(self.sums[:, :n], w)
        else:
            probs = np.zeros((self.sums.shape[0], n, self.width), dtype=np.float32)
            np.divide(self.sums[:, :n], w, out=probs, where=valid)
        start = self.y0
        keep = self.rows - n
        if keep:  # keep < n (overlap < stride), so source and destination never overlap
            self.sums[:, :keep] = self.sums[:, n:]
            self.weights[:keep] = self.weights[n:]
        self.sums[:, keep:] = 0
        self.weights[keep:] = 0
        self.y0 = until
        return start, probs, valid
