"""Turning ``--model NAME_OR_PATH`` into a Segmenter.

Names are resolved here so that the engine stays model-agnostic and importing
``geopix_tiles`` never imports torch: the learned model is imported only when asked for.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

from .errors import InputError
from .segmenter import Segmenter
from .spectral import SpectralSegmenter

BUILTIN = ("spectral", "default")


def load_segmenter(model: "str | Segmenter | object" = "spectral", *, device: str = "auto") -> Segmenter:
    """A Segmenter from a name (``spectral``, ``default``), a checkpoint folder, or an object.

    Objects with ``predict`` are used as they are; a ``GeoPixModel`` is wrapped with its
    ``as_segmenter(device=...)``.
    """
    if device not in ("auto", "cpu", "cuda") and not str(device).startswith("cuda:"):
        raise InputError(f"device '{device}' is not one of auto, cpu, cuda; pass --device auto")
    if not isinstance(model, (str, Path)):
        if hasattr(model, "as_segmenter") and not hasattr(model, "predict"):
            return model.as_segmenter(device=device)
        if not callable(getattr(model, "predict", None)):
            raise InputError(f"model {type(model).__name__} has no predict(tiles, prompts); pass a Segmenter, a name or a checkpoint path")
        return model
    name = str(model).strip()
    if name.lower() == "spectral":
        return SpectralSegmenter()
    if name.lower() == "default" or Path(name).is_dir():
        if Path(name).is_dir():
            cfg = Path(name) / "config.json"
            if not cfg.is_file():
                raise InputError(f"model folder '{name}' has no config.json; pass a folder written by save_pretrained")
            try:
                json.loads(cfg.read_text())
            except ValueError:
                raise InputError(f"'{cfg}' is not valid JSON; the checkpoint is corrupt, save it again") from None
        try:
            from .model import GeoPixModel  # noqa: PLC0415 - torch only when a learned model is asked for
        except ImportError as exc:
            raise InputError(
                f"the learned model needs the 'model' extra ({exc}); install it with pip install 'geopix-tiles[model]'"
            ) from None
        # the inference build: native tower and LLM (no timm / transformers model import), folded
        return GeoPixModel.from_pretrained(name, native=True).fuse_for_inference().as_segmenter(device=device)
    if Path(name).exists():
        raise InputError(f"model '{name}' is a file; pass a checkpoint folder (config.json + model.safetensors)")
    raise InputError(f"unknown model '{name}'; pass one of {', '.join(BUILTIN)} or a checkpoint folder")


def model_key(model: "str | Segmenter | object"):
    """A hashable spec for :func:`cached_segmenter`: names/paths stay strings, objects stay objects."""
    return str(model) if isinstance(model, Path) else model


_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()


def cached_segmenter(model: "str | Segmenter | object", device: str = "auto") -> Segmenter:
    """Load a named/path model once per process (dask workers reuse it across tasks)."""
    if not isinstance(model, str):
        return load_segmenter(model, device=device)
    key = (model, device)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = load_segmenter(model, device=device)
        return _CACHE[key]


def model_id(model: "str | Segmenter | object") -> str:
    """A stable identity for the resume fingerprint."""
    if isinstance(model, (str, Path)):
        p = Path(model)
        if p.is_dir():
            w = p / "model.safetensors"
            return f"{p.resolve()}@{w.stat().st_mtime_ns if w.exists() else 0}"
        return str(model)
    return f"{type(model).__module__}.{type(model).__qualname__}:{model!r}"
