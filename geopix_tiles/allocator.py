"""Keep freed tensor memory in the process instead of handing it back to the kernel (glibc).

Why: glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh
``mmap`` and returns it with ``munmap`` on free. A batch of eight 256 px tiles makes several
50 MB temporaries per forward (the tower's stride-2 expansions), so each batch pays for
page-faulting ~0.5 GB of new zero pages: measured on the 2-core machine, a third of the
model's CPU time. Raising the mmap and trim thresholds lets the allocator reuse the same
pages batch after batch. Peak memory is unchanged (the live set is the same); freed pages
stay mapped until the process ends, which is what a scene run wants.

No-op on other C libraries and platforms; ``GEOPIX_TILES_KEEP_MEMORY=0`` turns it off.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_DONE: list[bool] = []


def keep_freed_memory(threshold_mb: int = 1024) -> bool:
    """Raise glibc's mmap/trim thresholds once per process; True when they were set."""
    if _DONE:
        return _DONE[0]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("GEOPIX_TILES_KEEP_MEMORY", "1") != "0":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            size = int(threshold_mb) << 20
            ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, size)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2 * size)) \
                and bool(libc.mallopt(_M_TOP_PAD, 64 << 20))
        except (OSError, AttributeError):  # musl, macOS: no mallopt
            ok = False
    _DONE.append(ok)
    return ok
