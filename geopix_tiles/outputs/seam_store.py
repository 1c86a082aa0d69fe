"""Objects waiting at panel seams are kept on disk, not in memory, until the run's end joins them.

A scene wider than one panel is processed panel by panel; an object touching a seam can only be
closed once the panel beyond it is done, so until the end of the run. Held as geometries, they
made memory grow with the scene: four seams of 20,000 rows on a 20k scene, each with the objects
along it (and, on vegetation or road masks, networks spanning the panel), ~80 MB of WKB on the
NAIP mosaic (benchmarks/results/learned_cli.md). Here each piece's WKB is appended to one file in
the run's scratch folder and only what the join needs stays in memory: the rows an object touches
on either seam, its sums, and where its pieces lie in the file. The file is append-only, so a
checkpoint records its length and a resumed run truncates it there.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import shapely

from .vectorize import OpenObject, objects_from_state, objects_state


class SeamStore:
    """Deferred objects per (prompt, panel), their pieces as ``(offset, length)`` in ``path``."""

    def __init__(self, path: str | os.PathLike, n_prompts: int, n_panels: int) -> None:
        self.path = Path(path)
        self.objects: list[list[list[OpenObject]]] = [[[] for _ in range(n_panels)] for _ in range(n_prompts)]
        self.size = 0
        self._file = None
        self._read_fd: int | None = None

    def _writer(self):
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "r+b" if self.size else "wb")  # a fresh run starts the file empty
            self._file.seek(self.size)
            self._file.truncate()
        return self._file

    def add(self, prompt: int, panel: int, obj: OpenObject) -> None:
        """Keep ``obj`` (pieces as geometries) for the end of the run; its geometry goes to disk."""
        f = self._writer()
        refs = []
        for wkb in shapely.to_wkb(np.asarray(obj.pieces, dtype=object)).tolist():
            f.write(wkb)
            refs.append((self.size, len(wkb)))
            self.size += len(wkb)
        self.objects[prompt][panel].append(OpenObject(refs, obj.total, obj.count, obj.left, obj.right))

    def pieces(self, refs: list[tuple[int, int]]) -> list:
        """The geometries of stored pieces."""
        if self._file is not None:
            self._file.flush()
        if self._read_fd is None:
            self._read_fd = os.open(self.path, os.O_RDONLY)
        return list(shapely.from_wkb([os.pread(self._read_fd, n, off) for off, n in refs]))

    def commit(self) -> None:
        """Everything added so far is on disk (before a checkpoint records :meth:`state`)."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    # -- checkpoint state: plain arrays, never pickles ---------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        out = {"seams_size": np.array([self.size], dtype=np.int64)}
        for k, panels in enumerate(self.objects):
            for q, objs in enumerate(panels):
                if objs:
                    out.update(objects_state(objs, f"s{k}_{q}_", _refs_state))
        return out

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from :meth:`state`; bytes written after it (a crashed run's) are dropped."""
        self.size = int(state["seams_size"][0]) if "seams_size" in state else 0
        if self.size and (not self.path.exists() or self.path.stat().st_size < self.size):
            raise RuntimeError(f"{self.path} is shorter than its checkpoint says ({self.size} bytes)")
        for k, panels in enumerate(self.objects):
            for q in range(len(panels)):
                if f"s{k}_{q}_total" in state:
                    panels[q] = objects_from_state(state, f"s{k}_{q}_", _refs_from_state)
                elif f"d{k}_{q}_total" in state:  # a journal of the version that kept them in memory
                    for obj in objects_from_state(state, f"d{k}_{q}_"):
                        self.add(k, q, obj)

    def close(self) -> None:
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None
        if self._file is not None:
            self._file.close()
            self._file = None


def _refs_state(refs: list[tuple[int, int]], prefix: str) -> dict[str, np.ndarray]:
    arr = np.asarray(refs, dtype=np.int64).reshape(-1, 2)
    return {prefix + "piece_offset": arr[:, 0], prefix + "piece_length": arr[:, 1]}


def _refs_from_state(s: dict[str, np.ndarray], prefix: str) -> list[tuple[int, int]]:
    return list(zip(s[prefix + "piece_offset"].tolist(), s[prefix + "piece_length"].tolist()))
