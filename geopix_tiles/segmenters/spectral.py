"""A training-free segmenter from standard spectral indices.

It answers the questions a remote-sensing user can already answer from band math (water,
vegetation, built-up, snow, burned area, bare soil) so the whole engine can be used, tested
and benchmarked on real scenes before any learned model is loaded. Each index becomes a
probability by a linear ramp centred on its customary threshold: cheap (no exp per pixel),
monotone, and 0.5 exactly at the threshold the literature uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class SpectralIndex:
    name: str
    roles: tuple[str, ...]
    formula: Callable[..., np.ndarray]
    threshold: float
    sign: float = 1.0  # -1 when the class has LOW index values
    reference: str = ""


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised difference (a - b) / (a + b), 0 where the sum is 0."""
    num = a - b
    den = a + b
    zero = den == 0
    if zero.any():
        den[zero] = 1.0
        num[zero] = 0.0
    return np.divide(num, den, out=num)


INDICES: dict[str, SpectralIndex] = {
    # McFeeters' NDWI threshold is 0; bare fields in aerial imagery sit just above it (NAIP
    # sample: mode ~0.05, water ~0.6), so 0.2 is used, as is common for high-resolution data.
    "ndwi": SpectralIndex("ndwi", ("green", "nir"), lambda g, n: _nd(g, n), 0.2, 1.0, "McFeeters 1996"),
    "mndwi": SpectralIndex("mndwi", ("green", "swir1"), lambda g, s: _nd(g, s), 0.0, 1.0, "Xu 2006"),
    "ndvi": SpectralIndex("ndvi", ("nir", "red"), lambda n, r: _nd(n, r), 0.3, 1.0, "Rouse 1974"),
    "ndbi": SpectralIndex("ndbi", ("swir1", "nir"), lambda s, n: _nd(s, n), 0.0, 1.0, "Zha 2003"),
    "ndsi": SpectralIndex("ndsi", ("green", "swir1"), lambda g, s: _nd(g, s), 0.4, 1.0, "Hall 1995"),
    "nbr": SpectralIndex("nbr", ("nir", "swir2"), lambda n, s: _nd(n, s), 0.1, -1.0, "Key & Benson 2006"),
    "bsi": SpectralIndex(
        "bsi", ("swir1", "red", "nir", "blue"), lambda s, r, n, b: _nd(s + r, n + b), 0.0, 1.0, "Rikimaru 2002"
    ),
}

#: What a user may type, mapped to the index that answers it.
PROMPTS: dict[str, str] = {
    "water": "ndwi", "open water": "mndwi", "vegetation": "ndvi", "green vegetation": "ndvi",
    "built-up": "ndbi", "built up": "ndbi", "urban": "ndbi", "snow": "ndsi", "ice": "ndsi",
    "burned area": "nbr", "burn scar": "nbr", "bare soil": "bsi", "bare": "bsi",
    **{name: name for name in INDICES},
}


def _key(prompt: str) -> str:
    return " ".join(str(prompt).lower().replace("_", " ").split())


class SpectralSegmenter:
    """Spectral-index segmenter implementing :class:`geopix_tiles.Segmenter`.

    ``ramp`` is the index distance from the threshold at which probability saturates.
    """

    band_roles = None
    scaling = "reflectance"
    per_pixel = True  # an index of each pixel's own bands: tiles need no overlap (protocol.default_overlap)

    def __init__(self, tile_size: int = 512, ramp: float = 0.15) -> None:
        self.tile_size = tile_size
        self.ramp = float(ramp)

    def __repr__(self) -> str:
        return f"SpectralSegmenter(tile_size={self.tile_size}, ramp={self.ramp})"

    def check_prompts(self, prompts: Sequence[str]) -> None:
        if not prompts:
            raise InputError("no prompt given; pass at least one --prompt, e.g. --prompt water")
        for p in prompts:
            if not str(p).strip():
                raise InputError("a prompt is empty; pass text such as --prompt water")
            if _key(p) not in PROMPTS:
                known = ", ".join(sorted(PROMPTS))
                raise InputError(f"the spectral model (segment's default) does not know '{p}'; known prompts: {known}; "
                                 "for buildings, roads, clouds or free text use the learned model: add --model default "
                                 "(model='default' in Python)")

    def indices_for(self, prompts: Sequence[str]) -> list[SpectralIndex]:
        self.check_prompts(prompts)
        return [INDICES[PROMPTS[_key(p)]] for p in prompts]

    def band_roles_for(self, prompts: Sequence[str]) -> tuple[str, ...]:
        roles: list[str] = []
        for index in self.indices_for(prompts):
            roles.extend(r for r in index.roles if r not in roles)
        return tuple(roles)

    def predict(self, tiles: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        tiles = np.asarray(tiles, dtype=np.float32)
        roles = self.band_roles_for(prompts)
        if tiles.ndim != 4 or tiles.shape[1] != len(roles):
            raise InputError(f"spectral model expects tiles [B, {len(roles)}, H, W] for roles {roles}, got {tiles.shape}")
        channel = {r: tiles[:, i] for i, r in enumerate(roles)}
        b, _, h, w = tiles.shape
        out = np.empty((b, len(prompts), h, w), dtype=np.float32)
        gain = 0.5 / self.ramp
        for k, index in enumerate(self.indices_for(prompts)):
            value = index.formula(*(channel[r] for r in index.roles))
            slope = np.float32(index.sign * gain)
            value *= slope
            value += np.float32(0.5) - np.float32(index.threshold) * slope
            np.clip(value, 0.0, 1.0, out=out[:, k])
        return out
