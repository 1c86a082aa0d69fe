"""How many CPU cores this process may use, and the engine's thread counts that follow from it.

The defaults were measured on the project's 2-core machines, where the model takes both cores
and extra writer threads only compete with it; on a GPU host the model leaves the cores free and
one writer thread per stage became the job's limit (``benchmarks/results/gpu.md``). So every
count here is 1 on two cores and grows with more, and each has an environment override.
"""
from __future__ import annotations

import os
import sys

__all__ = ["compression_threads", "usable_cores", "vector_workers"]


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask, e.g. a container's CPU set)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _override(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def compression_threads() -> int:
    """GDAL threads compressing the output raster's blocks: 1 on up to 2 cores, then half the cores, at most 8.

    On two cores the model needs both, so one thread compresses (``benchmarks/results/raster_threads.md``
    compared one with two there, but its runs lost the threads at the first checkpoint's reopen, so that
    A/B says little). On the H200 host (16 cores) one thread was the bottleneck of the whole job: 8 took the CLI's engine
    from 56.5 to 120.9 tiles/s. ``GEOPIX_RASTER_THREADS`` overrides.
    """
    cores = usable_cores()
    return _override("GEOPIX_RASTER_THREADS") or (1 if cores <= 2 else min(8, cores // 2))


#: scenes smaller than this (pixels) are vectorised in the engine's thread whatever the cores: the
#: workers' start (~0.5 s of interpreter and imports, measured on the 934 x 723 sample) would cost more
#: than the ~20 ns per pixel and prompt they take off the vector thread
WORKER_MIN_PIXELS = 4096 * 4096


def vector_workers(prompts: int, pixels: int | None = None) -> int:
    """Processes labelling and tracing a strip's prompts (:mod:`geopix_tiles.outputs.vector_workers`):
    none on up to 2 cores (the engine's vector thread does it), else one per prompt up to half the cores.

    On two cores the model takes both and a worker process would only add its start-up and
    memory. On the 16-core GPU host the vectorising threads were the job's limit, bound by the
    GIL they shared with the model thread (``benchmarks/results/gpu.md``, run 4).
    ``pixels`` (the scene's): below :data:`WORKER_MIN_PIXELS` none. ``GEOPIX_VECTOR_WORKERS``
    overrides both (``0``: in the vector thread).
    """
    if not sys.executable:  # an embedded interpreter cannot start the workers' ``python -c``
        return 0
    value = os.environ.get("GEOPIX_VECTOR_WORKERS", "").strip()
    if value.isdigit():
        wanted = int(value)
    elif pixels is not None and pixels < WORKER_MIN_PIXELS:
        wanted = 0
    else:
        cores = usable_cores()
        wanted = 0 if cores <= 2 else cores // 2
    return max(0, min(wanted, prompts))
