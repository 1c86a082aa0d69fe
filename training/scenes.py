"""A labelled scene: pixels readable by window, scaled like the engine, labels per window.

Adapters differ only in where labels come from; reading pixels, scene-wide statistics and
the window geometry are shared here so that every source produces tiles the way the
inference engine (``geopix_tiles.io.scene``) produces them: the same band order, the same
scene-wide 2-98 percentile stretch computed once per scene, nodata set to zero.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from geopix_tiles.errors import InputError
from .pixels import normalise
from .records import Instance

if TYPE_CHECKING:  # pragma: no cover
    from rasterio.windows import Window

__all__ = ["RasterImage", "LabelledScene", "normalise"]


@dataclass
class RasterImage:
    """One image made of one multi-band file or several single-band files of one grid.

    Plain JPG/PNG chips work too (no CRS, identity transform). An alpha band is dropped,
    because the engine never feeds alpha to a model; it is used as the validity mask.
    """

    paths: list[str]
    bands: list[int] | None = None  # 1-based, only for a single multi-band file
    width: int = 0
    height: int = 0
    crs: Any = None
    transform: Any = None
    dtype: str = "uint8"
    nodata: float | None = None
    low: list[float] = field(default_factory=list)
    high: list[float] = field(default_factory=list)
    _band_plan: list[tuple[str, int]] = field(default_factory=list)
    _alpha: tuple[str, int] | None = None

    @classmethod
    def open(cls, paths: str | Path | Sequence[str | Path], bands: Sequence[int] | None = None) -> "RasterImage":
        import rasterio
        from rasterio.enums import ColorInterp
        from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

        plist = [str(paths)] if isinstance(paths, (str, Path)) else [str(p) for p in paths]
        if not plist:
            raise InputError("an image source needs at least one raster path")
        plan: list[tuple[str, int]] = []
        alpha = None
        ref = None
        for p in plist:
            if not Path(p).exists():
                raise InputError(f"image '{p}' does not exist; check the path in the data source")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    with rasterio.open(p) as ds:
                        meta = (ds.width, ds.height, ds.crs, ds.transform, ds.dtypes[0], ds.nodata)
                        interp = list(ds.colorinterp)
                        count = ds.count
            except RasterioIOError as exc:
                raise InputError(f"'{p}' is not a raster GDAL can open; pass a GeoTIFF, PNG or JPG") from exc
            if ref is None:
                ref = meta
            elif meta[:2] != ref[:2] or (meta[2] != ref[2]) or meta[3] != ref[3]:
                raise InputError(f"'{p}' is not on the same grid as '{plist[0]}'; band files of one image must align")
            chosen = list(bands) if (bands and len(plist) == 1) else list(range(1, count + 1))
            for b in chosen:
                if not 1 <= b <= count:
                    raise InputError(f"band {b} is out of range for '{p}' (1..{count}); fix 'bands'")
                if interp[b - 1] == ColorInterp.alpha and not bands:
                    alpha = (p, b)
                    continue
                plan.append((p, b))
        assert ref is not None
        img = cls(paths=plist, bands=list(bands) if bands else None, width=ref[0], height=ref[1],
                  crs=ref[2], transform=ref[3], dtype=ref[4], nodata=ref[5], _band_plan=plan, _alpha=alpha)
        img._compute_stats()
        return img

    @property
    def count(self) -> int:
        return len(self._band_plan)

    @property
    def georeferenced(self) -> bool:
        from affine import Affine

        return self.crs is not None and self.transform is not None and self.transform != Affine.identity()

    def _compute_stats(self) -> None:
        """Scene-wide percentiles through the engine so training and inference agree."""
        from geopix_tiles.io import scene as engine_scene

        low: list[float] = []
        high: list[float] = []
        by_file: dict[str, list[int]] = {}
        for p, b in self._band_plan:
            by_file.setdefault(p, []).append(b)
        stats: dict[tuple[str, int], tuple[float, float]] = {}
        for p, idx in by_file.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sc = engine_scene.open_scene(p, allow_no_georef=True)
            sc = engine_scene.select_bands(sc, idx)
            sc = engine_scene.compute_statistics(sc)
            for j, b in enumerate(idx):
                stats[(p, b)] = (float(sc.low[j]), float(sc.high[j]))
        for key in self._band_plan:
            lo, hi = stats[key]
            low.append(lo)
            high.append(hi)
        self.low, self.high = low, high

    def read_raw(self, win: "Window") -> tuple[np.ndarray, np.ndarray | None]:
        """``(pixels [C, h, w] native dtype, valid [h, w] or None)`` of one rasterio Window."""
        import rasterio
        from rasterio.errors import NotGeoreferencedWarning
        chans: list[np.ndarray] = []
        valid: np.ndarray | None = None
        by_file: dict[str, list[int]] = {}
        for p, b in self._band_plan:
            by_file.setdefault(p, []).append(b)
        out: dict[tuple[str, int], np.ndarray] = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            for p, idx in by_file.items():
                with rasterio.open(p) as ds:
                    data = ds.read(idx, window=win)
                    masks = ds.read_masks(idx, window=win)
                    v = np.all(masks > 0, axis=0)
                    if self._alpha is not None and self._alpha[0] == p:
                        v &= ds.read(self._alpha[1], window=win) > 0
                    if np.issubdtype(data.dtype, np.floating):
                        v &= np.all(np.isfinite(data), axis=0)
                valid = v if valid is None else (valid & v)
                for j, b in enumerate(idx):
                    out[(p, b)] = data[j]
        chans = [out[k] for k in self._band_plan]
        if valid is not None and valid.all():
            valid = None
        return np.stack(chans), valid

    def read(self, win: "Window") -> tuple[np.ndarray, np.ndarray | None]:
        """Float32 ``[C, h, w]`` in [0, 1] scaled as the engine does, and the valid mask."""
        raw, valid = self.read_raw(win)
        return normalise(raw, self.low, self.high, valid), valid

    def window_transform(self, win: "Window") -> Any:
        from affine import Affine
        from rasterio import windows

        return windows.transform(win, self.transform if self.transform is not None else Affine.identity())


class LabelledScene:
    """Base class: an image plus labels that can be cut to any window."""

    name: str = "scene"
    image: RasterImage
    source: str = ""
    licence: str = ""
    report: dict[str, Any]

    def instances(self, win: "Window") -> list[Instance]:  # pragma: no cover - abstract
        raise NotImplementedError

    def annotated_classes(self) -> list[str] | None:
        """Classes labelled *everywhere* in the scene, or ``None`` when unknown.

        A class listed here but absent from a window is a true negative, which is what lets
        training ask for it and expect an empty mask. Sources whose labels cover only some
        objects (one roof of many) say ``exhaustive: false`` and return ``None``.
        """
        return None

    @property
    def height(self) -> int:
        return self.image.height

    @property
    def width(self) -> int:
        return self.image.width
