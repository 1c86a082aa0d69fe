"""The contract between the engine and any model.

The engine knows nothing about models beyond this: which band roles a segmenter needs,
how it wants pixels scaled, its preferred tile size, and ``predict``. Keeping the contract
this narrow is what lets a training-free spectral index, a closed-set network and the
GeoPix language model all run through the same tiling, blending and writing code.
"""
from __future__ import annotations

from typing import Literal, Protocol, Sequence, runtime_checkable

import numpy as np

#: How the engine scales pixels before ``predict``:
#: ``"reflectance"`` - raw values cast to float32 (scale-free indices such as NDVI want this);
#: ``"unit"`` - scene-wide percentile stretch of each band to [0, 1], computed once per scene
#: (never per tile: per-tile stretching makes seams).
Scaling = Literal["reflectance", "unit"]


@runtime_checkable
class Segmenter(Protocol):
    """What the engine needs from a model.

    Attributes
    ----------
    band_roles:
        Roles of the input channels, in the order ``predict`` expects them, e.g.
        ``("green", "nir")`` or ``("red", "green", "blue")``. The engine resolves roles to
        scene bands from band descriptions or the user's ``--band-roles``. ``None`` means
        "whatever bands the user selected, in that order".
    tile_size:
        Preferred tile edge in pixels; the user's ``--tile`` overrides it.
    scaling:
        See :data:`Scaling`.
    """

    band_roles: tuple[str, ...] | None
    tile_size: int
    scaling: Scaling

    def check_prompts(self, prompts: Sequence[str]) -> None:
        """Raise :class:`geopix_tiles.errors.InputError` for prompts it cannot answer."""

    def predict(self, tiles: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        """Map float32 tiles ``[B, C, H, W]`` to float32 probabilities ``[B, P, H, W]`` in [0, 1].

        One output channel per prompt, in prompt order. Pixels the engine marks as nodata
        are zero in ``tiles`` and ignored in the output.
        """


def roles_for(segmenter: Segmenter, prompts: Sequence[str]) -> tuple[str, ...] | None:
    """Band roles ``segmenter`` needs for ``prompts``.

    A segmenter whose inputs depend on the prompts (a spectral index needs NIR for
    vegetation but SWIR for built-up) may define ``band_roles_for(prompts)``; everything
    else just has a fixed ``band_roles``.
    """
    fn = getattr(segmenter, "band_roles_for", None)
    return tuple(fn(prompts)) if callable(fn) else segmenter.band_roles
