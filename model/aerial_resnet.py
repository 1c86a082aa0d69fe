"""The aerial-orthophoto ResNet-18 of the ``geoembed`` wheel as a GeoPix vision tower.

Why it is here: ImageNet photographs are not overhead imagery, so the tower ablation asks
whether a tower pretrained on aerial tiles transfers better. ``geoembed`` (MIT) ships one:
``weights/v3.npz``, a ResNet-18 in its CIFAR form (3x3 stride-1 stem, no max-pool, basic
blocks at strides 1/2/2/2, BatchNorm after every conv) trained self-supervised on 128 px
aerial tiles scaled to [-1, 1]. Its own code runs on ``netcl`` (OpenCL); this is the same
network in plain PyTorch, built here from the architecture, with the file's parameter
names (``bb.`` dropped) so the arrays load 1:1.

Scale: at stride 1 the stem and first stage would run on every pixel of a 256 px tile (about
18x the compute of EfficientNet-Lite0). geoembed's own 256 px models average-pool the tile to
128 px first; so do we, which puts the four stages at strides 2/4/8/16 of the tile. The
decoders want 4/8/16/32, so the tower returns stages 2-4 and a 2x average pool of stage 4.

The file is read with ``numpy.load(allow_pickle=False)`` from the installed package, located
(not imported: geoembed's own modules import netcl) by :func:`.pretrained.tower_weights_path`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["AerialResNet18", "load_geoembed_state_dict", "ARCH_NAME", "BN_EPS"]

#: the architecture name a config gives as ``timm_model_name`` (built here, not by timm)
ARCH_NAME = "aerial_resnet18"
#: netcl's BatchNorm2d default (as PyTorch's)
BN_EPS = 1e-5
_WIDTHS = (64, 128, 256, 512)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the (projected) input, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return F.relu(h + (x if self.short is None else self.short(x)))


class AerialResNet18(nn.Module):
    """Trunk only (geoembed's embedding head is not used): four stage outputs, 64/128/256/512 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, _WIDTHS[0], 3, 1, 1, bias=False), nn.BatchNorm2d(_WIDTHS[0], eps=BN_EPS))
        cin = _WIDTHS[0]
        for i, cout in enumerate(_WIDTHS):
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)))
            cin = cout

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x``: ``[B, 3, H, W]`` already normalised to [-1, 1]; returns the four stage outputs."""
        h = F.relu(self.stem(x))
        out = []
        for i in range(4):
            h = getattr(self, f"layer{i + 1}")(h)
            out.append(h)
        return out


def load_geoembed_state_dict(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The trunk's arrays of ``v3.npz`` as tensors named for :class:`AerialResNet18` (no pickle)."""
    if path is None:
        from .pretrained import tower_weights_path

        path = tower_weights_path("geoembed_v3")
    with np.load(str(path), allow_pickle=False) as data:
        return {k[3:]: torch.from_numpy(np.array(data[k], dtype=np.float32))
                for k in data.files if k.startswith("bb.")}
