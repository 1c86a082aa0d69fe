"""The streaming executor: read -> tile -> predict -> blend -> write, as a pipeline.

Three threads keep the device busy and the disk streaming at once:

* the *reader* reads each grid row's new raster rows once (full-width, block aligned, so
  every compressed block is decoded once), cuts tiles, scales them with the scene-wide
  statistics and queues batches (skipping all-nodata tiles);
* the caller's thread runs the segmenter on each batch and blends the result into the strip
  accumulator, flushing rows that no later tile can touch;
* the *writer* writes flushed rows to the raster, vectorizes them and, at checkpoints,
  commits raster, vector parts and journal.

Bounded queues between them cap memory at a few batches plus one strip. Rows are processed
in grid order and the computation is deterministic, so a run resumed from a checkpoint
re-creates the accumulator exactly (by re-running the last finished grid row) and produces
the same outputs as an uninterrupted run.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .accumulator import StripAccumulator
from .journal import RunJournal
from .raster_sink import RasterSink
from .scene import Scene, SceneReader
from .segmenter import Segmenter
from .tile_ops import blend_weights, cut_tiles, predict, tile_is_empty
from .tiling import Tile, TileGrid
from .vector_sink import VectorSink
from .vectorize import StripVectorizer

_END = object()


@dataclass
class Batch:
    row: int
    tiles: list[Tile]
    pixels: np.ndarray  # float32 [B, C, h, w]
    valid: np.ndarray | None  # bool [B, h, w] or None when all valid
    skipped: int = 0
    row_end: bool = False


@dataclass
class RunStats:
    tiles_total: int = 0
    tiles_done: int = 0
    tiles_skipped: int = 0
    features: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class _Worker(threading.Thread):
    """A daemon thread whose exception is re-raised in the caller."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event, worker: _Worker):
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if worker.error is not None or stop.is_set() or not worker.is_alive():
                raise worker.error or RuntimeError(f"{worker.name} thread stopped unexpectedly")


class StreamingRun:
    """One scene through one segmenter; see the module docstring."""

    def __init__(self, scene: Scene, segmenter: Segmenter, prompts: Sequence[str], grid: TileGrid, *,
                 batch_size: int = 8, vector_threshold: float = 0.5, raster: RasterSink | None = None,
                 vectors: VectorSink | None = None, journal: RunJournal | None = None,
                 fingerprint: dict | None = None, checkpoint_seconds: float = 10.0, prefetch: int = 2,
                 progress: Callable[[int], None] | None = None) -> None:
        self.scene = scene
        self.segmenter = segmenter
        self.prompts = list(prompts)
        self.grid = grid
        self.batch_size = max(1, int(batch_size))
        self.vector_threshold = vector_threshold
        self.raster = raster
        self.vectors = vectors
        self.journal = journal
        self.fingerprint = fingerprint or {}
        self.checkpoint_seconds = checkpoint_seconds
        self.prefetch = max(1, prefetch)
        self.progress = progress or (lambda n: None)
        self.stats = RunStats(tiles_total=len(grid))
        self.vectorizers = [StripVectorizer(k, scene.width, scene.height) for k in range(len(self.prompts))]
        self.start_row = 0  # first grid row to compute
        self.write_floor = 0  # raster rows below this are already on disk

    # -- resume ---------------------------------------------------------------------------
    def restore(self, data: dict) -> None:
        """Continue from a journal written by :meth:`_checkpoint`."""
        done_row = int(data["done_row"])
        self.start_row = done_row
        self.write_floor = self.grid.final_row(done_row)
        self.stats.tiles_done = int(data["tiles_done"])
        self.stats.tiles_skipped = int(data["tiles_skipped"])
        if self.vectors is not None:
            self.vectors.drop_uncommitted(int(data["parts"]), int(data["features"]))
            state = self.journal.load_state()
            for k, v in enumerate(self.vectorizers):
                v.load_state({name[len(f"p{k}_"):]: arr for name, arr in state.items() if name.startswith(f"p{k}_")})

    # -- threads --------------------------------------------------------------------------
    def _read(self, out: queue.Queue, stop: threading.Event) -> None:
        grid, scene = self.grid, self.scene
        th, tw = grid.tile_height, grid.tile_width
        block = max(scene.block_height, 1)
        if block < 64:
            block *= -(-64 // block)
        scaling = getattr(self.segmenter, "scaling", "reflectance")
        buf: np.ndarray | None = None
        vbuf: np.ndarray | None = None
        buf_y0 = buf_y1 = 0
        with SceneReader(scene) as reader:
            for r in range(self.start_row, grid.n_rows):
                y = grid.row_starts[r]
                need = y + th
                # keep rows >= y, read the missing ones in block-aligned chunks
                if buf is None or y >= buf_y1:
                    buf_y0 = buf_y1 = y
                    buf, vbuf = None, None
                else:
                    buf = buf[:, y - buf_y0:]
                    vbuf = None if vbuf is None else vbuf[y - buf_y0:]
                    buf_y0 = y
                chunks, vchunks = ([buf] if buf is not None else []), ([vbuf] if vbuf is not None else [])
                while buf_y1 < need:
                    end = min(scene.height, max(need, (buf_y1 // block + 1) * block))
                    data, valid = reader.read_rows(buf_y1, end)
                    chunks.append(data)
                    if scene.has_mask:
                        vchunks.append(valid if valid is not None else np.ones(data.shape[1:], bool))
                    buf_y1 = end
                    if stop.is_set():
                        return
                buf = np.concatenate(chunks, axis=1) if len(chunks) > 1 else chunks[0]
                vbuf = (np.concatenate(vchunks, axis=0) if len(vchunks) > 1 else vchunks[0]) if scene.has_mask else None
                tiles = grid.row_tiles(r)
                pending: list[Tile] = []
                skipped = 0
                for i, t in enumerate(tiles):
                    if tile_is_empty(vbuf, (buf_y0, 0), t):
                        skipped += 1
                    else:
                        pending.append(t)
                    last = i == len(tiles) - 1
                    if len(pending) == self.batch_size or (last and (pending or skipped)):
                        pixels, valid = cut_tiles(buf, vbuf, (buf_y0, 0), pending, scaling, scene.low, scene.high)
                        if not _put(out, Batch(r, pending, pixels, valid, skipped, last), stop):
                            return
                        pending, skipped = [], 0
        _put(out, _END, stop)

    def _write(self, inbox: queue.Queue, stop: threading.Event) -> None:
        while True:
            try:
                item = inbox.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return
                continue
            if item is _END:
                return
            kind, payload = item
            if kind == "rows":
                y0, probs, valid = payload
                if self.vectors is not None:
                    for k, vec in enumerate(self.vectorizers):
                        fg = probs[k] >= self.vector_threshold
                        fg &= valid
                        self.vectors.add(vec.add(y0, fg, probs[k]))
                if self.raster is not None:
                    self.raster.write(y0, probs, valid)  # may scale probs in place: keep it last
            elif kind == "checkpoint":
                self._checkpoint(payload)

    def _checkpoint(self, done_row: int) -> None:
        if self.journal is None:
            return
        if self.raster is not None:
            self.raster.checkpoint()
        data = {"done_row": done_row, "tiles_done": self._ck_tiles[done_row][0],
                "tiles_skipped": self._ck_tiles[done_row][1], "parts": 0, "features": 0}
        if self.vectors is not None:
            self.vectors.spill()
            state = {}
            for k, v in enumerate(self.vectorizers):
                state.update({f"p{k}_{name}": arr for name, arr in v.state().items()})
            self.journal.save_state(state)
            data.update(parts=self.vectors.n_parts, features=self.vectors.n_features)
        self.journal.save(data, self.fingerprint)

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> RunStats:
        t0 = time.perf_counter()
        grid, scene = self.grid, self.scene
        acc = StripAccumulator(len(self.prompts), grid.tile_height, scene.width, y0=grid.row_starts[self.start_row])
        stop = threading.Event()
        batches: queue.Queue = queue.Queue(maxsize=self.prefetch)
        rows: queue.Queue = queue.Queue(maxsize=2)
        reader = _Worker(lambda: self._read(batches, stop), "geopix-reader")
        writer = _Worker(lambda: self._write(rows, stop), "geopix-writer")
        self._ck_tiles: dict[int, tuple[int, int]] = {}
        reader.start()
        writer.start()
        last_ck = time.monotonic()
        replay_row = self.start_row if self.write_floor > 0 else -1
        try:
            while True:
                item = _get(batches, stop, reader)
                if item is _END:
                    break
                if item.tiles:
                    probs = predict(self.segmenter, item.pixels, self.prompts)
                    for i, t in enumerate(item.tiles):
                        acc.add(t.y, t.x, probs[i], blend_weights(grid, t, None if item.valid is None else item.valid[i]))
                if item.row != replay_row:
                    self.stats.tiles_done += len(item.tiles) + item.skipped
                    self.stats.tiles_skipped += item.skipped
                    self.progress(len(item.tiles) + item.skipped)
                if item.row_end:
                    y0, p, v = acc.flush(grid.final_row(item.row))
                    if y0 >= self.write_floor:
                        self._send(rows, ("rows", (y0, p, v)), stop, writer)
                    self._ck_tiles[item.row] = (self.stats.tiles_done, self.stats.tiles_skipped)
                    last_row = item.row == grid.n_rows - 1
                    if (self.journal is not None and not last_row and item.row != replay_row
                            and time.monotonic() - last_ck >= self.checkpoint_seconds):
                        self._send(rows, ("checkpoint", item.row), stop, writer)
                        last_ck = time.monotonic()
            self._send(rows, _END, stop, writer)
            writer.join()
            if writer.error:
                raise writer.error
        except BaseException:
            stop.set()
            reader.join(timeout=30)
            writer.join(timeout=60)
            if writer.error is not None and not isinstance(writer.error, (KeyboardInterrupt, SystemExit)):
                raise writer.error
            raise
        reader.join()
        if self.vectors is not None:
            self.vectors.spill()
            self.stats.features = self.vectors.n_features
        self.stats.seconds = time.perf_counter() - t0
        return self.stats

    @staticmethod
    def _send(q: queue.Queue, item, stop: threading.Event, writer: _Worker) -> None:
        while True:
            if writer.error is not None:
                raise writer.error
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if not writer.is_alive():
                    raise writer.error or RuntimeError("writer thread stopped unexpectedly")
