"""Worker processes that label and trace strips, for hosts with cores to spare.

Why processes: labelling and tracing a strip is numpy work interleaved with Python, and the
Python half holds the GIL that the model thread, the reader and the blender need too. On a GPU
host (16 cores) four vectorising *threads* still left the CLI at 0.49 of the model's own rate,
and one thread against four was 241 against 373 tiles/s (``benchmarks/results/gpu.md``, run 4).
:func:`~.vectorize.trace_strip` is the stateless part of vectorising (~75 % of its time), so
it runs here in other interpreters; the stateful join stays in the engine's vector thread, in
strip order, so outputs and checkpoints are exactly those of the in-thread path.

The workers are plain ``python -c`` subprocesses speaking length-prefixed pickles over their
stdin/stdout, not ``multiprocessing``: its spawn method re-runs the user's ``__main__`` module
in every worker, so a script calling :func:`geopix_tiles.segment` without an
``if __name__ == "__main__"`` guard would fail on any machine with more than two cores (and
forking a process that holds GDAL, torch and CUDA threads is unsafe). The pickles are the
engine's own arrays, passed between processes it started; nothing a user supplies is unpickled.
A strip travels as packed foreground bits plus the probabilities at foreground pixels (a
fraction of the strip), and comes back as WKB and small arrays.
"""
from __future__ import annotations

import os
import pickle
import queue
import struct
import subprocess
import sys
import tempfile
import threading
from typing import BinaryIO

import numpy as np

from .vectorize import TracedStrip, trace_strip

__all__ = ["StripTracers", "serve"]

_HEADER = struct.Struct("<Q")
_SERVE = "from geopix_tiles.outputs.vector_workers import serve; serve()"


def _send(stream: BinaryIO, obj: object) -> None:
    data = pickle.dumps(obj, protocol=5)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: BinaryIO) -> object:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def serve() -> None:
    """A worker's loop: strips in on stdin, traced strips (or the error) out on stdout, until EOF."""
    source, sink = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing else may write into the result stream
    while True:
        try:
            bits, shape, fg_probs, x0, y0 = _receive(source)
        except EOFError:
            return
        try:
            foreground = np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).view(bool)
            result: object = trace_strip(foreground, fg_probs, x0, y0, keep_geometry=False)
        except Exception as exc:  # noqa: BLE001 - handed back to the engine, which raises it
            result = ("error", f"{type(exc).__name__}: {exc}")
        _send(sink, result)


class _Worker:
    """One subprocess and a thread draining its results (so a large result never blocks its stdin)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.errors = tempfile.TemporaryFile()  # a file, not a pipe: a chatty worker never blocks on it
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errors, env=env)
        self.results: queue.Queue = queue.Queue()
        threading.Thread(target=self._drain, daemon=True, name="geopix-vector-io").start()

    def _drain(self) -> None:
        try:
            while True:
                self.results.put(_receive(self.proc.stdout))
        except (EOFError, OSError, ValueError):
            self.results.put(EOFError())

    def last_error_line(self) -> str:
        try:
            self.errors.seek(0)
            lines = self.errors.read()[-4000:].decode(errors="replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return lines[-1] if lines else ""


class _Pending:
    """A strip sent to a worker; :meth:`result` waits for its traced strip (results come in order)."""

    def __init__(self, worker: _Worker) -> None:
        self.worker = worker

    def result(self) -> TracedStrip:
        out = self.worker.results.get()
        if isinstance(out, EOFError):
            self.worker.results.put(out)  # every later result of this worker fails the same way
            detail = self.worker.last_error_line()
            raise RuntimeError("a vectorising worker process stopped" + (f" ({detail})" if detail else "")
                               + "; set GEOPIX_VECTOR_WORKERS=0 to vectorise in the engine's own thread")
        if isinstance(out, tuple) and out and out[0] == "error":
            raise RuntimeError(f"vectorising a strip failed in a worker process: {out[1]}")
        return out  # type: ignore[return-value]


class StripTracers:
    """``workers`` subprocesses running :func:`trace_strip`; :meth:`submit` returns a pending result.

    Strips are dealt to the workers in turn and each worker answers in order, so reading the
    results in the order they were submitted never waits on a later strip.
    """

    def __init__(self, workers: int) -> None:
        env = dict(os.environ)
        # the parent's import path (a script may have added the package to sys.path itself)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self._workers = [_Worker(env) for _ in range(max(1, int(workers)))]
        self._next = 0

    @property
    def workers(self) -> int:
        return len(self._workers)

    def submit(self, foreground: np.ndarray, fg_probs: np.ndarray, x0: int, y0: int) -> _Pending:
        worker = self._workers[self._next % len(self._workers)]
        self._next += 1
        try:
            _send(worker.proc.stdin, (np.packbits(foreground, axis=None), foreground.shape,
                                      np.ascontiguousarray(fg_probs), int(x0), int(y0)))
        except (BrokenPipeError, OSError, ValueError):
            pass  # the worker is gone: its pending result reports why
        return _Pending(worker)

    def close(self) -> None:
        """End every worker (EOF, then a kill if it does not exit) and wait for it."""
        for w in self._workers:
            try:
                w.proc.stdin.close()
            except OSError:
                pass
        for w in self._workers:
            try:
                w.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait()
            w.errors.close()

    def __enter__(self) -> "StripTracers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
