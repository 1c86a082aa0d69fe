"""Training-time augmentation for the domain gaps users hit: scale, sensor colour, grey input.

* **Ground sampling distance**: a zoom of 0.3-3x. Zooming in crops and upsamples (a finer
  GSD: objects larger than the source shows them); zooming out downsamples and fills the
  tile with mirrored copies (a coarser GSD: objects smaller), so a model trained on 0.3 m
  Dubai chips also meets buildings of a few pixels, as on 2-10 m imagery.
* **Flips and 90 degree turns**: nadir imagery has no up.
* **Photometric**: brightness, contrast, per-band gain (another sensor's colour balance),
  gamma, grey (panchromatic) input with the grey value in all three bands, and **haze**: a
  blend towards a bright, bluish-white veil (path radiance, thin cloud, an over-exposed
  orthophoto), off in the shipped recipes (``data.haze``: its 2026-12-02 trial did not stop the
  model painting vegetation on the washed-out desert of Dubai tile_7 part 006; what did is the
  scene stretch keeping pale scenes pale, ``geopix_tiles.io.scene.MAX_LOW_SHARE``).
* **Synthetic clouds** (:func:`synthetic_cloud`): every real cloud pixel we may train on is one
  Sentinel-2 chip, so "cloud" meant "bright 10 m texture" and the model painted clouds over
  bright NAIP fields and tank roofs. Fractal clouds laid over cloud-free chips of coarse
  sources (``data.clouds_over``: a blob over a 0.3 m chip is the wrong scale), with their
  visible part as the label, and the same chips asked for clouds without one, teach what a
  cloud is (a bright, soft-edged veil over any ground), not which sensor it comes from. The
  shipped default_v14 learnt clouds this way, with every other class anchored to v2's masks
  (``data.anchor``): unanchored, the trials fixed clouds and moved other classes (MODEL_CARD, v8/v9).
* **Sensor degradation** (:func:`degrade`): another camera's optics and processing - softer
  focus, a coarser sensor resampled onto a finer grid, noise, JPEG blocks, other saturation and
  band mixing. Used for *consistency* (``data.degrade``): the student sees the degraded chip,
  the anchor model answers on the clean one, so the model learns to give the same masks
  whatever the camera did to the pixels, not new classes. default_v22 (the shipped v24's base) drew
  blur and resampling only (``data.degrade_ops``): with colour, noise and JPEG too (the v20 trial)
  Dubai water dropped and UC Merced roofs became clouds more often (MODEL_CARD, run history).
* **Object colour** (:func:`recolor_objects`): every building we may train on has the pale roofs of
  Dubai, Dar es Salaam or Puerto Rico, and the model learnt "bright" as part of "building". On xBD
  Joplin (US suburbs, never trained on) making the labelled roofs 1.6x brighter lifted building
  recall 0.51 -> 0.84 and making them 0.6x as bright dropped it to 0.38: dark shingle roofs, the
  commonest roofs in much of the world, were missed for their colour. Repainting the objects of a class
  (each its own brightness and tint, texture kept) while the anchor answers on the original chip
  (``data.recolor``) teaches that a roof is a roof whatever its colour: the shipped default_v24
  (Joplin buildings 0.296 -> 0.311, darker-roof recall 0.38 -> 0.50; MODEL_CARD).

Geometry changes positions, so it is only applied to samples whose text says nothing about
position (category segmentation); photometric changes apply to every sample. Every draw is
a pure function of ``(seed, sample index)``, so a resumed run augments exactly as before.
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

__all__ = ["DEGRADATIONS", "augment_sample", "degrade", "haze", "mirror_tile", "recolor_objects", "synthetic_cloud",
           "with_cloud"]


def mirror_tile(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Fill ``size`` with mirrored copies of ``x`` (``[..., h, w]``): seamless at every edge."""
    def idx(n: int, m: int) -> torch.Tensor:
        i = torch.arange(m) % (2 * n)
        return torch.where(i < n, i, 2 * n - 1 - i)

    h, w = x.shape[-2:]
    return x.index_select(-2, idx(h, size[0])).index_select(-1, idx(w, size[1]))


def _zoom(image: torch.Tensor, masks: torch.Tensor, z: float, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = image.shape[-2:]
    if z >= 1.0:
        ch, cw = max(8, round(h / z)), max(8, round(w / z))
        y, x = rng.randint(0, h - ch), rng.randint(0, w - cw)
        image = image[:, y:y + ch, x:x + cw]
        masks = masks[:, y:y + ch, x:x + cw]
        image = F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        if masks.shape[0]:
            masks = F.interpolate(masks[None], size=(h, w), mode="nearest")[0]
        return image, masks
    sh, sw = max(8, round(h * z)), max(8, round(w * z))
    small = F.interpolate(image[None], size=(sh, sw), mode="area")[0]
    image = mirror_tile(small, (h, w))
    if masks.shape[0]:
        # area-average then threshold: a building that shrinks below a pixel disappears from the label too
        m = F.interpolate(masks[None], size=(sh, sw), mode="area")[0]
        masks = mirror_tile((m >= 0.5).to(masks.dtype), (h, w))
    return image, masks


def haze(x: torch.Tensor, amount: float, rng: random.Random) -> torch.Tensor:
    """Blend ``x`` by ``amount`` towards a bright veil that is bluer than it is red (path radiance)."""
    r = rng.uniform(0.7, 1.0)
    rgb = [r, min(1.0, r + rng.uniform(0.0, 0.08)), min(1.0, r + rng.uniform(0.02, 0.15))]
    veil = torch.tensor((rgb + [r] * x.shape[0])[: x.shape[0]], dtype=x.dtype).view(-1, 1, 1)
    return x * (1.0 - amount) + veil * amount


def _luma(x: torch.Tensor) -> torch.Tensor:
    """``[H, W]`` grey value of the first three bands (ITU-R 601 weights), as a panchromatic band sees them."""
    return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[0]
    y = F.pad(x[None], (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)[0]


def _jpeg(x: torch.Tensor, quality: int) -> torch.Tensor:
    import io

    import numpy as np
    from PIL import Image

    rgb = (x[:3].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    out = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    return torch.cat([out.to(x.dtype), x[3:]], 0)


#: what :func:`degrade` may do, in the order it does it
DEGRADATIONS = ("blur", "resample", "saturation", "mix", "noise", "jpeg")


def degrade(image: torch.Tensor, rng: random.Random, ops: tuple[str, ...] | list[str] = DEGRADATIONS) -> torch.Tensor:
    """``image [C, H, W]`` in [0, 1] as another camera might have delivered the same ground.

    One to three of: softer optics (Gaussian blur, sigma 0.5-1.5 px), a coarser sensor resampled
    onto this grid (area down 1.5-3x, bilinear up), colour saturation 0.5-1.6x, band crosstalk
    (a near-identity 3 x 3 band mix), sensor noise (sigma 1-3 % of full scale) and JPEG at
    quality 30-85, applied in that physical order (optics, sampling, colour, noise, storage).
    ``ops`` limits the draw to some of them (:data:`DEGRADATIONS`).
    """
    h, w = image.shape[-2:]
    bad = [o for o in ops if o not in DEGRADATIONS]
    if bad or not ops:
        raise ValueError(f"unknown degradations {bad or ops}; choose from {', '.join(DEGRADATIONS)}")
    ops = rng.sample(list(ops), rng.randint(1, min(3, len(ops))))
    x = image
    if "blur" in ops:
        x = _blur(x, rng.uniform(0.5, 1.5))
    if "resample" in ops:
        f = rng.uniform(1.5, 3.0)
        small = F.interpolate(x[None], size=(max(8, round(h / f)), max(8, round(w / f))), mode="area")
        x = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]
    if "saturation" in ops and x.shape[0] >= 3:
        grey = _luma(x)[None]
        x = torch.cat([grey + (x[:3] - grey) * rng.uniform(0.5, 1.6), x[3:]], 0)
    if "mix" in ops and x.shape[0] >= 3:
        m = torch.eye(3, dtype=x.dtype) + torch.tensor([[rng.uniform(-0.12, 0.12) for _ in range(3)]
                                                        for _ in range(3)], dtype=x.dtype)
        m = m / m.sum(1, keepdim=True)  # each band keeps its overall level
        x = torch.cat([torch.einsum("ij,jhw->ihw", m, x[:3]), x[3:]], 0)
    if "noise" in ops:
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        x = x + torch.randn(x.shape, generator=gen, dtype=x.dtype) * rng.uniform(0.01, 0.03)
    x = x.clamp(0.0, 1.0)
    if "jpeg" in ops and x.shape[0] >= 3:
        x = _jpeg(x, rng.randint(30, 85))
    return x.contiguous()


#: roof tints (RGB gains on the grey value): neutral, warm brown, terracotta, slate blue-grey, moss grey
ROOF_TINTS = ((1.0, 1.0, 1.0), (1.12, 1.0, 0.86), (1.3, 0.92, 0.74), (0.93, 0.99, 1.1), (0.96, 1.04, 0.94))

#: water colours (RGB gains on the grey value): neutral, sediment brown (a river in flood: the Ucayali on
#: Landsat is ~(1.07, 1.0, 0.85) at grey 0.2), olive green (algae), turquoise shallows, deep blue. Our
#: water is the blue-black sea and lakes of Dubai and NAIP, and brown river water went unseen
#: (``benchmarks/results/landsat_pucallpa.md``)
WATER_TINTS = ((1.0, 1.0, 1.0), (1.2, 1.04, 0.8), (0.94, 1.12, 0.82), (0.78, 1.08, 1.12), (0.85, 0.95, 1.2))

#: vegetation colours (RGB gains on the grey value): dark conifer, olive, yellow-green grass, blue-green, a
#: faded green. Our vegetation is Dubai's watered palms and lawns and the NAIP forest of one summer place; the
#: dark conifers of the GeoPix demo image were doubted by the presence check (p 0.004-0.05) and UC Merced's
#: forest and golf-course chips lose vegetation tiles to it. No brown or tan: that is what sand looks like
VEGETATION_TINTS = ((0.85, 1.12, 0.9), (1.06, 1.12, 0.72), (1.12, 1.16, 0.6), (0.8, 1.1, 1.02), (0.96, 1.05, 0.95))

#: class -> (tints, range of the new mean grey, texture kept as a ratio to the mean or as differences
#: from it) :func:`recolor_objects` draws from. Much of our water is near black (Dubai's sea): scaling
#: it would only amplify sensor noise, so its ripples are kept as they are and the level moves
RECOLOR_PALETTES = {"building": (ROOF_TINTS, (0.12, 0.75), "ratio"), "water": (WATER_TINTS, (0.08, 0.5), "difference"),
                    "vegetation": (VEGETATION_TINTS, (0.08, 0.45), "ratio")}


def recolor_objects(image: torch.Tensor, objects: list[torch.Tensor], rng: random.Random,
                    share: float = 0.8, category: str = "building") -> torch.Tensor:
    """``image [C, H, W]`` in [0, 1] with each of ``objects`` (``[H, W]`` masks) repainted, with chance ``share``.

    An object keeps its texture (every pixel's grey scaled by one factor, so ridges, shadows and
    skylights stay where they were; water: shifted by one offset) and gets a new mean grey drawn log-uniformly from its
    ``category``'s range in :data:`RECOLOR_PALETTES` (roofs 0.12-0.75: dark roofs as often as pale
    ones), one of its tints and 0-0.8 of its own colour back. A one-pixel soft edge blends it into the
    ground, so no hard seam tells the model where the label was.
    """
    if image.shape[0] < 3 or not objects:
        return image
    if category not in RECOLOR_PALETTES:
        raise ValueError(f"no colours to repaint {category!r} with; known: {sorted(RECOLOR_PALETTES)}")
    tints, (lo, hi), texture = RECOLOR_PALETTES[category]
    out = image.clone()
    rgb = out[:3]
    grey = _luma(rgb)
    for m in objects:
        if rng.random() >= share:
            continue
        m = m.to(image.dtype)
        n = float(m.sum())
        if n < 4:
            continue
        mean = float((grey * m).sum()) / n
        target = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        tint = torch.tensor(rng.choice(tints), dtype=image.dtype).view(3, 1, 1)
        keep = rng.uniform(0.0, 0.8)
        scale = target / max(mean, 0.03) if texture == "ratio" else 1.0
        new_grey = (grey * scale if texture == "ratio" else grey + (target - mean))[None]
        painted = new_grey * tint + keep * (rgb - grey[None]) * min(scale, 1.5)
        alpha = F.avg_pool2d(m[None, None], 3, stride=1, padding=1, count_include_pad=False)[0, 0]
        rgb.copy_(rgb * (1 - alpha) + painted.clamp(0, 1) * alpha)
    return out.clamp(0.0, 1.0)


def synthetic_cloud(h: int, w: int, rng: random.Random) -> torch.Tensor:
    """Opacity ``[H, W]`` in [0, 1] of a random fractal cloud field (a few blobs to near-overcast).

    Octaves of smoothly upsampled noise (amplitude halving per octave) give the soft,
    self-similar edges of cumulus and stratus; a random cover level and edge sharpness turn
    the field into opacity, so thin veils and opaque cores both occur.
    """
    g = torch.Generator().manual_seed(rng.getrandbits(31))
    field = torch.zeros(1, 1, h, w)
    amp, cells = 1.0, rng.choice((2, 3, 4))
    while cells <= max(h, w) // 4:
        noise = torch.rand(1, 1, cells + 1, cells + 1, generator=g)
        field += amp * F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=True)
        amp, cells = amp * 0.5, cells * 2
    field = field[0, 0]
    field = (field - field.mean()) / field.std().clamp_min(1e-6)
    cover = rng.uniform(0.1, 0.7)  # share of the chip the cloud covers
    level = torch.quantile(field.flatten()[:: max(1, field.numel() // 4096)], 1.0 - cover)
    return torch.sigmoid((field - level) * rng.uniform(2.0, 6.0)).clamp(0.0, 1.0) * rng.uniform(0.85, 1.0)


def with_cloud(image: torch.Tensor, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` under a synthetic cloud and its mask: opacity >= 0.5 where the cloud visibly changes the ground."""
    alpha = synthetic_cloud(image.shape[-2], image.shape[-1], rng)
    white = rng.uniform(0.8, 1.0)
    tone = torch.tensor([white * rng.uniform(0.95, 1.0), white * rng.uniform(0.97, 1.0), white][: image.shape[0]]
                        + [white] * max(0, image.shape[0] - 3), dtype=image.dtype).view(-1, 1, 1)
    shade = 1.0 - 0.15 * alpha  # the cloud's own darker base, so it is not a flat white sheet
    out = (image * (1.0 - alpha) + tone * shade * alpha).clamp(0.0, 1.0)
    # a cloud over white sand or roofs hardly changes the pixels: what cannot be seen is not
    # labelled cloud (else bright ground itself would be taught as cloud)
    change = F.avg_pool2d((out - image).abs().mean(0)[None, None], 15, stride=1, padding=7, count_include_pad=False)
    seen = change[0, 0] >= 0.08  # judged over a neighbourhood, as an eye does: blobs, not speckle
    return out, ((alpha >= 0.5) & seen).to(image.dtype)


def _photometric(image: torch.Tensor, rng: random.Random, haze_p: float) -> torch.Tensor:
    x = image
    if rng.random() < 0.8:
        x = x * rng.uniform(0.7, 1.3)
    if rng.random() < 0.5:
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.7, 1.4) + mean
    if rng.random() < 0.5:
        gain = torch.tensor([rng.uniform(0.85, 1.15) for _ in range(x.shape[0])], dtype=x.dtype).view(-1, 1, 1)
        x = x * gain
    x = x.clamp(0.0, 1.0)
    if haze_p and rng.random() < haze_p:  # no draw when off: recorded recipes augment exactly as before
        x = haze(x, rng.uniform(0.2, 0.7), rng)
    if rng.random() < 0.3:
        x = x ** rng.uniform(0.7, 1.4)
    if rng.random() < 0.15:
        grey = _luma(x) if x.shape[0] >= 3 else x.mean(0)
        x = grey.expand_as(x).clone()
    return x


def augment_sample(image: torch.Tensor, masks: torch.Tensor, geometric: bool, seed: int,
                   index: int, haze_p: float = 0.0, zoom: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented ``image [C, H, W]`` in [0, 1] and target ``masks [T, H, W]`` for sample ``index``.

    ``haze_p`` is the chance of a hazed image (``data.haze``); off by default, so the shipped
    recipe draws the same augmentations it was trained with. ``zoom`` (geometric samples only)
    replaces the random zoom (``data.coarse``); the other draws are unchanged.
    """
    rng = random.Random(seed * 1_000_003 + index)
    if geometric:
        if rng.random() < 0.6:
            z = math.exp(rng.uniform(math.log(0.3), math.log(3.0)))
            if zoom is None:
                image, masks = _zoom(image, masks, z, rng)
        if zoom is not None:
            image, masks = _zoom(image, masks, zoom, rng)
        k = rng.randint(0, 3)
        if k:
            image, masks = torch.rot90(image, k, (1, 2)), torch.rot90(masks, k, (1, 2))
        if rng.random() < 0.5:
            image, masks = image.flip(-1), masks.flip(-1)
    image = _photometric(image, rng, haze_p)
    return image.contiguous(), masks.contiguous()
