"""The aerial ResNet-18 (geoembed v3) tower: a faithful port, and a working GeoPix tower.

The port is checked against the weights themselves: BatchNorm running statistics are what
the original network saw in front of every BN layer on aerial imagery, so on real aerial chips
preprocessed as geoembed does, the channel means in front of each BN must track them. A wrong
stride, a missing ReLU, a wrong input scaling or a mis-assigned array breaks that (checked).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
rasterio = pytest.importorskip("rasterio")

import importlib.util  # noqa: E402

if importlib.util.find_spec("geoembed") is None:
    pytest.skip("geoembed not installed (pip install --no-deps geoembed)", allow_module_level=True)

CHIPS = sorted((Path(__file__).resolve().parent / "data" / "default_val").glob("*.tif"))


def _aerial_batch(scale_to_pm1: bool = True) -> torch.Tensor:
    """16 crops of 128 px from the shipped real chips, scaled as geoembed's preprocessing does."""
    crops = []
    for path in CHIPS:
        with rasterio.open(path) as src:
            a = src.read([1, 2, 3]).astype(np.float32)
        lo, hi = np.percentile(a, 2), np.percentile(a, 98)
        a = np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)
        for y in (0, 128):
            for x in (0, 128):
                crops.append(a[:, y:y + 128, x:x + 128])
    x = torch.from_numpy(np.stack(crops))
    return (x - 0.5) / 0.5 if scale_to_pm1 else x


def _bn_agreement(model: torch.nn.Module, x: torch.Tensor) -> list[float]:
    """Per BN layer: correlation of the batch's channel means with the stored running means."""
    out: list[float] = []

    def hook(mod, inp, _):
        mu = inp[0].mean((0, 2, 3)).numpy()
        out.append(float(np.corrcoef(mu, mod.running_mean.numpy())[0, 1]))

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return out


def test_port_reproduces_the_statistics_the_weights_were_trained_on():
    from geopix_tiles.model.aerial_resnet import AerialResNet18, load_geoembed_state_dict

    m = AerialResNet18()
    m.load_state_dict(load_geoembed_state_dict(), strict=True)
    m.eval()
    assert len(CHIPS) == 4 and sum(p.numel() for p in m.parameters()) == 11_168_832
    good = _bn_agreement(m, _aerial_batch())
    assert len(good) == 20 and min(good[1:]) > 0.9 and np.mean(good) > 0.95, np.round(good, 3)
    # the same network with its inputs in [0, 1] instead of [-1, 1] drifts away in the deep layers
    bad = _bn_agreement(m, _aerial_batch(scale_to_pm1=False))
    assert np.mean(bad) < np.mean(good) - 0.02, (np.mean(bad), np.mean(good))


def test_tower_feeds_geopix_at_strides_4_to_32_and_trains_only_unfrozen_levels():
    from geopix_tiles.model import GeoPixConfig, GeoPixModel

    cfg = GeoPixConfig.tiny(timm_model_name="aerial_resnet18", vision_pretrained="geoembed_v3",
                            vision_frozen_levels=2, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5))
    model = GeoPixModel(cfg)
    tower = model.vision
    feats = tower(torch.rand(2, 3, 256, 256))
    assert [tuple(f.shape[1:]) for f in feats] == [(128, 64, 64), (256, 32, 32), (512, 16, 16), (512, 8, 8)]
    trainable = {n.split(".")[0] for n, p in tower.trunk.named_parameters() if p.requires_grad}
    assert trainable == {"layer4"}
    assert tower.trainable_parameter("trunk.layer4.0.conv1.weight")
    assert not tower.trainable_parameter("trunk.layer3.1.conv2.weight")
    tower.train(True)  # BatchNorm statistics stay frozen in training mode
    assert not any(m.training for m in tower.modules() if isinstance(m, torch.nn.BatchNorm2d))
    out = model.segment(torch.rand(1, 3, 256, 256), ["buildings"])
    assert out[0].shape[-2:] == (256, 256)
