"""How many CPU cores this process may use, and the engine's thread counts that follow from it.

The defaults were measured on the project's 2-core machines, where the model takes both cores
and extra writer threads only compete with it; on a GPU host the model leaves the cores free and
one writer thread per stage became the job's limit (``benchmarks/results/gpu.md``). So every
count here is 1 on two cores and grows with more, and each has an environment override.
"""
from __future__ import annotations

import os

__all__ = ["compression_threads", "usable_cores", "vector_threads"]


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


def vector_threads(prompts: int) -> int:
    """Threads vectorising a strip's prompts at once: 1 on up to 2 cores, else up to half the cores.

    Labelling, tracing and shapely's unions release the GIL for much of their time: the 4 prompts
    of a 6000 x 6000 NAIP strip set (217,326 polygons) took 11.5 s in one thread, 7.8 s in two
    and 7.1 s in four on the 2-core machine. ``GEOPIX_VECTOR_THREADS`` overrides.
    """
    cores = usable_cores()
    wanted = _override("GEOPIX_VECTOR_THREADS") or (1 if cores <= 2 else cores // 2)
    return max(1, min(wanted, prompts))
