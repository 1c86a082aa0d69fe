"""Running the engine on a dask.distributed cluster.

Workers read and predict whole grid rows (each worker loads the model once, per process,
and keeps it); the results come back to the caller in grid order and go through the same
blending, writing, vectorizing and journalling as a local run, so the outputs are identical
to a single-process run. A worker that dies loses only its in-flight rows, which the
scheduler recomputes elsewhere.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from ..core.engine import Batch, row_batches
from ..io.gdal_cache import DEFAULT_BLOCK_CACHE_MB, block_cache
from ..io.scene import RowBuffer, Scene, SceneReader
from ..core.tiling import TileGrid

_local = threading.local()


@dataclass(frozen=True, eq=False)
class RowJob:
    """Everything a worker needs to predict rows of one scene (pickled once per task).

    The scene itself (immutable, with its chosen bands and statistics) travels, not a copy of
    some of its fields, so workers read exactly what the caller validated.
    """

    scene: Scene
    tile: int
    overlap: int
    scaling: str
    model: Any
    device: str
    prompts: tuple[str, ...]
    batch_size: int
    skip_bad: bool
    gdal_cache_mb: float = DEFAULT_BLOCK_CACHE_MB  # GDAL's block cache in each worker, as in the main process


def _reader(job: RowJob) -> SceneReader:
    """One dataset handle per worker thread and scene, reused across tasks."""
    cache = getattr(_local, "readers", None)
    if cache is None:
        cache = _local.readers = {}
    key = (job.scene.path, job.scene.band_indexes, job.skip_bad)
    if key not in cache:
        cache.clear()  # one scene at a time per thread: keep memory flat
        cache[key] = SceneReader(job.scene, skip_bad=job.skip_bad)
    return cache[key]


def predict_row(job: RowJob, row: int, panel: tuple[int, int, int, tuple[int, ...]] | None = None) -> dict:
    """Worker task: read grid row ``row`` (of ``panel = (index, xa, xb, cols)``) and predict it."""
    from ..segmenters.registry import load_segmenter  # noqa: PLC0415

    scene = job.scene
    grid = TileGrid(scene.height, scene.width, job.tile, job.overlap)
    reader = _reader(job)
    seg = load_segmenter(job.model, device=job.device)
    index, xa, xb, cols = panel if panel is not None else (0, 0, scene.width, None)
    y = grid.row_starts[row]
    rows = RowBuffer(reader, grid.tile_height, grid.tile_height, xa, xb)
    before = len(reader.bad_windows)
    with block_cache(job.gdal_cache_mb):  # GDAL's default (5 % of RAM per worker) fills up over a scene's rows
        rows.ensure(y, y + grid.tile_height)
    from ..core.tile_ops import predict  # noqa: PLC0415
    from ..segmenters.protocol import pool_thread  # noqa: PLC0415

    out = []
    with pool_thread(seg):  # a worker's threads are a pool; in-process workers share the caller's cores
        for b in row_batches(rows.data, rows.valid, (rows.y0, xa), grid, row, job.batch_size, job.scaling,
                             scene.low, scene.high, cols, index):
            probs = predict(seg, b.pixels, list(job.prompts)) if b.tiles else None
            out.append(([t.col for t in b.tiles], probs, b.valid, b.skipped, b.row_end))
    return {"row": row, "panel": index, "batches": out, "bad": reader.bad_windows[before:]}


class _SceneRows:
    """Ordered stream of one scene's predicted batches from the cluster."""

    def __init__(self, client, job: RowJob, grid: TileGrid, in_flight: int) -> None:
        self.client = client
        self.job = job
        self.grid = grid
        self.in_flight = in_flight
        self.bad_windows: list = []

    def batches(self, panels, start_panel: int, start_row: int, n_rows: int, stop: threading.Event) -> Iterator[Batch]:
        job = self.job
        jobs = iter([(p, r) for p in panels[start_panel:] for r in range(start_row if p.index == start_panel else 0, n_rows)])
        pending: deque = deque()
        try:
            while True:
                for p, r in jobs:
                    pending.append(self.client.submit(predict_row, job, r, (p.index, p.xa, p.xb, p.cols),
                                                      key=f"geopix-row-{id(self)}-{p.index}-{r}", retries=2, pure=False))
                    if len(pending) >= self.in_flight:
                        break
                if not pending:
                    return
                result = pending.popleft().result()
                if stop.is_set():
                    return
                self.bad_windows.extend(b for b in result["bad"] if b not in self.bad_windows)
                r = result["row"]
                for cols, probs, valid, skipped, last in result["batches"]:
                    tiles = [self.grid.tile_at(r, c) for c in cols]
                    yield Batch(r, tiles, probs, valid, skipped, last, result["panel"])
        finally:
            for f in pending:
                f.cancel()


class DaskRunner:
    """Binds the engine to a dask.distributed ``Client``; pass as ``segment(..., remote=...)``."""

    def __init__(self, client, model, device: str = "auto", in_flight: int | None = None) -> None:
        from ..segmenters.registry import model_key  # noqa: PLC0415

        self.client = client
        self.model = model_key(model)
        self.device = device
        n = len(client.scheduler_info().get("workers", {})) or 1
        self.in_flight = in_flight or max(2, 2 * n)

    def for_scene(self, scene: Scene, grid: TileGrid, segmenter, prompts: Sequence[str], batch_size: int,
                  skip_bad: bool, gdal_cache_mb: float = DEFAULT_BLOCK_CACHE_MB) -> _SceneRows:
        job = RowJob(scene, grid.tile, grid.overlap, getattr(segmenter, "scaling", "reflectance"), self.model,
                     self.device, tuple(prompts), batch_size, skip_bad, gdal_cache_mb)
        return _SceneRows(self.client, job, grid, self.in_flight)


def make_client(scheduler: str | None = None, workers: int | None = None):
    """``--scheduler ADDRESS`` connects; ``--workers N`` (or ``--scheduler local``) starts a LocalCluster."""
    from dask.distributed import Client, LocalCluster  # noqa: PLC0415

    if scheduler and scheduler != "local":
        return Client(scheduler)
    cluster = LocalCluster(n_workers=workers or None, threads_per_worker=1, processes=True,
                           dashboard_address=None, silence_logs=40)
    return Client(cluster)
