"""One glibc heap policy for a run: big tensors reuse pages, and RSS stays flat in scene size.

Two failure modes pull in opposite directions:

* glibc's *dynamic* mmap threshold rises each time a large block is freed, after which
  per-batch arrays come from the heap and RSS creeps up with the number of batches (the
  spectral engine measured 20k/5k peak 1.12x);
* a *low* fixed threshold (1 MB, the previous policy) serves every tensor above it with a
  fresh ``mmap`` and returns it with ``munmap`` on free. A learned model makes several 10-50
  MB temporaries per batch, so each batch page-faults hundreds of MB of new zero pages:
  measured on the 2-core machine, the default model ran at 15 tiles/s like that and at 35
  with pages reused.

The policy: a fixed threshold of 32 MB (the model's per-batch temporaries, at most ~25 MB
with the tower run four tiles at a time, are reused from the heap; anything larger is mapped
and returned), a trim threshold of 128 MB (free memory at the top of the heap beyond that
goes back), and at most two arenas (the engine's threads would otherwise each keep their
own heap's peak). Applied when a learned model is set up on the CPU (``GeoPixSegmenter``);
the spectral engine keeps glibc's defaults, which measured flattest for it (20k/5k peak
1.08x, against 1.13x with this policy and 1.21x with the old 1 MB pin). A no-op off glibc;
``GEOPIX_TILES_HEAP=0`` leaves glibc's defaults.

Under the same policy the periodic trim (:func:`trim_heap_if_due`) waits until the heaps hold
more than 256 MB of free memory: a trim gives back the pages of the model's last temporaries
too, which its next call faults straight back in, so trimming every 2 s whatever the heap
held cost a 5k job ~700,000 page faults (~3 s of system CPU) against ~300,000 gated, at the
same peak RSS (20k: 9.6 M -> 5.0 M faults, 40 -> 25 s system CPU, 836 -> 825 MB;
``benchmarks/results/learned_cli.md``, 2026-12-06).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
import time

__all__ = ["trim_heap", "trim_heap_if_due", "tune_heap"]

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
_done: list[bool] = []
#: the periodic trim waits for this much free memory in the heaps (MB; 0: trims whenever due)
_trim_free_mb = [0.0]
_libc: list = []  # the C library, loaded once (``find_library`` runs ldconfig); None when it cannot be


def _glibc():
    """The process's C library, or None off Linux, with ``GEOPIX_TILES_HEAP=0`` or when it cannot be loaded."""
    if not sys.platform.startswith("linux") or os.environ.get("GEOPIX_TILES_HEAP", "1") == "0":
        return None
    if not _libc:
        try:
            _libc.append(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"))
        except OSError:
            _libc.append(None)
    return _libc[0]


def tune_heap(mmap_threshold_mb: int = 32, trim_threshold_mb: int = 128, arenas: int = 2,
              trim_free_mb: float = 256.0) -> bool:
    """Apply the policy once per process (first call wins); True when glibc accepted it.

    ``trim_free_mb`` gates the periodic trim (``GEOPIX_TILES_TRIM_FREE_MB`` overrides it; 0 trims
    whenever due, as a process without the policy does).
    """
    if _done:
        return _done[0]
    ok = False
    libc = _glibc()
    if libc is not None:
        try:
            ok = bool(libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold_mb) << 20))
            ok = bool(libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold_mb) << 20)) and ok
            ok = bool(libc.mallopt(M_ARENA_MAX, int(arenas))) and ok
        except AttributeError:  # musl: no mallopt
            ok = False
    if ok:
        value = os.environ.get("GEOPIX_TILES_TRIM_FREE_MB", "").strip()
        try:
            _trim_free_mb[0] = float(value) if value else float(trim_free_mb)
        except ValueError:
            from ..errors import InputError  # noqa: PLC0415

            raise InputError(f"GEOPIX_TILES_TRIM_FREE_MB={value!r} is not a number of megabytes; set it to e.g. "
                             "256 (0 trims whenever due), or unset it") from None
    _done.append(ok)
    return ok


def trim_heap() -> bool:
    """Return the whole free pages inside glibc's heaps to the system (``malloc_trim(0)``).

    Called at each checkpoint (when the run has just flushed its buffers), every 2 s from the
    engine's writer (:func:`trim_heap_if_due`) and once when the pipeline ends, before the outputs
    are closed and assembled. The trim threshold only returns free memory at the *top* of a heap;
    ``malloc_trim`` also gives back free pages between live chunks, which is where a learned job's
    heap keeps 250-360 MB (``benchmarks/results/learned_cli.md``). Measured (2026-12-04/05, same
    session, alternating): the 5k learned job 940-967 MB with the checkpoint trim alone, 886-952
    with the 2 s trim, 877-933 with the end trim as well; the 20k job 1,042 -> 992 MB; same speed.
    A no-op off glibc or with ``GEOPIX_TILES_HEAP=0``; True when it ran.
    """
    trim = getattr(_glibc(), "malloc_trim", None)  # musl: none
    if trim is None:
        return False
    trim(0)
    return True


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_free_mb() -> float | None:
    """Free memory inside glibc's heaps, all arenas (MB); None where ``mallinfo2`` is missing (glibc < 2.33).

    Pages a trim gave back still count: they are free chunks of the heap, not resident ones.
    """
    fn = getattr(_glibc(), "mallinfo2", None)
    if fn is None:
        return None
    fn.restype = _MallInfo2
    return fn().fordblks / 2**20


TRIM_EVERY_S = 2.0
_last_trim = [0.0]
_trim_lock = threading.Lock()


def trim_heap_if_due(every_s: float | None = None) -> bool:
    """:func:`trim_heap` at most once per ``every_s`` seconds in the process (True when it ran).

    ``every_s`` defaults to ``GEOPIX_TILES_TRIM_S`` (2 s when unset; 0 turns the periodic trim off).
    The engine's writer calls it after each strip: between checkpoints a learned job's heap
    refills its free gaps with pages it no longer uses, and a trim every 2 s kept the 5k job's
    peak ~50 MB lower than a trim at the checkpoints alone, at the same speed. Under the learned
    model's policy a due trim is skipped while the heaps hold less than ``trim_free_mb`` free
    (:func:`tune_heap`): those pages are the model's next temporaries.
    """
    if every_s is None:
        every_s = float(os.environ.get("GEOPIX_TILES_TRIM_S", TRIM_EVERY_S))
    if every_s <= 0:
        return False
    now = time.monotonic()
    with _trim_lock:
        if now - _last_trim[0] < every_s:
            return False
        _last_trim[0] = now
    if _trim_free_mb[0] > 0:
        free = heap_free_mb()
        if free is not None and free < _trim_free_mb[0]:
            return False
    return trim_heap()
