"""Give back the resident pages of GPU libraries that a CPU run never executes.

A CUDA build of torch (the one the package index serves, and CI's) maps about twenty CUDA
libraries at ``import torch``. Their loader and static initialisers leave 100-140 MB of those
libraries' code and read-only data resident (libcublasLt alone ~60 MB), which a CPU-only job
counts in its RSS but never runs: measured, ``import torch`` is 507 MB resident, 370 MB after
this.

For a mapping that is read-only and holds no private page (no relocation was written to it:
``Anonymous: 0`` in ``/proc/self/smaps``), the resident pages are the file's own, shared with
the page cache. ``madvise(MADV_DONTNEED)`` drops this process's references to them; if a
function in them is ever called, its page faults back in from the file, exactly as after the
kernel's own reclaim under memory pressure. Mappings with private pages, resident or swapped
(relocated read-only data, writable data), are left alone. Linux only; a no-op elsewhere, on a CPU build of torch
(nothing matches), or with ``GEOPIX_TILES_LIB_PAGES=0``.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys

__all__ = ["release_gpu_library_pages"]

#: libraries only a CUDA device calls (torch's CUDA build and the NVIDIA wheels it pulls in)
GPU_LIBRARIES = re.compile(
    r"/(libcublas|libcublasLt|libnvJitLink|libnvrtc[^/]*|libcufft|libcufftw|libcusparse|libcusparseLt|libcusolver|"
    r"libcudnn[^/]*|libnccl|libnvshmem[^/]*|libcupti|libcurand|libcufile[^/]*|libnvToolsExt|libtorch_cuda|"
    r"libc10_cuda|libcudart|libnvperf[^/]*|libcaffe2_nvrtc)(\.so|-[0-9a-f]{8}\.so)[^/]*$")
MADV_DONTNEED = 4
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_done: list[int] = []  # the libraries are all mapped by ``import torch``: one release per process does it


def _clean_gpu_mappings() -> list[tuple[int, int, int]]:
    """(start, end, resident kB) of read-only GPU-library mappings with no private page."""
    out: list[tuple[int, int, int]] = []
    cur: dict | None = None
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split(None, 6)
            if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                if cur is not None and cur["keep"]:
                    out.append((cur["start"], cur["end"], cur["rss"]))
                path = head[5].strip() if len(head) > 5 else ""
                start, end = (int(x, 16) for x in head[0].split("-"))
                cur = {"start": start, "end": end, "rss": 0,
                       "keep": "w" not in head[1] and bool(GPU_LIBRARIES.search(path))}
            elif cur is not None and head[0] == "Rss:":
                cur["rss"] = int(head[1])
            elif cur is not None and head[0] in ("Anonymous:", "Swap:"):
                if int(head[1]) != 0:  # a private (copy-on-write) page, resident or swapped: not the file's
                    cur["keep"] = False
    if cur is not None and cur["keep"]:
        out.append((cur["start"], cur["end"], cur["rss"]))
    return out


def release_gpu_library_pages() -> int:
    """Drop this process's resident pages of clean GPU-library mappings, once; the kB released (0 after)."""
    if _done or not sys.platform.startswith("linux") or os.environ.get("GEOPIX_TILES_LIB_PAGES", "1") == "0":
        return 0
    _done.append(1)
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        maps = _clean_gpu_mappings()
    except (OSError, AttributeError, ValueError):
        return 0
    released = 0
    for start, end, rss_kb in maps:
        if rss_kb and start % _PAGE == 0 and libc.madvise(start, end - start, MADV_DONTNEED) == 0:
            released += rss_kb
    return released
