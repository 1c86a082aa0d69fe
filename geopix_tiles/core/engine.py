"""The streaming executor: read -> tile -> predict -> blend -> write, as a pipeline.

Threads keep the device busy and the disk streaming at once:

* the *reader* reads each grid row's new raster rows once (block aligned, so every
  compressed block is decoded once), cuts tiles, scales them with the scene-wide
  statistics and queues batches (skipping all-nodata tiles);
* the *predictor* runs the segmenter on each batch (or, on a cluster, the batches arrive
  already predicted from dask workers: :mod:`geopix_tiles.scale.distributed`); a segmenter
  may ask for several model threads (``concurrent_calls``: the GeoPix model takes two on a
  multi-core CPU), whose batches are handed to the blender in reader order;
* the *blender* (a worker thread) blends results into the strip accumulator and flushes
  rows that no later tile can touch;
* the *raster* and *vector* sinks write flushed rows and vectorize them, and at checkpoints
  commit raster, vector parts and journal.

Wide scenes are processed in panels of columns, so every buffer is bounded by tile size x
batch x panel width, never by the scene. Bounded queues cap what is in flight. Processing
is in grid order and deterministic, so a run resumed from a checkpoint re-creates the
accumulator exactly (by re-running the last finished grid row) and produces the same
outputs as an uninterrupted run.
"""
from __future__ import annotations

import contextlib
import functools
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .accumulator import StripAccumulator
from .cores import vector_workers
from .heap import trim_heap, trim_heap_if_due
from .lib_pages import release_library_pages
from .journal import RunJournal
from ..outputs.raster_sink import RasterSink
from ..io.scene import RowBuffer, Scene, SceneReader
from ..segmenters.protocol import Segmenter, predictor_count, predictor_thread
from .tile_ops import blend_weights, cut_tiles, finish_tiles, predict, tile_is_empty
from .tiling import Panel, Tile, TileGrid
from ..outputs.vector_sink import VectorSink
from ..outputs.seam_store import SeamStore
from ..outputs.vectorize import StripVectorizer, merge_deferred

_END = object()
#: columns processed at once (buffers bounded by it); also the grid ``split_objects`` cuts at
PANEL_WIDTH = 4096


def panel_width_for(width: int, batch_size: int, tile: int, overlap: int) -> int:
    """``width``, widened so that one panel's row of tiles fills a model call of ``batch_size`` tiles.

    Batches never span grid rows (their composition depends only on the grid, see
    :func:`row_batches`), so 4096 px panels of 256 px tiles at stride 192 cut a GPU's batches
    of 64 down to 21-22 tiles per call: the model ran at its batch-21 rate, not its batch-64 one.
    A CPU's batch of 8 (1,600 px) keeps the 4096 px panel; a GPU's 64 get 12,352 px.
    """
    return max(int(width), int(batch_size) * (int(tile) - int(overlap)) + int(overlap))


@dataclass
class Batch:
    row: int
    tiles: list[Tile]
    pixels: np.ndarray  # float32 [B, C, h, w]; replaced by probabilities [B, P, h, w] after predict
    valid: np.ndarray | None  # bool [B, h, w] or None when all valid
    skipped: int = 0
    row_end: bool = False
    panel: int = 0
    #: (scaling, low, high) while ``pixels`` are still the source's narrower dtype (``row_batches(raw=True)``)
    scale: tuple | None = None

    def model_pixels(self) -> np.ndarray:
        """The batch's tiles as the segmenter takes them (scaled float32, zero where invalid)."""
        return self.pixels if self.scale is None else finish_tiles(self.pixels, self.valid, *self.scale)


@dataclass
class RunStats:
    tiles_total: int = 0
    tiles_done: int = 0
    tiles_skipped: int = 0
    features: int = 0
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


class _Stopped(RuntimeError):
    """A thread noticed that another one stopped the run: never the error to report if there is another."""


def _root_cause(errors) -> BaseException | None:
    """The first error that is not a consequence of another thread's stop, else the first error."""
    errors = [e for e in errors if e is not None]
    return next((e for e in errors if not isinstance(e, (_Stopped, threading.BrokenBarrierError))),
                errors[0] if errors else None)


class _Worker(threading.Thread):
    """A daemon thread whose exception is re-raised in the caller."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        name_os_thread(self.name)
        try:
            self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            self.error = exc


def name_os_thread(name: str) -> None:
    """Give the OS thread the pipeline stage's name (Linux; 15 characters), or do nothing.

    ``top -H``, ``ps -L`` and ``/proc/PID/task/*/comm`` then say which stage spends the CPU, and
    threads a stage starts (GDAL's decoding pool, OpenMP workers) inherit its name, so
    ``benchmarks/bench_thread_cpu.py`` can account for every thread of a run.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(15, ctypes.c_char_p(name.encode("ascii", "replace")[:15]), 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


class _Caller:
    """The calling thread seen as a worker by :func:`_get` (the model runs there, see ``run``)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.error: BaseException | None = None
        self.done = False

    def is_alive(self) -> bool:
        return not self.done


class _Predictors:
    """All model threads seen as one worker by :func:`_get`: alive while any is, failed if any did."""

    def __init__(self, members: list) -> None:
        self.members = members
        self.name = "geopix-predict"

    @property
    def error(self) -> BaseException | None:
        return next((m.error for m in self.members if m.error is not None), None)

    def is_alive(self) -> bool:
        return any(m.is_alive() for m in self.members)


class _Slot:
    """A batch taken by a model thread, queued for the blender in reader order before it is predicted.

    With several model threads, batches finish out of order; the blender waits on each slot
    in turn, so blending, flushing and checkpoints stay in grid order (and deterministic).
    """

    __slots__ = ("item", "error", "ready")

    def __init__(self, item) -> None:
        self.item = item
        self.error: BaseException | None = None
        self.ready = threading.Event()

    def wait(self, stop: threading.Event, source) -> object:
        while not self.ready.wait(0.1):
            if stop.is_set():
                raise source.error or _Stopped(f"{source.name} thread stopped unexpectedly")
            if not source.is_alive():
                # the model threads may fill this slot and exit between the timeout above and this
                # check: a slot that is ready by now is a finished batch, not a dead thread
                if self.ready.is_set():
                    break
                raise source.error or _Stopped(f"{source.name} thread stopped unexpectedly")
        if self.error is not None:
            raise self.error
        return self.item


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
            if worker.error is not None or stop.is_set():
                raise worker.error or _Stopped(f"{worker.name} thread stopped unexpectedly")
            if not worker.is_alive():  # it may have put its last item and exited after the timeout above
                try:
                    return q.get_nowait()
                except queue.Empty:
                    raise _Stopped(f"{worker.name} thread stopped unexpectedly") from None


def row_batches(data: np.ndarray, valid: np.ndarray | None, origin: tuple[int, int], grid: TileGrid, row: int,
                batch_size: int, scaling: str, low=None, high=None, cols: Sequence[int] | None = None, panel: int = 0,
                raw: bool = False):
    """Batches of grid row ``row`` cut from a window of rows (all-nodata tiles skipped).

    The batch composition depends only on the grid, so every path (local reader, dask
    workers) feeds the model identical batches and gets identical probabilities. ``raw``: tiles
    stay in the source's dtype until :meth:`Batch.model_pixels` (the engine's reader: its batches
    wait in queues).
    """
    tiles = grid.row_tiles(row) if cols is None else [grid.tile_at(row, c) for c in cols]
    pending: list[Tile] = []
    skipped = 0
    for i, t in enumerate(tiles):
        if tile_is_empty(valid, origin, t):
            skipped += 1
        else:
            pending.append(t)
        last = i == len(tiles) - 1
        if len(pending) == batch_size or (last and (pending or skipped)):
            pixels, vstack = cut_tiles(data, valid, origin, pending, scaling, low, high, raw=raw)
            scale = (scaling, low, high) if pixels.dtype != np.float32 else None
            yield Batch(row, pending, pixels, vstack, skipped, last, panel, scale)
            pending, skipped = [], 0


class StreamingRun:
    """One scene through one segmenter; see the module docstring.

    Wide scenes are processed in panels of ``panel_width`` columns (one after the other,
    each top to bottom), so buffers scale with the panel, not the scene; objects crossing
    panel seams wait on disk (:class:`SeamStore`) and are joined at the end (:func:`merge_deferred`).
    """

    def __init__(self, scene: Scene, segmenter: Segmenter, prompts: Sequence[str], grid: TileGrid, *,
                 batch_size: int = 8, vector_threshold: float = 0.5, raster: RasterSink | None = None,
                 vectors: VectorSink | None = None, journal: RunJournal | None = None,
                 fingerprint: dict | None = None, checkpoint_seconds: float = 10.0, prefetch: int = 2,
                 progress: Callable[[int], None] | None = None, skip_bad_tiles: bool = False,
                 remote=None, panel_width: int | None = PANEL_WIDTH, split_objects: bool = False) -> None:
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
        self.skip_bad_tiles = skip_bad_tiles
        self.remote = remote  # a distributed row source (see geopix_tiles.scale.distributed), or None
        self.bad_windows: list = []
        self.panels = grid.panels(panel_width)
        # cut objects at panel seams and every panel-width rows instead of joining them: no
        # object (and nothing held for it) outgrows one cell of that grid
        self.split_rows = (panel_width or PANEL_WIDTH) if split_objects else None
        self.stats = RunStats(tiles_total=sum(len(p.cols) for p in self.panels) * grid.n_rows)
        self.seams = (SeamStore(vectors.parts_dir / "seams.wkb", len(self.prompts), len(self.panels))
                      if vectors is not None else None)
        self.vectorizers = self._vectorizers(self.panels[0])
        self.start_panel = 0
        self.start_row = 0  # first grid row to compute (in start_panel)
        self.write_floor = 0  # raster rows of start_panel below this are already on disk

    def _vectorizers(self, panel: Panel) -> list[StripVectorizer]:
        split = self.split_rows is not None
        return [StripVectorizer(k, panel.x1 - panel.x0, self.scene.height, panel.x0,
                                left_open=panel.x0 > 0 and not split, right_open=panel.x1 < self.scene.width and not split,
                                cut_rows=self.split_rows,
                                on_deferred=None if self.seams is None else functools.partial(self.seams.add, k, panel.index))
                for k in range(len(self.prompts))]

    # -- resume ---------------------------------------------------------------------------
    def restore(self, data: dict) -> None:
        """Continue from a journal written by :meth:`_checkpoint`."""
        done_row = int(data["done_row"])
        self.start_panel = int(data.get("panel", 0))
        self.start_row = done_row
        self.write_floor = self.grid.final_row(done_row)
        self.stats.tiles_done = int(data["tiles_done"])
        self.stats.tiles_skipped = int(data["tiles_skipped"])
        if self.vectors is not None:
            self.vectors.drop_uncommitted(int(data["parts"]), int(data["features"]))
            state = self.journal.load_state()
            self.vectorizers = self._vectorizers(self.panels[self.start_panel])
            for k, v in enumerate(self.vectorizers):
                v.load_state({name[len(f"p{k}_"):]: arr for name, arr in state.items() if name.startswith(f"p{k}_")})
            self.seams.load_state(state)

    # -- threads --------------------------------------------------------------------------
    def _read(self, out: queue.Queue, stop: threading.Event) -> None:
        grid, scene = self.grid, self.scene
        th = grid.tile_height
        block = max(scene.block_height, 1)
        if block < 64:
            block *= -(-64 // block)
        scaling = getattr(self.segmenter, "scaling", "reflectance")
        with SceneReader(scene, skip_bad=self.skip_bad_tiles) as reader:
            for panel in self.panels[self.start_panel:]:
                rows = RowBuffer(reader, th, block, panel.xa, panel.xb)
                first = self.start_row if panel.index == self.start_panel else 0
                for r in range(first, grid.n_rows):
                    if stop.is_set():
                        return
                    y = grid.row_starts[r]
                    rows.ensure(y, y + th)
                    for batch in row_batches(rows.data, rows.valid, (rows.y0, panel.xa), grid, r, self._call_batch,
                                             scaling, scene.low, scene.high, panel.cols, panel.index, raw=True):
                        if not _put(out, batch, stop):
                            return
                del rows
            self.bad_windows = reader.bad_windows
        _put(out, _END, stop)

    def _predict(self, inbox: queue.Queue, out: queue.Queue, stop: threading.Event, reader: "_Worker",
                 take: threading.Lock, setup: contextlib.AbstractContextManager) -> None:
        """One model thread: take the next batch, queue its slot in reader order, predict, mark it ready."""
        with setup:
            while True:
                with take:  # taking a batch and queueing its slot is one step, so slots keep reader order
                    item = _get(inbox, stop, reader)
                    if item is _END:
                        inbox.put(_END)  # for the other model threads (the reader has finished)
                        if not self._end_queued:
                            self._end_queued = True
                            done = _Slot(_END)
                            done.ready.set()
                            _put(out, done, stop)
                        return
                    slot = _Slot(item)
                    if not _put(out, slot, stop):
                        return
                try:
                    if item.tiles:
                        item.pixels = predict(self.segmenter, item.model_pixels(), self.prompts)
                        item.scale = None
                except BaseException as exc:
                    slot.error = exc
                    raise
                finally:
                    slot.ready.set()

    def _remote_rows(self, out: queue.Queue, stop: threading.Event) -> None:
        for batch in self.remote.batches(self.panels, self.start_panel, self.start_row, self.grid.n_rows, stop):
            if not _put(out, batch, stop):
                return
        self.bad_windows = list(self.remote.bad_windows)
        _put(out, _END, stop)

    def _sink(self, inbox: queue.Queue, stop: threading.Event, kind: str) -> None:
        """Raster writer or vectorizer thread; both see every strip, in order.

        At a checkpoint the raster thread commits its file first, then both meet at a
        barrier, then the journal owner (the vectorizer when there is one) commits the vector
        parts and the journal, so the journal never runs ahead of what is on disk.
        """
        owner = kind == ("vector" if self.vectors is not None else "raster")
        current = self.start_panel
        # on hosts with cores to spare, strips are labelled and traced in worker processes (out of
        # this process's GIL) while this thread joins the previous strip's results, in order
        n_workers = vector_workers(len(self.prompts), self.scene.width * self.scene.height) if kind == "vector" else 0
        tracers = None
        if n_workers:
            from ..outputs.vector_workers import StripTracers

            tracers = StripTracers(n_workers)
        pending: list[tuple[list[StripVectorizer], list]] = []  # traced strips not yet joined (at most one)

        def join_pending() -> None:
            while pending:
                vecs, futures = pending.pop(0)
                for vec, future in zip(vecs, futures):
                    self.vectors.add(vec.join(future.result()))

        try:
            while True:
                try:
                    item = inbox.get(timeout=0.1)
                except queue.Empty:
                    if stop.is_set():
                        return
                    continue
                if item is _END:
                    if kind == "raster":
                        self.raster.flush()
                    else:
                        join_pending()
                    return
                what, payload = item
                if what == "rows":
                    panel, y0, probs, valid = payload
                    if owner:
                        trim_heap_if_due()  # between checkpoints too (core/heap.py)
                        release_library_pages("strip")  # the model has run: start-up pages go back (core/lib_pages.py)
                    if kind == "raster":
                        self.raster.write(y0, probs, valid, self.panels[panel].x0)
                        continue
                    if panel != current:
                        join_pending()
                        current = panel
                        self.vectorizers = self._vectorizers(self.panels[panel])
                    futures = []
                    for k, vec in enumerate(self.vectorizers):
                        fg = probs[k] >= self.vector_threshold
                        fg &= valid
                        if tracers is None:
                            self.vectors.add(vec.add(y0, fg, probs[k]))
                        else:
                            futures.append(tracers.submit(fg, probs[k][fg], vec.x0, y0))
                    if tracers is not None:
                        join_pending()  # the previous strip, traced while this one was sent
                        pending.append((list(self.vectorizers), futures))
                elif what == "checkpoint":
                    if kind == "raster":
                        self.raster.checkpoint()
                    else:
                        join_pending()  # the journal saves the vectorizers' state after every strip so far
                    self._barrier.wait()
                    if owner:
                        self._checkpoint(*payload)
        except BaseException:
            stop.set()
            self._barrier.abort()
            raise
        finally:
            if tracers is not None:
                tracers.close()

    def _checkpoint(self, panel: int, done_row: int) -> None:
        data = {"panel": panel, "done_row": done_row, "tiles_done": self._ck_tiles[(panel, done_row)][0],
                "tiles_skipped": self._ck_tiles[(panel, done_row)][1], "parts": 0, "features": 0}
        if self.vectors is not None:
            self.vectors.spill()
            self.seams.commit()
            state = self.seams.state()
            for k, v in enumerate(self.vectorizers):
                state.update({f"p{k}_{name}": arr for name, arr in v.state().items()})
            self.journal.save_state(state)
            data.update(parts=self.vectors.n_parts, features=self.vectors.n_features)
        self.journal.save(data, self.fingerprint)
        trim_heap()  # the buffers just flushed: give their free pages back (core/heap.py)
        release_library_pages("checkpoint")  # the vector output is open now: its start-up pages go back too

    # -- main loop ------------------------------------------------------------------------
    def run(self) -> RunStats:
        """Run the pipeline; the model runs in the calling thread (plus helpers), blending in a worker.

        The first model thread is the caller's: one two-thread OpenMP call driven from a
        secondary thread ran ~35 % slower on the 2-core machine (28 vs 38-47 tiles/s for the
        default model). Two model threads of one OpenMP thread each match the single call
        alone and beat it beside the engine's other threads (no per-operator barrier waits
        when a writer takes a core; ``benchmarks/results/learned_cli.md``).
        """
        t0 = time.perf_counter()
        stop = threading.Event()
        n_models = predictor_count(self.segmenter) if self.remote is None else 1
        # batch_size tiles in the model at once, shared by its threads: two threads of 8 tiles each
        # measured +110 MB peak RSS over one for no gain in speed over two of 4
        self._call_batch = -(-self.batch_size // n_models)
        batches: queue.Queue = queue.Queue(maxsize=self.prefetch)
        predicted: queue.Queue = queue.Queue(maxsize=self.prefetch + n_models)
        if self.remote is None:
            reader = _Worker(lambda: self._read(batches, stop), "geopix-reader")
        else:  # tiles are read and predicted on the cluster; results arrive in grid order
            reader = _Worker(lambda: self._remote_rows(predicted, stop), "geopix-remote")
        sinks: list[tuple[_Worker, queue.Queue]] = []
        for kind, present in (("raster", self.raster is not None), ("vector", self.vectors is not None)):
            if present:
                q: queue.Queue = queue.Queue(maxsize=1)
                sinks.append((_Worker(lambda q=q, kind=kind: self._sink(q, stop, kind), f"geopix-{kind}"), q))
        self._barrier = threading.Barrier(max(1, len(sinks)))
        self._ck_tiles: dict[tuple[int, int], tuple[int, int]] = {}
        caller = _Caller("geopix-predict")
        take = threading.Lock()
        self._end_queued = False
        setups = [predictor_thread(self.segmenter, n_models) for _ in range(n_models)]  # read here, applied there
        helpers = [_Worker(lambda setup=setup: self._predict(batches, predicted, stop, reader, take, setup),
                           f"geopix-predict-{k}") for k, setup in enumerate(setups[1:], start=1)]
        source = _Predictors([caller, *helpers])
        blender = _Worker(lambda: self._blend(predicted, stop, sinks, source if self.remote is None else reader),
                          "geopix-blend")
        reader.start()
        for w, _ in sinks:
            w.start()
        blender.start()
        for w in helpers:
            w.start()
        try:
            failed = None
            if self.remote is None:
                try:
                    self._predict(batches, predicted, stop, reader, take, setups[0])
                except BaseException as exc:  # noqa: BLE001 - re-raised once the blender has drained
                    caller.error = failed = exc
                finally:
                    caller.done = True
            # the blender finishes what was predicted before a failure (and checkpoints it), then stops
            while blender.is_alive():
                blender.join(timeout=0.1)
            if failed is not None:
                raise failed
            if blender.error is not None:
                raise blender.error
            for w in helpers:
                w.join()
                if w.error is not None:
                    raise w.error
            if reader.error is not None:
                raise reader.error
            for w, _ in sinks:
                w.join()
                if w.error:
                    raise w.error
        except BaseException as exc:
            stop.set()
            self._barrier.abort()
            reader.join(timeout=30)
            for w in helpers:
                w.join(timeout=60)
            blender.join(timeout=60)
            for w, _ in sinks:
                w.join(timeout=60)
            if self.seams is not None:
                self.seams.close()
            # the thread that failed first, not those that then noticed the stop (a worker process that
            # died in the vector thread, not "reader thread stopped" from the model thread)
            root = _root_cause([exc, *(w.error for w in (*helpers, reader, blender, *(w for w, _ in sinks)))])
            if root is None or root is exc:
                raise
            raise root
        reader.join()
        self.stats.extra["bad_windows"] = list(self.bad_windows)
        if self.vectors is not None:
            try:
                for k in range(len(self.prompts)):
                    for closed in merge_deferred(self.seams.objects[k], self.scene.height, k, self.seams.pieces):
                        self.vectors.add(closed)
                        self.vectors.spill()  # one batch of joined objects in memory at a time
            finally:
                self.seams.close()
            self.vectors.spill()
            self.stats.features = self.vectors.n_features
        trim_heap()  # before the outputs are closed and assembled: the model's free pages go back first
        self.stats.seconds = time.perf_counter() - t0
        return self.stats

    def _blend(self, predicted: queue.Queue, stop: threading.Event, sinks, source) -> None:
        """Accumulate predicted batches, flush finished rows to the sinks, schedule checkpoints."""
        grid = self.grid
        last_ck = time.monotonic()
        replay = (self.start_panel, self.start_row) if self.write_floor > 0 else None
        panel = None
        acc = None
        try:
            while True:
                item = _get(predicted, stop, source)
                if isinstance(item, _Slot):
                    item = item.wait(stop, source)
                if item is _END:
                    break
                if panel is None or item.panel != panel.index:
                    panel = self.panels[item.panel]
                    first = self.start_row if panel.index == self.start_panel else 0
                    acc = StripAccumulator(len(self.prompts), grid.tile_height, panel.xb - panel.xa,
                                           y0=grid.row_starts[first])
                if item.tiles:
                    probs = item.pixels
                    for i, t in enumerate(item.tiles):
                        if item.valid is None:
                            acc.add(t.y, t.x - panel.xa, probs[i], blend_weights(grid, t, None), grid.exclusive(t))
                        else:
                            acc.add(t.y, t.x - panel.xa, probs[i], blend_weights(grid, t, item.valid[i]))
                replaying = replay == (item.panel, item.row)
                if not replaying:
                    self.stats.tiles_done += len(item.tiles) + item.skipped
                    self.stats.tiles_skipped += item.skipped
                    self.progress(len(item.tiles) + item.skipped)
                if item.row_end:
                    y0, p, v = acc.flush(grid.final_row(item.row))
                    floor = self.write_floor if panel.index == self.start_panel else 0
                    if y0 >= floor:
                        a, b = panel.x0 - panel.xa, panel.x1 - panel.xa
                        self._broadcast(sinks, ("rows", (panel.index, y0, p[:, :, a:b], v[:, a:b])))
                    self._ck_tiles[(panel.index, item.row)] = (self.stats.tiles_done, self.stats.tiles_skipped)
                    last_row = item.row == grid.n_rows - 1
                    if (self.journal is not None and not last_row and not replaying
                            and time.monotonic() - last_ck >= self.checkpoint_seconds):
                        self._broadcast(sinks, ("checkpoint", (panel.index, item.row)))
                        last_ck = time.monotonic()
            self._broadcast(sinks, _END)
        except BaseException:
            stop.set()
            raise

    @classmethod
    def _broadcast(cls, sinks, item) -> None:
        for worker, q in sinks:
            cls._send(q, item, worker)

    @staticmethod
    def _send(q: queue.Queue, item, writer: _Worker) -> None:
        while True:
            if writer.error is not None:
                raise writer.error
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if not writer.is_alive():
                    raise writer.error or _Stopped("writer thread stopped unexpectedly")
