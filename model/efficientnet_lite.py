"""EfficientNet-Lite0/1/2 features in plain PyTorch, for inference without importing timm.

Why a second implementation: ``import timm`` costs ~2.5 s and ~200 MB on the 2-core machine
(it registers every model it knows), more than the whole rest of a small scene's run, and its
modules cannot be folded for inference. This module builds the same network with the same
parameter names as ``timm.create_model("tf_efficientnet_lite*", features_only=True)``, so a
checkpoint trained through timm loads into it strictly; :func:`fold_batchnorm` then folds
every BatchNorm into the convolution before it and :func:`to_channels_last` stores the
weights NHWC (depthwise convolutions are ~1.7x faster that way on this CPU).

timm stays the reference (training, and the test that compares the two); only the
architectures below are built here, anything else falls back to timm.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LITE_ARCHS", "LEVEL_MODULES", "EfficientNetLiteFeatures", "fold_batchnorm", "supports"]

#: per variant: output channels and repeats of the seven stages (timm's lite arch definitions
#: after channel/depth scaling; lite keeps the stem at 32 and the first/last repeats fixed)
LITE_ARCHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "tf_efficientnet_lite0": ((16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1)),
    "tf_efficientnet_lite1": ((16, 24, 40, 80, 112, 192, 320), (1, 3, 3, 4, 4, 5, 1)),
    "tf_efficientnet_lite2": ((16, 24, 48, 88, 120, 208, 352), (1, 3, 3, 4, 4, 5, 1)),
}
_KERNELS = (3, 3, 5, 3, 5, 5, 3)
_STRIDES = (1, 2, 2, 2, 1, 2, 1)
_EXPAND = (1, 6, 6, 6, 6, 6, 6)
#: stages whose outputs are the strides 4/8/16/32 features (timm's out_indices=(1, 2, 3, 4))
_OUT_STAGES = (1, 2, 4, 6)
#: the block that ends each level of strides 2/4/8/16/32 (timm's feature_info modules)
LEVEL_MODULES = ("blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6")
_STEM = 32
_EPS = 1e-3


def supports(timm_name: str | None) -> bool:
    return str(timm_name) in LITE_ARCHS


def _fused_op():
    """oneDNN's convolution with a fused activation (what inductor emits on CPU), if this build has it.

    Conv + ReLU6 in one pass over memory is ~2x faster than conv then clamp for the wide
    stride-2 activations that dominate the tower; without the op the eager pair runs instead.
    """
    op = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
    return op if op is not None and torch.backends.mkldnn.is_available() else None


_FUSED = _fused_op()


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (asymmetric for stride 2, static for stride 1).

    After :func:`fold_batchnorm` it also applies its block's activation (``fused_act``).
    """

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, k, stride, padding=0 if stride > 1 else k // 2, groups=groups, bias=False)
        self.fused_act: bool | None = None  # None: BatchNorm not folded, the BNAct after applies it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] > 1:
            x = F.pad(x, _same_pad(x.shape[-1], self.kernel_size[1], self.stride[1])
                      + _same_pad(x.shape[-2], self.kernel_size[0], self.stride[0]))
        if self.fused_act is None:
            return super().forward(x)
        if _FUSED is not None and x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled():
            return _FUSED(x, self.weight, self.bias, list(self.padding), list(self.stride), list(self.dilation),
                          self.groups, "hardtanh" if self.fused_act else "none",
                          [0.0, 6.0] if self.fused_act else [], "")
        y = super().forward(x)
        return F.hardtanh_(y, 0.0, 6.0) if self.fused_act else y


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    """(before, after) padding of one axis: TF puts the odd pixel after."""
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


class BNAct(nn.BatchNorm2d):
    """BatchNorm (eps 1e-3) and an optional ReLU6, as timm's BatchNormAct2d; an identity once
    :func:`fold_batchnorm` has moved its affine and activation into the convolution."""

    def __init__(self, ch: int, act: bool) -> None:
        super().__init__(ch, eps=_EPS)
        self.act = act
        self.folded = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.folded:
            return x
        x = super().forward(x)
        return F.hardtanh(x, 0.0, 6.0) if self.act else x


class Block(nn.Module):
    """Depthwise-separable (stage 0) or inverted residual block; no squeeze-excite (lite)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        self.inverted = expand != 1
        mid = cin * expand
        if self.inverted:
            self.conv_pw = SameConv(cin, mid, 1)
            self.bn1 = BNAct(mid, True)
            self.conv_dw = SameConv(mid, mid, k, stride, groups=mid)
            self.bn2 = BNAct(mid, True)
            self.conv_pwl = SameConv(mid, cout, 1)
            self.bn3 = BNAct(cout, False)
        else:
            self.conv_dw = SameConv(cin, cin, k, stride, groups=cin)
            self.bn1 = BNAct(cin, True)
            self.conv_pw = SameConv(cin, cout, 1)
            self.bn2 = BNAct(cout, False)
        self.skip = stride == 1 and cin == cout

    def conv_bn_pairs(self) -> list[tuple[SameConv, BNAct]]:
        """The block's convolutions with the BatchNorm after each, in order (run and folded alike)."""
        if self.inverted:
            return [(self.conv_pw, self.bn1), (self.conv_dw, self.bn2), (self.conv_pwl, self.bn3)]
        return [(self.conv_dw, self.bn1), (self.conv_pw, self.bn2)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for conv, bn in self.conv_bn_pairs():
            y = bn(conv(y))
        return x + y if self.skip else y


class EfficientNetLiteFeatures(nn.Module):
    """Features at strides 4/8/16/32; parameter names as timm's ``features_only`` model."""

    def __init__(self, timm_name: str) -> None:
        super().__init__()
        if timm_name not in LITE_ARCHS:
            raise ValueError(f"{timm_name!r} is not built natively; one of {', '.join(LITE_ARCHS)}")
        chs, reps = LITE_ARCHS[timm_name]
        self.conv_stem = SameConv(3, _STEM, 3, 2)
        self.bn1 = BNAct(_STEM, True)
        stages, cin = [], _STEM
        for cout, n, k, s, e in zip(chs, reps, _KERNELS, _STRIDES, _EXPAND):
            blocks = []
            for j in range(n):
                blocks.append(Block(cin, cout, k, s if j == 0 else 1, e))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.Sequential(*stages)
        self.channels = [chs[i] for i in _OUT_STAGES]

    def conv_bn_pairs(self) -> list[tuple[SameConv, BNAct]]:
        return [(self.conv_stem, self.bn1)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.bn1(self.conv_stem(x))
        feats = []
        for i, stage in enumerate(self.blocks):
            x = stage(x)
            if i in _OUT_STAGES:
                feats.append(x)
        return feats


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every ``conv -> BNAct`` pair into the convolution (weights scaled, bias added).

    Inference only: the BatchNorm statistics are frozen anyway (see :mod:`.vision`), so the
    folded network computes the same function with two passes over each activation fewer
    (the BatchNorm and the ReLU6, which the convolution now applies).
    """
    for m in module.modules():
        if not isinstance(m, (Block, EfficientNetLiteFeatures)):
            continue
        for conv, bn in m.conv_bn_pairs():
            if bn.folded:
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
            conv.fused_act = bn.act
            bn.folded = True
    return module
