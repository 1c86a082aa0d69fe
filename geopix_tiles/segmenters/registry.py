"""Turning ``--model NAME_OR_PATH`` into a Segmenter.

Names are resolved here so that the engine stays model-agnostic and importing
``geopix_tiles`` never imports torch: the learned model is imported only when asked for.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .protocol import Segmenter
from .spectral import SpectralSegmenter

if TYPE_CHECKING:
    from ..model import GeoPixModel

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
        return _geopix_segmenter(name, device)
    if Path(name).exists():
        raise InputError(f"model '{name}' is a file; pass a checkpoint folder (config.json + model.safetensors)")
    raise InputError(f"unknown model '{name}'; pass one of {', '.join(BUILTIN)} or a checkpoint folder")


#: one cache of learned models: key -> (model, {device: its Segmenter wrapper}); a wrapper lives
#: and dies with its model, so a replaced or re-saved checkpoint never survives in a second cache
_MODELS: dict = {}
_MODELS_LOCK = threading.Lock()


def load_geopix(name: "str | Path" = "default", device: str = "auto") -> "GeoPixModel":
    """The inference build of a GeoPix checkpoint (``"default"`` or a folder), loaded once.

    Every path that needs the learned model (segment, describe, ask, chat, the accessors)
    comes through here: one loader, one cache. Checkpoints are cached per folder, weight file
    modification time and device, one at a time (models can be large), so notebook loops and
    dask tasks do not reload them.
    """
    return _loaded(name, device)[0]


def _loaded(name: "str | Path", device: str) -> tuple["GeoPixModel", dict]:
    """The cache entry of a checkpoint: the model and its Segmenter wrappers by device."""
    name = str(name).strip()
    if name.lower() != "default":
        if not Path(name).exists():
            raise InputError(f"model '{name}' does not exist; pass 'default' or a checkpoint folder written by "
                             "save_pretrained")
        if not Path(name).is_dir():
            raise InputError(f"model '{name}' is a file; pass a checkpoint folder (config.json + model.safetensors)")
        cfg = Path(name) / "config.json"
        if not cfg.is_file():
            raise InputError(f"model folder '{name}' has no config.json; pass a folder written by save_pretrained")
        try:
            json.loads(cfg.read_text())
        except ValueError:
            raise InputError(f"'{cfg}' is not valid JSON; the checkpoint is corrupt, save it again") from None
    try:
        from ..model import GeoPixModel  # noqa: PLC0415 - torch only when a learned model is asked for
        from ..model.segmenter import resolve_device  # noqa: PLC0415
    except ImportError as exc:
        raise InputError(
            f"the learned model needs the 'model' extra ({exc}); install it with pip install 'geopix-tiles[model]'"
        ) from None
    dev = str(resolve_device(device))
    weights = Path(name) / "model.safetensors"
    stamp = weights.stat().st_mtime_ns if weights.is_file() else 0
    key = (str(Path(name).resolve()) if name.lower() != "default" else "default", stamp, dev)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS.clear()
            # the inference build: native tower and LLM (no timm / transformers model import), folded
            _MODELS[key] = (GeoPixModel.from_pretrained(name, device=dev, native=True).fuse_for_inference(), {})
            if dev == "cpu":  # chat / describe too: CUDA libraries' pages a CPU run never executes,
                # and the import-time pages of the rest (the first model call faults back what it runs)
                from ..core.lib_pages import release_gpu_library_pages, release_library_pages  # noqa: PLC0415

                release_gpu_library_pages()
                release_library_pages("model")
        return _MODELS[key]


def _geopix_segmenter(name: str, device: str) -> Segmenter:
    """The Segmenter wrapper of :func:`load_geopix`'s model, built once per model and device.

    Notebook loops, dask tasks and repeated CLI-style calls then share one wrapper (its weight
    fingerprint is hashed once), and it is dropped together with its model.
    """
    model, wrappers = _loaded(name, device)
    with _MODELS_LOCK:
        if device not in wrappers:
            wrappers[device] = model.as_segmenter(device=device)
        return wrappers[device]


def load_answer_model(model: Any = "default", device: str = "auto") -> Any:
    """A GeoPix model for describe / ask / chat: ``"default"``, a checkpoint folder, or a loaded model."""
    if not isinstance(model, (str, Path)):
        if callable(getattr(model, "describe", None)) or callable(getattr(model, "chat", None)):
            return model
        raise InputError(f"model {type(model).__name__} cannot describe regions; pass a GeoPixModel, "
                         "'default' or a checkpoint folder")
    if str(model).strip().lower() == "spectral":
        raise InputError("the spectral model only segments; describing regions and asking questions needs a GeoPix "
                         "checkpoint: pass --model default or a checkpoint folder")
    return load_geopix(model, device)


def model_key(model: "str | Segmenter | object"):
    """A hashable spec for dask task keys: names/paths stay strings, objects stay objects."""
    return str(model) if isinstance(model, Path) else model


def model_id(model: "str | Segmenter | object") -> str:
    """A stable identity for the resume fingerprint."""
    if isinstance(model, (str, Path)):
        p = Path(model)
        if p.is_dir():
            w = p / "model.safetensors"
            return f"{p.resolve()}@{w.stat().st_mtime_ns if w.exists() else 0}"
        return str(model)
    return f"{type(model).__module__}.{type(model).__qualname__}:{model!r}"
