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
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["trim_heap", "tune_heap"]

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
_done: list[bool] = []


def tune_heap(mmap_threshold_mb: int = 32, trim_threshold_mb: int = 128, arenas: int = 2) -> bool:
    """Apply the policy once per process (first call wins); True when glibc accepted it."""
    if _done:
        return _done[0]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("GEOPIX_TILES_HEAP", "1") != "0":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = bool(libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold_mb) << 20))
            ok = bool(libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold_mb) << 20)) and ok
            ok = bool(libc.mallopt(M_ARENA_MAX, int(arenas))) and ok
        except (OSError, AttributeError):  # musl, macOS: no mallopt
            ok = False
    _done.append(ok)
    return ok


_libc: list = []


def trim_heap() -> bool:
    """Return the whole free pages inside glibc's heaps to the system (``malloc_trim(0)``).

    Called at each checkpoint (10 s apart), when the run has just flushed its buffers. The trim
    threshold only returns free memory at the *top* of a heap; ``malloc_trim`` also gives back
    free pages between live chunks, which is where a learned job's heap keeps 250-360 MB
    (``benchmarks/results/learned_cli.md``). Measured: a trim every 2 s took the 5k learned job's
    peak 946 -> 896 MB (3 runs each) at the same speed; at the checkpoints only (one on a 5k job)
    -10 MB, and the 20k job 1,079 -> 1,057 MB (one run each): small, within the runs' spread, but
    free of cost. A no-op off glibc or with ``GEOPIX_TILES_HEAP=0``; True when it ran.
    """
    if not sys.platform.startswith("linux") or os.environ.get("GEOPIX_TILES_HEAP", "1") == "0":
        return False
    if not _libc:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc.append(lib.malloc_trim)
        except (OSError, AttributeError):
            _libc.append(None)
    if _libc[0] is None:
        return False
    _libc[0](0)
    return True

