"""Checkpoint directory rules: JSON + safetensors only, nothing outside the directory.

A checkpoint is ``config.json`` + ``model.safetensors`` + tokenizer files. Pickle-based
formats (``*.bin``, ``*.pt``, ``*.pkl`` ...) are refused outright rather than loaded with
``weights_only``: a model directory from the internet must never be a code-execution path.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from geopix_tiles.errors import InputError

from .config import REMOTE_CODE_KEYS, GeoPixConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
PATH_KEYS = ("vision_weights", "llm_path", "tokenizer_path")


def default_checkpoint_dir() -> Path:
    import geopix_tiles

    return Path(geopix_tiles.__file__).resolve().parent / "data" / "default_model"


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Map ``"default"`` to the packaged checkpoint and check the directory exists."""
    if str(path) == "default":
        d = default_checkpoint_dir()
        if not (d / CONFIG_NAME).is_file():
            raise InputError("no default GeoPix checkpoint is shipped yet; pass the directory written by "
                             "GeoPixModel.save_pretrained (or train one with geopix_tiles.training)")
        return d
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix.lower() in PICKLE_SUFFIXES:
            raise InputError(f"{p} is a pickled file; pickles are refused because loading them runs code - "
                             "pass a checkpoint directory with model.safetensors")
        raise InputError(f"{p} is a file; pass the checkpoint directory that contains {CONFIG_NAME} and {WEIGHTS_NAME}")
    if not p.is_dir():
        raise InputError(f"checkpoint directory {p} does not exist; pass a directory written by save_pretrained")
    if not (p / CONFIG_NAME).is_file() and (p / "model" / CONFIG_NAME).is_file():
        return p / "model"  # a training run folder: its exported model
    return p


def read_checkpoint_config(directory: Path) -> GeoPixConfig:
    """Validate the directory's files and return its config (nothing is built yet)."""
    pickled = sorted(f.name for f in directory.iterdir() if f.suffix.lower() in PICKLE_SUFFIXES)
    if pickled:
        raise InputError(f"checkpoint {directory} contains pickled files {pickled}; pickles are refused because "
                         "loading them runs code - keep only model.safetensors and JSON files")
    cfg_path = directory / CONFIG_NAME
    if not cfg_path.is_file():
        raise InputError(f"checkpoint {directory} has no {CONFIG_NAME}; it is not a GeoPix checkpoint directory")
    if not (directory / WEIGHTS_NAME).is_file():
        raise InputError(f"checkpoint {directory} has no {WEIGHTS_NAME}; re-save it with GeoPixModel.save_pretrained")
    try:
        data: Any = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{cfg_path} is not valid JSON ({exc}); re-save the checkpoint") from exc
    if isinstance(data, dict):
        bad = [k for k in REMOTE_CODE_KEYS if k in data or k in (data.get("llm_config") or {})]
        if bad:
            raise InputError(f"{cfg_path} asks for remote code ({bad[0]}); such checkpoints are refused")
        for key in PATH_KEYS:
            if data.get(key):
                data[key] = str(_inside(directory, data[key], key))
    try:
        return GeoPixConfig.from_dict(data)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{cfg_path} is not a valid GeoPix config ({exc}); re-save the checkpoint") from exc


def _inside(directory: Path, value: str, key: str) -> Path:
    p = Path(value)
    resolved = (directory / p).resolve()
    if p.is_absolute() or not resolved.is_relative_to(directory.resolve()):
        raise InputError(f"config key {key}={value!r} points outside the checkpoint directory; "
                         "checkpoints may only reference files inside themselves")
    return resolved


def config_for_saving(config: GeoPixConfig, llm_config: dict[str, Any]) -> dict[str, Any]:
    """Self-contained config: weights live in model.safetensors, so no external paths."""
    data = config.to_dict()
    data.update(llm_config=llm_config, llm_path=None, vision_weights=None, tokenizer_path=None)
    return data
