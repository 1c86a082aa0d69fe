"""Worker processes that label and trace strips, for hosts with cores to spare.

Why processes: labelling and tracing a strip is numpy work interleaved with Python, and the
Python half holds the GIL that the model thread, the reader and the blender need too. On a GPU
host (16 cores) four vectorising *threads* still left the CLI at 0.49 of the model's own rate,
and one thread against four was 241 against 373 tiles/s (``benchmarks/results/gpu.md``, run 4).
:func:`~.vectorize.trace_strip` is the stateless part of vectorising (~75 % of its time), so
it runs here in other interpreters; the stateful join stays in the engine's vector thread, in
strip order, so outputs and checkpoints are exactly those of the in-thread path.

A strip travels as packed foreground bits plus the probabilities at foreground pixels (a
fraction of the strip), and comes back as WKB and small arrays. Processes are spawned, never
forked: the parent has GDAL, torch and CUDA threads whose locks a fork would copy mid-use.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np

from .vectorize import TracedStrip, trace_strip

__all__ = ["StripTracers"]


def _trace_packed(bits: np.ndarray, shape: tuple[int, int], fg_probs: np.ndarray, x0: int, y0: int) -> TracedStrip:
    foreground = np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).view(bool)
    return trace_strip(foreground, fg_probs, x0, y0, keep_geometry=False)


def _ready() -> bool:
    return True


class StripTracers:
    """A pool of ``workers`` processes running :func:`trace_strip`; :meth:`submit` returns a Future."""

    def __init__(self, workers: int) -> None:
        self.workers = int(workers)
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        # start (and import in) every worker now, while the model loads its first batch
        for f in [self._pool.submit(_ready) for _ in range(self.workers)]:
            f.add_done_callback(lambda _: None)

    def submit(self, foreground: np.ndarray, fg_probs: np.ndarray, x0: int, y0: int) -> "Future[TracedStrip]":
        bits = np.packbits(foreground, axis=None)
        return self._pool.submit(_trace_packed, bits, foreground.shape, np.ascontiguousarray(fg_probs), x0, y0)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "StripTracers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
