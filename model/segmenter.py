"""Engine adapter: GeoPixModel behind the engine's narrow Segmenter contract.

The engine hands numpy tiles scaled scene-wide to [0, 1] ("unit"), in RGB order, and wants
per-prompt probabilities back. Everything model-specific (device, autocast, inference mode,
one encoding per tile) stays here so the engine stays model-agnostic.
"""
from __future__ import annotations

import contextlib
import os
import threading
import warnings
from typing import Iterator, Sequence

import numpy as np
import torch

from geopix_tiles.errors import InputError


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was requested but CUDA is not available; use device='cpu' or 'auto'")
    return dev


def _fingerprint(model: torch.nn.Module) -> str:
    """Short digest of the config and a sample of every tensor (cheap even for a 7B LLM)."""
    import hashlib
    import json

    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    with torch.no_grad():
        for name, t in model.state_dict().items():
            flat = t.reshape(-1)
            sample = flat[:: max(1, flat.numel() // 64)][:64].float().cpu().numpy().tobytes()
            h.update(name.encode() + str(tuple(t.shape)).encode() + sample)
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Set this thread's torch threads (``None``: leave them) and restore them on exit."""
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class GeoPixSegmenter:
    """Implements :class:`geopix_tiles.segmenters.protocol.Segmenter` for a :class:`GeoPixModel`."""

    band_roles: tuple[str, ...] | None = ("red", "green", "blue")
    scaling = "unit"

    def __init__(self, model: torch.nn.Module, device: str | torch.device = "cpu", tile_size: int | None = None,
                 autocast: bool | None = None, tile_check: bool = True) -> None:
        self.device = resolve_device(device)
        #: drop a class from a tile when the checkpoint's presence check says its pixels there do not
        #: look like it (:func:`geopix_tiles.model.presence_check.veto_tiles`)
        self.tile_check = bool(tile_check)
        self._prompt_classes: dict[tuple[str, ...], list] = {}
        if self.device.type == "cpu":  # pages of the per-batch temporaries reused (see geopix_tiles.core.heap)
            from geopix_tiles.core.heap import tune_heap

            tune_heap()
        #: bf16 autocast, off unless asked for: on an H200 it made the default model slower (check on,
        #: batch 64: 316 against 459 tiles/s in fp32; the model is bound by kernel launches, not
        #: arithmetic) and moved its masks (roads IoU 0.86 against fp32 on the same tiles), and on
        #: CPUs without bf16 units it is slower too (``benchmarks/results/gpu.md``)
        self.autocast = False if autocast is None else bool(autocast)
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu":  # CUDA libraries' pages a CPU run never executes (geopix_tiles.core.lib_pages)
            from geopix_tiles.core.lib_pages import release_gpu_library_pages

            release_gpu_library_pages()
        self.tile_size = int(tile_size or model.config.tile_size)
        self._fingerprint = _fingerprint(self.model)
        #: replay each call as a CUDA graph on a GPU (:mod:`.cuda_graph`); ``GEOPIX_CUDA_GRAPHS=0`` or
        #: ``False`` runs the ops one by one. A call that cannot be recorded falls back for good.
        self.cuda_graphs = self.device.type == "cuda" and os.environ.get("GEOPIX_CUDA_GRAPHS", "1") != "0"
        self.cuda_graph_error: str | None = None
        self._graphs = None
        # a recorded call has one input buffer and one set of outputs: one caller at a time (dask's
        # threads may call predict side by side), from copying tiles in to copying probabilities out
        self._graph_lock = threading.Lock()
        self._plans: dict[tuple, object] = {}
        self._checked: set[tuple[str, ...]] = set()  # prompt lists check_prompts has accepted

    def __repr__(self) -> str:
        # Stable across processes: the engine's resume journal fingerprints models by repr.
        return f"GeoPixSegmenter(weights={self._fingerprint}, tile_size={self.tile_size}, tile_check={self.tile_check})"

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """The model's check, once per prompt list: the engine asks on every call, and tokenizing
        the prompts each time held the GIL the writer threads wait for (~0.5 ms a call)."""
        key = tuple(prompts) if not isinstance(prompts, str) and all(isinstance(p, str) for p in prompts) else None
        if key is not None and key in self._checked:
            return
        self.model.check_prompts(prompts)
        if key is not None:
            self._checked.add(key)

    def concurrent_calls(self) -> int:
        """Model threads the engine should run: two on a multi-core CPU, one on a GPU.

        Measured on the 2-core machine (``benchmarks/results/learned_cli.md``): one call on two
        OpenMP threads spends much of a scene run waiting at per-operator barriers whenever
        the engine's reader/blender/writer threads take a core; two calls of one thread each
        reach the same model rate alone and keep it beside the engine. A GPU serialises
        kernels anyway, so it gets one caller.
        """
        return 2 if self.device.type == "cpu" and torch.get_num_threads() >= 2 else 1

    def predictor_thread(self, count: int) -> contextlib.AbstractContextManager:
        """One model thread's share of the caller's compute threads, applied while it predicts.

        Called in the caller's thread, whose torch setting is read here (a new thread starts
        at the process default, not at the caller's); entered in the model thread. A GPU model
        thread gets one: its CPU ops are copies and a few small tensors, which no thread pool
        speeds up.
        """
        if self.device.type != "cpu":
            return _torch_threads(1)
        share = max(1, torch.get_num_threads() // count) if count > 1 else None
        return _torch_threads(share)

    def predict(self, tiles: np.ndarray, prompts: Sequence[str], check: bool | None = None,
                doubts_out: list | None = None) -> np.ndarray:
        """float32 ``[B, 3, H, W]`` in [0, 1] -> float32 probabilities ``[B, P, H, W]``.

        ``check`` (default :attr:`tile_check`): apply the presence check tile by tile. ``doubts_out``: a
        list the call appends its verdicts to (bool ``[B, P]``, True where a prompt was cut from a tile), so
        a run can say what the check cut (:class:`geopix_tiles.segmenters.checked.TalliedCheck`).
        """
        self.check_prompts(prompts)
        tiles = np.asarray(tiles)
        if tiles.ndim != 4 or tiles.shape[1] != 3:
            raise InputError(f"GeoPix needs RGB tiles [B, 3, H, W], got shape {tiles.shape}; select red/green/blue bands")
        x = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32)).to(self.device)
        with (self._graph_lock if self.cuda_graphs else contextlib.nullcontext()), torch.inference_mode(), \
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            probs, feats = self._segment(x, tuple(prompts))
            if (self.tile_check if check is None else check) and getattr(self.model, "presence_check", None) is not None:
                from .presence_check import tile_doubts, veto_tiles

                key = tuple(prompts)
                if key not in self._prompt_classes:
                    self._prompt_classes[key] = self.model.prompt_classes(list(prompts))
                classes = self._prompt_classes[key]
                doubts = tile_doubts(self.model.presence_check, feats, probs, classes)
                probs = veto_tiles(self.model.presence_check, feats, probs, classes, doubts)
                if doubts_out is not None:
                    doubts_out.append(doubts.cpu().numpy())
            # inside the lock, and a copy: the next replay overwrites a recorded call's outputs
            return probs.to("cpu", copy=self.cuda_graphs).numpy().astype(np.float32, copy=False)

    def _plan(self, prompts: tuple[str, ...], batch: int):
        """The prompt-side work of a call, once per (prompts, batch, precision)."""
        key = (prompts, batch, self.autocast)
        if key not in self._plans:
            if len(self._plans) > 32:
                self._plans.clear()
            # tiles of a scene: a place in a prompt names part of the scene, not of every tile
            self._plans[key] = self.model.segment_plan(list(prompts), batch, place_prior=False)
        return self._plans[key]

    def _eager(self, x: torch.Tensor, prompts: tuple[str, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        enc = self.model.encode_images(x)
        logits = self.model.segment_planned(enc, self._plan(prompts, x.shape[0]))[0]
        return torch.sigmoid(logits.float()), enc.feats

    def _segment(self, x: torch.Tensor, prompts: tuple[str, ...]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Probabilities ``[B, P, H, W]`` and the tower's feature maps (for the presence check)."""
        if self.cuda_graphs:
            from .cuda_graph import GraphedSegment

            if self._graphs is None:
                self._graphs = GraphedSegment(lambda p, b: (lambda static: self._eager(static, p)),
                                              graph=self.device.type == "cuda")  # CPU: the same calls, eager
            try:
                return self._graphs(x, prompts)
            except RuntimeError as exc:  # something in the call cannot be recorded: run it op by op
                self.cuda_graphs, self._graphs = False, None
                self.cuda_graph_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                warnings.warn(f"CUDA graphs are off for this model ({self.cuda_graph_error}); running op by op",
                              RuntimeWarning, stacklevel=3)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
        return self._eager(x, prompts)
