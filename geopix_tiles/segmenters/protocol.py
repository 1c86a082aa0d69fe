"""The contract between the engine and any model.

The engine knows nothing about models beyond this: which band roles a segmenter needs,
how it wants pixels scaled, its preferred tile size, and ``predict``. Keeping the contract
this narrow is what lets a training-free spectral index, a closed-set network and the
GeoPix language model all run through the same tiling, blending and writing code.
"""
from __future__ import annotations

import contextlib
import os
import threading
from typing import Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import InputError

#: How the engine scales pixels before ``predict``:
#: ``"reflectance"`` - raw values cast to float32 (scale-free indices such as NDVI want this);
#: ``"unit"`` - scene-wide percentile stretch of each band to [0, 1], computed once per scene
#: (never per tile: per-tile stretching makes seams).
Scaling = Literal["reflectance", "unit"]


@runtime_checkable
class Segmenter(Protocol):
    """What the engine needs from a model.

    Attributes
    ----------
    band_roles:
        Roles of the input channels, in the order ``predict`` expects them, e.g.
        ``("green", "nir")`` or ``("red", "green", "blue")``. The engine resolves roles to
        scene bands from band descriptions or the user's ``--band-roles``. ``None`` means
        "whatever bands the user selected, in that order".
    tile_size:
        Preferred tile edge in pixels; the user's ``--tile`` overrides it.
    scaling:
        See :data:`Scaling`.
    """

    band_roles: tuple[str, ...] | None
    tile_size: int
    scaling: Scaling

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Raise :class:`geopix_tiles.errors.InputError` for prompts it cannot answer."""

    def predict(self, tiles: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        """Map float32 tiles ``[B, C, H, W]`` to float32 probabilities ``[B, P, H, W]`` in [0, 1].

        One output channel per prompt, in prompt order. Pixels the engine marks as nodata
        are zero in ``tiles`` and ignored in the output.
        """


class SegmenterWrapper:
    """A segmenter that changes how another one is called and is that one in everything else.

    Band roles, scaling, tile size, threads and ``check_prompts`` are the inner segmenter's;
    subclasses define ``predict`` (and ``__repr__``, which the resume journal fingerprints).
    """

    def __init__(self, inner: Segmenter) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> object:
        if name == "inner":  # not set yet (unpickling, a failed __init__): no endless recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def roles_for(segmenter: Segmenter, prompts: Sequence[str]) -> tuple[str, ...] | None:
    """Band roles ``segmenter`` needs for ``prompts``.

    A segmenter whose inputs depend on the prompts (a spectral index needs NIR for
    vegetation but SWIR for built-up) may define ``band_roles_for(prompts)``; everything
    else just has a fixed ``band_roles``.
    """
    fn = getattr(segmenter, "band_roles_for", None)
    return tuple(fn(prompts)) if callable(fn) else segmenter.band_roles


def predictor_count(segmenter: Segmenter) -> int:
    """How many ``predict`` calls the engine runs at once for ``segmenter`` (default 1).

    A segmenter may define ``concurrent_calls()``: on a 2-core CPU two model threads of one
    compute thread each keep both cores busy without the per-operator barrier waits of one
    call on two threads, which the engine's other threads otherwise turn into idle time.
    ``GEOPIX_MODEL_THREADS`` overrides the number for such segmenters (1 gives the old
    single-caller pipeline, for comparison or a busy machine).
    """
    fn = getattr(segmenter, "concurrent_calls", None)
    wanted = max(1, int(fn())) if callable(fn) else 1
    override = os.environ.get("GEOPIX_MODEL_THREADS", "").strip()
    if not override:
        return wanted
    if not override.isdigit() or int(override) < 1:
        raise InputError(f"GEOPIX_MODEL_THREADS={override!r} is not a positive integer; set it to 1 or 2, or unset it")
    return int(override) if callable(fn) else 1  # a segmenter that does not offer it may not be thread-safe


#: tiles per model call on a CPU and on a GPU (:func:`default_batch_size`)
CPU_BATCH, GPU_BATCH = 8, 64


def default_batch_size(segmenter: Segmenter) -> int:
    """Tiles per model call when the user gives none: 8 on a CPU, 64 for a model on a GPU.

    On the CPU a larger batch only adds memory (the model's rate is flat in batch size). On an
    H200 the default model ran 274 tiles/s at 8 and 459 at 64 (256 reached 504 for 4x the
    memory; ``benchmarks/results/gpu.md``): each call has a fixed cost on the host.
    """
    device = getattr(segmenter, "device", None)
    return GPU_BATCH if getattr(device, "type", str(device)) == "cuda" else CPU_BATCH


#: pixels neighbouring tiles share when neither the user nor the segmenter says otherwise
DEFAULT_OVERLAP = 64


def default_overlap(segmenter: Segmenter) -> int:
    """The tile overlap a run uses when the user gives none.

    Overlap exists so that every output pixel is predicted with context on all sides and
    seams blend away; a segmenter whose output at a pixel depends on that pixel alone
    (``per_pixel = True``, e.g. a spectral index) gets identical values without it, and the
    64 px of a 512 px tile would only make the engine read, predict and blend 31 % more pixels.
    """
    return 0 if getattr(segmenter, "per_pixel", False) else DEFAULT_OVERLAP


def predictor_thread(segmenter: Segmenter, count: int) -> contextlib.AbstractContextManager:
    """Context manager around one model thread's work: the segmenter's per-thread setup.

    Made in the caller's thread (the setup may read the caller's settings) and entered in
    the model thread. ``segmenter.predictor_thread(count)`` (optional) sizes the thread's
    compute threads for ``count`` concurrent callers and restores them on exit, so the
    caller's thread is left as it was found.
    """
    fn = getattr(segmenter, "predictor_thread", None)
    return fn(count) if callable(fn) else contextlib.nullcontext()


def pool_thread(segmenter: Segmenter) -> contextlib.AbstractContextManager:
    """Context manager around model calls made in a thread of someone else's pool (dask and dask.distributed workers).

    A thread that runs a parallel torch operator keeps an OpenMP team for the rest of its life,
    and dask's worker threads live as long as the process. After one accessor ``compute`` on two
    cores the process held two teams more than cores, libgomp stopped spinning between parallel
    regions for every team, and the notebook's next small-operator torch work in the main thread
    (a training step, a chat) ran 2.6x slower; during the compute the two tasks ran four compute
    threads on two cores (``benchmarks/results/pool_threads.md``). The scheduler already runs a
    task per core, so the process's compute threads are shared as among that many concurrent
    callers (the segmenter's own ``predictor_thread``): one per task, so no team is ever made,
    unless ``OMP_NUM_THREADS`` asks for more threads than there are cores. In the main thread
    (dask's synchronous scheduler, a plain call) nothing changes.
    """
    if threading.current_thread() is threading.main_thread():
        return contextlib.nullcontext()
    from ..core.cores import usable_cores  # noqa: PLC0415

    return predictor_thread(segmenter, max(2, usable_cores()))
