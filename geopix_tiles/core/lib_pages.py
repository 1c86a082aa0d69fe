"""Give back the resident library pages a run does not execute: GPU libraries in a CPU run, and
every library's start-up code once the run is warm (:func:`release_library_pages`).

A CUDA build of torch (the one the package index serves, and CI's) maps about twenty CUDA
libraries at ``import torch``. Their loader and static initialisers leave 100-140 MB of those
libraries' code and read-only data resident (libcublasLt alone ~60 MB), which a CPU-only job
counts in its RSS but never runs: measured, ``import torch`` is 505 MB resident, 370 MB after
this, 293 MB with the data parked as below (no CUDA device).

For a mapping that is read-only and holds no private page (no relocation was written to it:
``Anonymous: 0`` in ``/proc/self/smaps``), the resident pages are the file's own, shared with
the page cache. ``madvise(MADV_DONTNEED)`` drops this process's references to them; if a
function in them is ever called, its page faults back in from the file, exactly as after the
kernel's own reclaim under memory pressure. Mappings with private pages, resident or swapped
(relocated read-only data, writable data), are left alone. Linux only; a no-op elsewhere, on a CPU build of torch
(nothing matches), or with ``GEOPIX_TILES_LIB_PAGES=0``.

Their zero-initialised data (``.bss``) is another matter: libcublasLt's static initialisers write
81 of its 84 MB at load, private memory a CPU run never reads again. When no CUDA device is
visible (so no CUDA call can reach those libraries in this process), :func:`park_gpu_library_data`
copies those pages to an unlinked temporary file, drops them, and copies them back at interpreter
exit, before the libraries' static destructors run (a process that ends with ``os._exit``, as the
CLI does, runs no destructors and skips the copy back). The file goes where ``tempfile`` puts it
(``TMPDIR``): on a RAM-backed ``/tmp`` the bytes move there instead of leaving memory.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import re
import sys
from dataclasses import dataclass

__all__ = ["park_gpu_library_data", "release_gpu_library_pages", "release_library_pages"]

#: libraries only a CUDA device calls (torch's CUDA build and the NVIDIA wheels it pulls in)
GPU_LIBRARIES = re.compile(
    r"/(libcublas|libcublasLt|libnvJitLink|libnvrtc[^/]*|libcufft|libcufftw|libcusparse|libcusparseLt|libcusolver|"
    r"libcudnn[^/]*|libnccl|libnvshmem[^/]*|libcupti|libcurand|libcufile[^/]*|libnvToolsExt|libtorch_cuda|"
    r"libc10_cuda|libcudart|libnvperf[^/]*|libcaffe2_nvrtc)(\.so|-[0-9a-f]{8}\.so)[^/]*$")
#: any shared library (``libfoo.so``, ``libfoo-1a2b3c4d.so.38.3``, ``mod.cpython-311-x86_64-linux-gnu.so``)
SHARED_LIBRARY = re.compile(r"\.so(\.[0-9][0-9.]*)?$")
MADV_DONTNEED = 4
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_done: list[int] = []  # the libraries are all mapped by ``import torch``: one release per process does it
_stages_done: set[str] = set()  # stages of release_library_pages that have run in this process
#: parked data: (the temporary file, [(start, length, offset in the file)]), restored at exit
_parked: list = []
_park_tried: list[int] = []


@dataclass
class _Mapping:
    """One line of ``/proc/self/maps`` with the ``smaps`` fields used here (kB)."""

    start: int
    end: int
    perms: str
    path: str
    rss: int = 0
    private: int = 0  # Anonymous + Swap: copy-on-write pages, resident or swapped


def _mappings() -> list[_Mapping]:
    """This process's mappings, in address order (one read of ``/proc/self/smaps``)."""
    out: list[_Mapping] = []
    with open("/proc/self/smaps") as fh:
        for line in fh:
            head = line.split(None, 6)
            if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                start, end = (int(x, 16) for x in head[0].split("-"))
                out.append(_Mapping(start, end, head[1], head[5].strip() if len(head) > 5 else ""))
            elif out and head[0] == "Rss:":
                out[-1].rss = int(head[1])
            elif out and head[0] in ("Anonymous:", "Swap:"):
                out[-1].private += int(head[1])
    return out


def _clean(m: _Mapping, path_pattern: re.Pattern) -> bool:
    """A read-only mapping of a matching file with no private page: its resident pages are the file's own."""
    return "w" not in m.perms and not m.private and bool(path_pattern.search(m.path))


def _clean_gpu_mappings(maps: list[_Mapping] | None = None) -> list[tuple[int, int, int]]:
    """(start, end, resident kB) of read-only GPU-library mappings with no private page."""
    return [(m.start, m.end, m.rss) for m in (_mappings() if maps is None else maps) if _clean(m, GPU_LIBRARIES)]


def _libc():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def _enabled() -> bool:
    return sys.platform.startswith("linux") and os.environ.get("GEOPIX_TILES_LIB_PAGES", "1") != "0"


def _drop_clean(path_pattern: re.Pattern, libc=None, maps: list[_Mapping] | None = None) -> int:
    """``MADV_DONTNEED`` on every read-only mapping whose path matches and that holds no private
    page; the resident kB dropped (0 when ``/proc`` or the C library cannot be read)."""
    try:
        libc = libc or _libc()
        maps = _mappings() if maps is None else maps
    except (OSError, AttributeError, ValueError):
        return 0
    released = 0
    for m in maps:
        if m.rss and m.start % _PAGE == 0 and _clean(m, path_pattern) and libc.madvise(m.start, m.end - m.start, MADV_DONTNEED) == 0:
            released += m.rss
    return released


def release_gpu_library_pages() -> int:
    """Drop this process's resident pages of clean GPU-library mappings, once; the kB released (0 after)."""
    if _done or not _enabled():
        return 0
    _done.append(1)
    try:
        libc = _libc()
        maps = _mappings()
    except (OSError, AttributeError, ValueError):
        return 0
    return _drop_clean(GPU_LIBRARIES, libc, maps) + park_gpu_library_data(libc, maps)


def release_library_pages(stage: str) -> int:
    """Drop this process's resident pages of every clean shared-library mapping, once per ``stage``; kB released.

    Importing torch, GDAL (twice: rasterio's and pyogrio's builds), numpy and the rest runs
    their loaders, initialisers and registration code, which leaves ~260 MB of library pages
    resident that a running job never executes again (libtorch_cpu alone ~156 MB). Dropped
    once the job has run its first model calls and written its first checkpoint, the pages
    the job does use fault back in from the page cache (minor faults, no disk read); measured
    on the default model (``benchmarks/results/learned_cli.md``): file-backed resident pages
    264 -> 130 MB after further batches, at the same speed. The same rule as for the GPU
    libraries: read-only mappings of ``.so`` files with no private page only, so nothing this
    process wrote is touched; data files (checkpoints, rasters) are never dropped. Start-up code
    runs once per process, so each ``stage`` (``"model"`` after a model load, ``"strip"`` after an
    engine's first strip, ``"checkpoint"`` after its first checkpoint, which opens the vector
    output) releases only the first time: later runs in the same process (a batch of scenes)
    neither re-read ``/proc/self/smaps`` nor fault their working set back in (0 after). A no-op
    off Linux or with ``GEOPIX_TILES_LIB_PAGES=0``.
    """
    if stage in _stages_done or not _enabled():
        return 0
    _stages_done.add(stage)
    return _drop_clean(SHARED_LIBRARY)


def _gpu_library_bss(maps: list[_Mapping] | None = None) -> list[tuple[int, int, int]]:
    """(start, end, resident kB) of the unnamed mappings that hold a GPU library's ``.bss``.

    Only one sandwiched between mappings of the same library file (right after its writable data):
    the loader reserved that range for the library, so nothing else can have been mapped into it
    (a ``.bss`` at the end of a library's range could have merged with a later anonymous mapping,
    someone else's memory, and is left alone).
    """
    maps = _mappings() if maps is None else maps
    return [(here.start, here.end, here.rss) for before, here, after in zip(maps, maps[1:], maps[2:])
            if not here.path and here.perms.startswith("rw") and before.perms.startswith("rw")
            and before.path == after.path and before.end == here.start and here.end == after.start
            and GPU_LIBRARIES.search(before.path) and here.rss >= 1024]


_CHUNK = 8 << 20  # bytes copied at a time (no 80 MB temporary)


def park_gpu_library_data(libc=None, maps: list[_Mapping] | None = None) -> int:
    """Move the GPU libraries' written ``.bss`` pages to a temporary file for this process (see the
    module docstring); the kB parked. Only without a CUDA device, once per process."""
    if _park_tried or not sys.platform.startswith("linux") or os.environ.get("GEOPIX_TILES_LIB_PAGES", "1") == "0":
        return 0
    _park_tried.append(1)
    torch = sys.modules.get("torch")
    if torch is None or torch.version.cuda is None or torch.cuda.is_available():
        return 0  # a CPU build maps no CUDA library; with a device, a later call may need them
    import atexit  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    parked: list[tuple[int, int, int]] = []
    store, kb = None, 0
    try:
        libc = libc or _libc()
        offset = 0
        for start, end, rss_kb in _gpu_library_bss(maps):
            length = end - start
            if start % _PAGE or length % _PAGE:
                continue
            if store is None:
                store = tempfile.TemporaryFile(prefix="geopix-gpu-bss-")
            for o in range(0, length, _CHUNK):
                n = min(_CHUNK, length - o)
                if os.pwrite(store.fileno(), ctypes.string_at(start + o, n), offset + o) != n:
                    raise OSError("short write")
            if libc.madvise(start, length, MADV_DONTNEED) == 0:
                parked.append((start, length, offset))
                kb += rss_kb
            offset += length
    except (OSError, AttributeError, ValueError):
        pass  # a full disk or an odd /proc: what was not dropped stays as it was
    if parked:
        _parked.append((store, parked))
        atexit.register(_restore)
    elif store is not None:
        store.close()
    return kb


def _restore() -> None:
    """Copy parked pages back (at exit, before the libraries' static destructors read them)."""
    while _parked:
        store, regions = _parked.pop()
        for start, length, offset in regions:
            for o in range(0, length, _CHUNK):
                data = os.pread(store.fileno(), min(_CHUNK, length - o), offset + o)
                ctypes.memmove(start + o, data, len(data))
        store.close()
