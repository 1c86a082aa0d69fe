"""What ground resolution a learned model sees, while every output stays on the scene's own grid.

A learned model finds objects at the sizes it was trained on. The default checkpoint learned
mostly from ~1 m imagery (Dubai): on xBD Joplin (QuickBird, 0.45 m, never seen) it paints only
the brightest roof parts at the scene's own resolution (building IoU 0.16) and finds whole roofs
when shown the scene at 0.9 m (0.30; ``benchmarks/resolution.py``). So a run may show the model
each tile at another resolution: :class:`ResampledSegmenter` reads tiles ``factor`` times larger
in scene pixels, shrinks them to the model's tile (bilinear with antialiasing: pixel means),
predicts, and stretches the probabilities back (bilinear). The engine's grid, blending, nodata,
raster and polygons are those of the scene, as without it.

``resolution`` everywhere (``segment``, ``ask``/``chat``, ``describe``, the accessor) is a number
of metres per pixel, ``"native"`` or ``"auto"``: a checkpoint may declare
``config.extra["working_resolution_m"] = [finer_than, read_at, classes]`` (the default model:
building and road prompts on scenes finer than 0.7 m are seen at 0.9 m; vegetation, water, bare
land and clouds, which it paints better at the scene's own resolution there, are not), never
coarser than keeps the scene's shorter side one model tile.

The other side: ``config.extra["coarsest_resolution_m"] = [coarser_than, read_at, max_scene_factor,
max_upsample]`` (the default model: ``[6, 5, 12, 2]``). Scenes coarser than ``coarser_than`` and at most
``max_scene_factor`` times ``read_at`` are shown, for every prompt, at ``read_at`` but never more than
``max_upsample`` times finer than they are: the default model shows 6-10 m scenes (Sentinel-2) at 5 m
and 10-60 m ones (Landsat) at half their pixel size; a 300 m scene stays native, where its Landsat-7
sample's clouds came out worse shown at 37.5 m (IoU 0.20 -> 0.13 against a weak label). The default
model learned water and vegetation from 5 m NAIP chips; on the held-out NAIP 2020 date averaged down
it found water with IoU 0.62 at 10 m, 0.46 at 15 m and **0.00 at 30 m** against NDWI natively, more
when shown finer (``benchmarks/results/coarse_resolution.md``). Why the 2x cap: on Landsat over
Pucallpa (rain forest, ~90 m) shown 3x finer, the model painted a third of the forest as water
(vegetation IoU 0.90 -> 0.64), while 2x finer was better than native (0.90 -> 0.93;
``benchmarks/results/landsat_pucallpa.md``). It costs tiles: a scene shown 2x finer is 4 times as
many. The tile presence check is off on such views (:func:`shows_finer`): fitted on the model's
own resolutions, it vetoed most of the real water on them.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..errors import InputError
from ..io.ground import pixel_size_m
from .protocol import SegmenterWrapper

__all__ = ["ResampledSegmenter", "check_resolution", "coarsest_resolution", "model_factor", "prompt_classes",
           "prompt_readings", "coarse_readings", "class_coarsest", "coarse_limit", "coarse_caveat", "coarse_note",
           "resize_tiles", "resolve_resolution", "shown_classes", "shown_segmenter", "shows_finer",
           "working_resolution"]


def check_resolution(resolution: Any) -> None:
    if not isinstance(resolution, (int, float)) or isinstance(resolution, bool) or not resolution > 0 \
            or not math.isfinite(resolution):
        raise InputError(f"--resolution {resolution!r} must be a positive number of metres per pixel (e.g. 0.9), "
                         "'auto' or 'native'")


def _keyword(resolution: Any) -> str | None:
    if resolution is None:
        return "native"
    if isinstance(resolution, str) and resolution.strip().lower() in ("auto", "native"):
        return resolution.strip().lower()
    return None


def working_resolution(model: Any) -> tuple[float, float, tuple[str, ...] | None] | None:
    """``(finer_than, read_at, classes)`` that a model (or its segmenter) declares, else None.

    ``classes`` (None: every prompt) are the classes whose prompts are shown at ``read_at``; the
    others stay at the scene's resolution.
    """
    config = getattr(getattr(model, "model", model), "config", None)
    value = (getattr(config, "extra", None) or {}).get("working_resolution_m") if config is not None else None
    if not value:
        return None
    classes = tuple(str(c) for c in value[2]) if len(value) > 2 and value[2] else None
    return float(value[0]), float(value[1]), classes


def coarsest_resolution(model: Any) -> tuple[float, float, float, float] | None:
    """``(coarser_than, read_at, max_scene_factor, max_upsample)`` that a model (or its segmenter) declares, else None.

    A scene of ``coarser_than`` to ``read_at * max_scene_factor`` metres is shown at ``read_at``, but
    never more than ``max_upsample`` times finer than it is: upsampled further, smooth dark rain forest
    (Landsat over Pucallpa, 3x) turned into water (``benchmarks/landsat_pucallpa.py``). Checkpoints
    that predate the cap (three numbers) show such scenes at ``read_at`` whatever the factor.
    """
    config = getattr(getattr(model, "model", model), "config", None)
    value = (getattr(config, "extra", None) or {}).get("coarsest_resolution_m") if config is not None else None
    if not value:
        return None
    return (float(value[0]), float(value[1]), float(value[2]) if len(value) > 2 else 12.0,
            float(value[3]) if len(value) > 3 else float("inf"))


def shown_classes(resolution: Any, model: Any) -> tuple[str, ...] | None:
    """Classes whose prompts a resolution applies to: the model's own list for ``auto``, else every prompt."""
    if _keyword(resolution) != "auto":
        return None
    working = working_resolution(model)
    return working[2] if working else None


def _tile_size(model: Any) -> int | None:
    size = getattr(model, "tile_size", None) or getattr(getattr(getattr(model, "model", model), "config", None),
                                                         "tile_size", None)
    return int(size) if size else None


def resolve_resolution(resolution: Any, transform, crs, model: Any = None,
                       shape: tuple[int, int] | None = None) -> float | None:
    """The metres per pixel the model should see the scene at, or None for the scene's own.

    A bad ``resolution`` raises :class:`InputError` whatever the model (so callers can check it
    before loading one); ``"auto"`` reads the model's :func:`working_resolution`.
    """
    word = _keyword(resolution)
    if word == "native":
        return None
    if word == "auto":
        working, coarse = working_resolution(model), coarsest_resolution(model)
        native = pixel_size_m(transform, crs) if (working or coarse) else None
        if native is None:
            return None
        if coarse is not None and coarse[0] < native <= coarse[1] * coarse[2]:
            return max(coarse[1], native / coarse[3])  # a coarse scene, shown finer (every prompt)
        if working is None:
            return None
        finer_than, read_at, _ = working
        if native >= finer_than:
            return None  # coarse enough already
        tile = _tile_size(model)
        if shape is not None and tile and min(shape) * native / read_at < tile:
            # a small scene seen that coarse would be less than one tile, which the model has never
            # seen (a 40 m forest at 0.1 m became 44 px and came back empty): as coarse as fills one
            read_at = native * min(shape) / tile
            if read_at < native * 1.05:
                return None
        return read_at
    if isinstance(resolution, str):
        try:
            resolution = float(resolution)
        except ValueError:
            pass
    check_resolution(resolution)
    if pixel_size_m(transform, crs) is None:
        raise InputError("--resolution needs a scene with a CRS in known units; this one has none "
                         "(pass --resolution native)")
    return float(resolution)


def _factor(read_at: float | None, transform, crs) -> float:
    if read_at is None:
        return 1.0
    factor = read_at / pixel_size_m(transform, crs)
    return 1.0 if abs(factor - 1.0) < 0.02 else factor


def model_factor(resolution: Any, transform, crs, model: Any = None, shape: tuple[int, int] | None = None) -> float:
    """Scene pixels per model pixel (> 1: the model sees the scene coarser); 1.0 on the scene's own grid."""
    return _factor(resolve_resolution(resolution, transform, crs, model, shape), transform, crs)


def shows_finer(resolution: Any, transform, crs, model: Any = None, shape: tuple[int, int] | None = None) -> bool:
    """Whether the model is shown the scene finer than it is (upsampled): no tile presence check then."""
    return model_factor(resolution, transform, crs, model, shape) < 1.0


def shown_segmenter(segmenter: Any, resolution: Any, transform, crs, shape: tuple[int, int],
                    overlap: int | None, prompts: Sequence[str] | None = None) -> tuple[Any, int | None, float | None]:
    """``(segmenter, overlap, read_at)`` for a run at ``resolution`` (``segment`` and the accessor).

    Unchanged on the scene's own grid, and when none of ``prompts`` is of a class the view is for
    (``auto`` on a fine scene asked only for vegetation: the run is exactly the native one, same
    tiles and overlap; a wrapper would have handed the model tiles ``factor`` times its own size);
    else a :class:`ResampledSegmenter` and, when the caller gave none, the model's overlap (at most a
    quarter tile, as conversations use) scaled to it.
    """
    read_at = resolve_resolution(resolution, transform, crs, segmenter, shape)
    factor = _factor(read_at, transform, crs)
    if factor == 1.0:
        return segmenter, overlap, None
    classes = None if factor < 1.0 else shown_classes(resolution, segmenter)  # a coarse scene: every prompt
    if prompts is not None and classes is not None and \
            not any(c in classes for c in prompt_classes(segmenter, list(prompts))):
        return segmenter, overlap, None
    if overlap is None:
        from .protocol import default_overlap  # noqa: PLC0415

        tile = int(getattr(segmenter, "tile_size", 512) or 512)
        overlap = int(round(min(default_overlap(segmenter), tile // 4) * factor))
    return ResampledSegmenter(segmenter, factor, classes), overlap, read_at


def resize_tiles(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float32 ``[B, C, H, W]`` -> ``[B, C, *size]``: pixel means when shrinking, bilinear when growing."""
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415

    if tuple(x.shape[-2:]) == tuple(size):
        return np.ascontiguousarray(x, dtype=np.float32)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    with torch.inference_mode():
        out = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=shrink)
    return out.numpy()


def prompt_classes(model: Any, prompts: Sequence[str]) -> list[str | None]:
    """The class each prompt means, from the model's text bank (None where the model cannot tell)."""
    fn = getattr(getattr(model, "model", model), "prompt_classes", None)
    return list(fn(list(prompts))) if callable(fn) else [None] * len(prompts)


def prompt_readings(model: Any, prompts: Sequence[str]) -> list[str]:
    """One line for each prompt a learned model reads as something other than itself, for the run's summary.

    Why: free text is matched to the nearest phrase of the model's text bank, so "cars" paints roads (the
    nearest class; the model has no cars) and "ships" paints nothing (nearest to a concept it was taught to
    leave empty). A user should see that, not take road polygons for cars. Prompts that are bank phrases
    ("lakes", "rooftops") need no line; a model without a bank (spectral) gives none.
    """
    net = getattr(model, "model", model)
    config = getattr(net, "config", None)
    phrases = getattr(config, "text_bank_phrases", None)
    if not phrases or not callable(getattr(net, "prompt_classes", None)):
        return []
    known = {str(x).lower() for x in phrases}
    lines = []
    for p, c in zip(prompts, net.prompt_classes(list(prompts))):
        if c is not None and str(p).strip().lower() in known:
            continue
        if c is None:
            lines.append(f"'{p}' is none of the model's classes: it is nearest to things the model was taught to "
                         "leave empty, so expect little or nothing")
        else:
            lines.append(f"'{p}' is not a phrase the model knows: it is read as {c} (the nearest of its classes)")
    return lines


def class_coarsest(model: Any) -> dict[str, float]:
    """``{class: metres}``: the coarsest pixel each class was learned at (``config.extra["class_coarsest_m"]``)."""
    net = getattr(model, "model", model)
    extra = getattr(getattr(net, "config", None), "extra", None) or {}
    return {str(c): float(m) for c, m in (extra.get("class_coarsest_m") or {}).items()}


def coarse_limit(model: Any, name: str | None, pixel_m: float | None) -> float | None:
    """The coarsest pixel (m) class ``name`` was learned at when ``pixel_m`` is coarser than it, else None."""
    limit = class_coarsest(model).get(str(name)) if name is not None else None
    return limit if limit is not None and pixel_m is not None and pixel_m > limit * 1.02 else None


def coarse_caveat(name: str, limit_m: float, seen_m: float, what: str) -> str:
    """ "I learned buildings from imagery of 1.5 m per pixel or finer and see this view at 5.0 m": the words of a
    chat reply's caveat (``what`` "view") and of a ``describe`` sentence's (``what`` "scene")."""
    at = f"{seen_m:,.0f}" if seen_m >= 10 else f"{seen_m:.1f}"
    return f"I learned {name}s from imagery of {limit_m:g} m per pixel or finer and see this {what} at {at} m"


def coarse_note(name: str, pixel_m: float, limit_m: float) -> str:
    """The words for a class asked of pixels coarser than it was learned at (summary lines and replies)."""
    evidence = "xBD Joplin shown at 2 m: 3-4x the labelled buildings painted"
    if name != "building":  # roads have no labels to measure: they share the buildings' limit by object scale
        evidence = f"measured for buildings, whose scale {name}s share: {evidence}"
    return (f"the model learned {name}s from imagery of {limit_m:g} m per pixel or finer; coarser, its {name} masks "
            f"are unreliable ({evidence}), so treat them as a rough guess")


def coarse_readings(model: Any, prompts: Sequence[str], pixel_m: Sequence[float | None]) -> list[str]:
    """One line for each prompt whose class the model sees at a coarser pixel (``pixel_m``, per prompt) than it learned.

    Why: on the 5 m NAIP sample "buildings" painted 34 bright bare patches and one farmstead, and on xBD Joplin
    shown at 2 m 58-68 % of the image (17.7 % labelled): a run still paints what was asked, and says so.
    """
    if not class_coarsest(model):
        return []
    lines = []
    for p, c, m in zip(prompts, prompt_classes(model, prompts), pixel_m):
        limit = coarse_limit(model, c, m)
        if limit is not None:
            at = f"{m:,.0f}" if m >= 10 else f"{m:.2g}"  # "300 m", not "3e+02 m"
            lines.append(f"'{p}' at {at} m per pixel: {coarse_note(c, m, limit)}")
    return lines


class ResampledSegmenter(SegmenterWrapper):
    """A segmenter shown each tile at ``factor`` times its scene pixel size (see the module docstring).

    Its ``tile_size`` is the inner model's times ``factor`` in scene pixels, so each tile the model
    sees is its own size; everything else is the inner segmenter's. With ``classes``, only prompts
    meaning one of them are shown shrunk; the others see the same tiles at the scene's resolution.
    """

    def __init__(self, inner: Any, factor: float, classes: Sequence[str] | None = None) -> None:
        if not factor > 0:
            raise ValueError(f"factor {factor!r} must be > 0")
        super().__init__(inner)
        self.factor = float(factor)
        self.classes = None if classes is None else tuple(classes)
        self.tile_size = max(16, int(round(int(getattr(inner, "tile_size", 512) or 512) * self.factor)))
        self._split: dict[tuple[str, ...], list[bool]] = {}

    def shown(self, prompts: Sequence[str]) -> list[bool]:
        """Which prompts are shown shrunk (all of them without ``classes``)."""
        key = tuple(prompts)
        if key not in self._split:
            if self.classes is None:
                self._split[key] = [True] * len(key)
            else:
                self._split[key] = [c in self.classes for c in prompt_classes(self.inner, key)]
        return self._split[key]

    def __repr__(self) -> str:  # the resume journal fingerprints models by repr
        return f"ResampledSegmenter({self.inner!r}, factor={self.factor:.6g}, classes={self.classes})"

    def model_size(self, h: int, w: int) -> tuple[int, int]:
        return max(8, int(round(h / self.factor))), max(8, int(round(w / self.factor)))

    def predict(self, tiles: np.ndarray, prompts: Sequence[str]) -> np.ndarray:
        h, w = tiles.shape[-2:]
        shown = self.shown(prompts)
        small = [p for p, s in zip(prompts, shown) if s]
        same = [p for p, s in zip(prompts, shown) if not s]
        if not same:
            probs = self.inner.predict(resize_tiles(tiles, self.model_size(h, w)), list(prompts))
            return np.clip(resize_tiles(probs, (h, w)), 0.0, 1.0)
        if not small:
            return self.inner.predict(tiles, list(prompts))
        out = np.empty((tiles.shape[0], len(prompts), h, w), np.float32)
        idx = np.flatnonzero(shown)
        out[:, idx] = np.clip(resize_tiles(self.inner.predict(resize_tiles(tiles, self.model_size(h, w)), small),
                                           (h, w)), 0.0, 1.0)
        out[:, np.flatnonzero(~np.asarray(shown))] = self.inner.predict(tiles, same)
        return out
