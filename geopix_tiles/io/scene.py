"""Opening a scene: validation, band roles, nodata, scene-wide statistics, windowed reads.

Everything that can be wrong with a scene is found here, before any output is created, so
bad input fails fast with a one-line message and leaves nothing behind. Statistics for
scaling are computed once per scene from a bounded sample (overviews when present, else an
even grid of windows), because per-tile stretching makes visible seams and a full pass
would double the I/O of a huge scene.
"""
from __future__ import annotations

import math
import os
import threading
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.windows import Window

from ..errors import InputError, ReadError

#: Serialises the engine's own GDAL reads and writes across its threads. GDAL's block cache is
#: global: a reader thread that needs room may flush a dirty block of the output raster while
#: the writer thread writes or closes it, which crashed (segfault, "error while writing a
#: dirty block") under load. Model and numpy work still overlap with I/O.
GDAL_IO_LOCK = threading.RLock()

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")

#: Band-description spellings accepted for each role (matched case-insensitively).
ROLE_ALIASES: dict[str, tuple[str, ...]] = {
    "coastal": ("coastal", "coastal aerosol", "aerosol", "b01", "b1"),
    "blue": ("blue", "b", "b02", "b2"),
    "green": ("green", "g", "b03", "b3"),
    "red": ("red", "r", "b04", "b4"),
    "rededge": ("rededge", "red edge", "red-edge", "re", "b05", "b5"),
    "nir": ("nir", "near infrared", "near-infrared", "nir1", "b08", "b8"),
    "swir1": ("swir1", "swir 1", "swir-1", "swir", "b11"),
    "swir2": ("swir2", "swir 2", "swir-2", "b12"),
}
_ALIAS_TO_ROLE = {alias: role for role, aliases in ROLE_ALIASES.items() for alias in aliases}
_COLORINTERP_ROLE = {ColorInterp.red: "red", ColorInterp.green: "green", ColorInterp.blue: "blue"}


def parse_band_roles(text: str | Mapping[str, int] | None) -> dict[str, int]:
    """``"red=3,green=2,nir=4"`` (or a mapping) -> ``{"red": 3, "green": 2, "nir": 4}``."""
    if text is None or text == "":
        return {}
    if isinstance(text, Mapping):
        items = list(text.items())
    else:
        items = []
        for part in str(text).split(","):
            role, sep, index = part.partition("=")
            if not sep or not role.strip() or not index.strip():
                raise InputError(f"band roles '{text}' are not ROLE=INDEX pairs; write e.g. --band-roles red=3,green=2,blue=1,nir=4")
            items.append((role, index))
    roles: dict[str, int] = {}
    for role, index in items:
        name = _ALIAS_TO_ROLE.get(str(role).strip().lower(), str(role).strip().lower())
        try:
            roles[name] = int(index)
        except (TypeError, ValueError):
            raise InputError(f"band index '{index}' for role '{role}' is not an integer; write e.g. --band-roles {role}=4") from None
    return roles


def parse_bands(value: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"3,2,1"`` or ``[3, 2, 1]`` -> ``(3, 2, 1)`` (1-based, like rasterio)."""
    if value is None or value == "" or (not isinstance(value, str) and len(value) == 0):
        return None
    parts = value.split(",") if isinstance(value, str) else list(value)
    try:
        return tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise InputError(f"bands '{value}' are not 1-based band numbers; write e.g. --bands 3,2,1") from None


@dataclass(frozen=True, eq=False)
class Scene:
    """A validated scene and the bands the segmenter will see.

    Immutable: choosing bands or computing statistics gives a new Scene
    (:func:`select_bands`, :func:`compute_statistics`, or both at once with :func:`prepare_scene`),
    so a Scene handed to a reader thread or a dask task cannot change under it.
    """

    #: the file, URL or /vsi path; None for an array held in memory or in dask (nothing to reopen)
    path: str | None
    width: int
    height: int
    count: int
    dtype: str
    crs: rasterio.crs.CRS | None
    transform: Affine
    nodata: float | None
    descriptions: tuple[str | None, ...]
    block_height: int
    band_indexes: tuple[int, ...] = ()
    has_mask: bool = False
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    @property
    def name(self) -> str:
        """How messages name the scene: its file name, or "the DataArray" for an in-memory array."""
        return Path(self.path).name if self.path is not None else "the DataArray"

    def option(self, flag: str) -> str:
        """A fix written the way the caller spells it: ``--band-roles`` on the CLI, ``band_roles=`` in Python."""
        return flag if self.path is not None else flag.lstrip("-").replace("-", "_") + "="


def open_scene(path: str | os.PathLike, *, allow_no_georef: bool = False) -> Scene:
    """Open and validate ``path`` (a file, a URL or a ``/vsi`` path); raise :class:`InputError` for anything unusable."""
    from .remote import configure_gdal_http, gdal_path, is_remote, remote_error  # noqa: PLC0415

    from .stac import is_stac, item_vrt  # noqa: PLC0415

    remote = backed_by_remote = is_remote(path)
    stac_item = None
    if is_stac(path):  # a STAC Item: its role-named assets stacked as one (local) VRT on their grid
        path, stac_item = item_vrt(str(path))
        remote = False
    if remote:
        configure_gdal_http()
        path = gdal_path(path)
    p = Path(path)
    if not remote and not p.exists() and "://" not in str(path):
        raise InputError(f"scene '{path}' does not exist; check the path")
    if not remote and p.is_dir():
        raise InputError(f"scene '{path}' is a directory, not a raster; pass a GeoTIFF file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            try:
                src = rasterio.open(path)
            except RasterioError as exc:
                if remote:
                    raise InputError(remote_error(str(path), exc)) from None
                raise
        with src:
            if src.count < 1:
                raise InputError(f"'{path}' has no raster bands; pass a GeoTIFF with image bands")
            dtype = src.dtypes[0]
            if dtype not in SUPPORTED_DTYPES:
                raise InputError(f"'{path}' has pixel type {dtype}; convert it to uint8, uint16, int16 or float32 (e.g. gdal_translate -ot Float32)")
            georef = src.crs is not None and src.transform != Affine.identity()
            if not georef and not allow_no_georef:
                raise InputError(
                    f"'{path}' has no CRS or geotransform, so outputs could not be georeferenced; "
                    "georeference it (gdal_translate -a_srs/-a_ullr) or pass --allow-no-georef for pixel coordinates"
                )
            flags = src.mask_flag_enums
            return Scene(
                path=str(path),
                width=src.width,
                height=src.height,
                count=src.count,
                dtype=dtype,
                crs=src.crs,
                transform=src.transform,
                nodata=src.nodata,
                descriptions=tuple(src.descriptions),
                block_height=int(src.block_shapes[0][0]),
                extra={
                    "flags": flags,
                    "colorinterp": tuple(src.colorinterp),
                    "overviews": src.overviews(1),
                    "remote": bool(backed_by_remote or "/vsicurl/" in _vrt_text(path)),
                    "stac_item": stac_item,
                },
            )
    except InputError:
        raise
    except RasterioIOError as exc:
        raise InputError(f"'{path}' is not a raster GDAL can open, or is corrupt or truncated ({_short(exc)}); pass a valid GeoTIFF") from None
    except RasterioError as exc:
        raise InputError(f"'{path}' could not be opened as a raster ({_short(exc)}); pass a valid GeoTIFF") from None


def _vrt_text(path: str) -> str:
    """The XML of a local VRT (whose sources may be remote), else ''."""
    if not str(path).lower().endswith(".vrt") or not Path(path).is_file():
        return ""
    try:
        return Path(path).read_text(errors="ignore")[:1_000_000]
    except OSError:
        return ""


def is_remote_scene(scene: "Scene") -> bool:
    """A scene whose bytes come over the network (a URL, or a VRT of remote assets)."""
    from .remote import is_remote  # noqa: PLC0415

    return is_remote(scene.path) or bool(scene.extra.get("remote"))


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def resolve_bands(
    scene: Scene,
    needed_roles: Sequence[str] | None,
    bands: Sequence[int] | None = None,
    band_roles: Mapping[str, int] | None = None,
) -> tuple[int, ...]:
    """Pick the 1-based band indexes the segmenter gets, in its order.

    ``bands`` (``--bands``) is an explicit order and wins; otherwise each needed role is
    looked up in ``band_roles`` (``--band-roles``), then the band descriptions, then the
    colour interpretation (red/green/blue only). A single-band (panchromatic) scene serves
    as red, green and blue at once.
    """
    for b in list(bands or ()) + list((band_roles or {}).values()):
        if not 1 <= int(b) <= scene.count:
            raise InputError(f"band {b} is out of range: '{scene.name}' has bands 1..{scene.count}; "
                             f"fix {scene.option('--bands')}/{scene.option('--band-roles')}")
    if needed_roles is None:
        return tuple(bands) if bands else tuple(range(1, scene.count + 1))
    needed = [r.lower() for r in needed_roles]
    if bands:
        if len(bands) != len(needed):
            raise InputError(
                f"{scene.option('--bands')} gives {len(bands)} band(s) but the segmenter needs {len(needed)} "
                f"({', '.join(needed)}); pass exactly {len(needed)} bands in that order, or use {scene.option('--band-roles')}"
            )
        return tuple(int(b) for b in bands)
    found: dict[str, int] = {}
    for i, desc in enumerate(scene.descriptions, start=1):
        role = _ALIAS_TO_ROLE.get((desc or "").strip().lower())
        if role and role not in found:
            found[role] = i
    for i, ci in enumerate(scene.extra.get("colorinterp", ()), start=1):
        role = _COLORINTERP_ROLE.get(ci)
        if role and role not in found:
            found[role] = i
    found.update(band_roles or {})
    missing = [r for r in needed if r not in found]
    if missing and scene.count == 1 and not band_roles and set(needed) <= {"red", "green", "blue"}:
        # a panchromatic (single grey band) scene: the grey value in every colour band, which is
        # what an RGB model trained with grey augmentation expects
        return (1,) * len(needed)
    if missing:
        if scene.path is not None:
            hint = "--band-roles " + ",".join(f"{r}={i}" for i, r in enumerate(needed, start=1))
        else:
            hint = "band_roles={" + ", ".join(f"'{r}': {i}" for i, r in enumerate(needed, start=1)) + "}"
        raise InputError(
            f"the segmenter needs band role(s) {', '.join(missing)} but '{scene.name}' does not describe them; "
            f"pass {hint} with the right band numbers"
        )
    return tuple(found[r] for r in needed)


def select_bands(scene: Scene, band_indexes: Sequence[int]) -> Scene:
    """Record the chosen bands and whether reading needs a validity mask."""
    flags = scene.extra.get("flags") or [[MaskFlags.all_valid]] * scene.count
    has_mask = any(flags[b - 1] != [MaskFlags.all_valid] for b in band_indexes) or scene.dtype.startswith("float")
    return replace(scene, band_indexes=tuple(band_indexes), has_mask=has_mask)


def statistics_windows(height: int, width: int, max_windows: int = 64) -> list[Window]:
    """The even grid of windows scene-wide statistics are sampled from (when there are no overviews).

    One plan for files and arrays alike, so ``segment`` and ``DataArray.geopix.segment`` scale
    a scene with the same numbers.
    """
    n = max(1, int(math.sqrt(max_windows)))
    size = max(1, min(256, height // n or 1, width // n or 1))
    size = min(max(size, 64), height, width)
    ys = np.linspace(0, height - size, n).astype(int)
    xs = np.linspace(0, width - size, n).astype(int)
    return [Window(int(x), int(y), size, size) for y in sorted(set(ys)) for x in sorted(set(xs))]


#: the stretch's dark end is at most this share of its bright end (non-negative bands): a scene that is
#: really pale and flat (white desert, salt flats, snow) keeps looking pale instead of being blown up to
#: full contrast, which turned the grain of a white Dubai desert into "vegetation" on a fifth of it. It
#: barely acts on the training scenes (their 2 % / 98 % ratios are below 0.5 but the blue band of one
#: Dubai image, 0.53, and of one NAIP date, 0.507) and so needed no retraining; a veil of haze strong
#: enough to push the ratio above it is stretched less than before (MODEL_CARD.md): ``stretch="full"``
#: (segment, ask, chat, describe) undoes such a veil.
MAX_LOW_SHARE = 0.5
#: the ``stretch`` of ``segment``, ``ask``, ``chat`` and ``describe``: the cap on the dark end each choice applies
STRETCHES = {"auto": MAX_LOW_SHARE, "full": None}


def stretch_cap(stretch: str) -> float | None:
    """The ``max_low_share`` of a ``stretch`` name, or a one-line :class:`InputError` naming the choices."""
    if stretch not in STRETCHES:
        raise InputError(f"--stretch '{stretch}' is not one of {', '.join(STRETCHES)}; use auto (default) or full")
    return STRETCHES[stretch]


def percentile_stats(samples: Sequence[np.ndarray], bands: int, low_pct: float = 2.0,
                     high_pct: float = 98.0, max_low_share: float | None = MAX_LOW_SHARE) -> tuple[np.ndarray, np.ndarray]:
    """Per-band ``(low, high)`` percentiles of valid ``[C, N]`` samples (0/1 when there are none),
    the low one at most ``max_low_share`` of the high one (``None``: the plain percentiles).

    Same numbers as ``np.percentile(..., method="linear")``, but band by band in the samples'
    own dtype, and for 8/16-bit integers from a histogram: a scene's 12 M sampled values no
    longer become a 100 MB float64 copy plus a sorted one (the largest allocation of a run).
    """
    low, high = np.zeros(bands), np.ones(bands)
    if samples and sum(a.shape[1] for a in samples):
        for b in range(bands):
            values = np.concatenate([a[b] for a in samples])
            low[b], high[b] = _percentiles(values, (low_pct, high_pct))
    if max_low_share is not None:
        low = np.where((low > 0) & (high > 0), np.minimum(low, max_low_share * high), low)
    high = np.where(high > low, high, low + 1.0)
    return low.astype(np.float32), high.astype(np.float32)


def _percentiles(values: np.ndarray, pcts: tuple[float, float]) -> tuple[float, float]:
    if values.dtype.kind in "ui" and values.dtype.itemsize <= 2:
        lo = int(values.min())
        counts = np.cumsum(np.bincount((values.astype(np.int64) - lo) if lo else values, minlength=1))
        n = int(counts[-1])
        out = []
        for q in pcts:  # np.percentile's linear rule on the sorted values, read from the histogram
            pos = q / 100.0 * (n - 1)
            k = int(math.floor(pos))
            a = int(np.searchsorted(counts, k, side="right")) + lo
            b = int(np.searchsorted(counts, min(k + 1, n - 1), side="right")) + lo
            out.append(a + (pos - k) * (b - a))
        return out[0], out[1]
    return tuple(float(v) for v in np.percentile(values.astype(np.float64), pcts))


def compute_statistics(scene: Scene, low_pct: float = 2.0, high_pct: float = 98.0, max_windows: int = 64,
                       max_low_share: float | None = MAX_LOW_SHARE) -> Scene:
    """Scene-wide per-band percentiles, from overviews or an even sample of windows (see :func:`percentile_stats`)."""
    if scene.path is None:
        raise ValueError("an in-memory scene has no file to sample; use geopix_tiles.io.arrays.scene_statistics")
    samples = []
    with rasterio.open(scene.path) as src:
        idx = list(scene.band_indexes)
        ovr = scene.extra.get("overviews") or []
        usable = [f for f in ovr if min(scene.height, scene.width) // f >= 256]
        if usable:
            f = max(usable)
            shape = (len(idx), max(1, scene.height // f), max(1, scene.width // f))
            data = src.read(idx, out_shape=shape)
            valid = _valid(src, idx, data, None, scene.has_mask, out_shape=shape[1:])
            samples.append(data[:, valid] if valid is not None else data.reshape(len(idx), -1))
        else:
            nodata = _integer_nodata(src, idx, np.dtype(scene.dtype)) if scene.has_mask else None
            for w in statistics_windows(scene.height, scene.width, max_windows):
                data = src.read(idx, window=w)
                valid = _valid(src, idx, data, w, scene.has_mask, nodata=nodata)
                samples.append(data[:, valid] if valid is not None else data.reshape(len(idx), -1))
    low, high = percentile_stats(samples, len(scene.band_indexes), low_pct, high_pct, max_low_share)
    return replace(scene, low=low, high=high)


def prepare_scene(scene: "Scene | str | os.PathLike", roles: Sequence[str] | None, bands: Any = None,
                  band_roles: Any = None, *, allow_no_georef: bool = False, statistics: bool = False,
                  stretch: str = "auto") -> Scene:
    """A scene ready for a segmenter: opened (unless a Scene is given), bands chosen for ``roles``.

    ``bands`` / ``band_roles`` are the user's ``--bands`` / ``--band-roles`` (strings or
    values); ``statistics=True`` also computes the scene-wide 2-98 % stretch (``stretch``: see
    :data:`STRETCHES`). Every path that
    reads a scene for a model (segment, describe, chat, training chips) comes through here.
    """
    sc = scene if isinstance(scene, Scene) else open_scene(scene, allow_no_georef=allow_no_georef)
    sc = select_bands(sc, resolve_bands(sc, roles, parse_bands(bands), parse_band_roles(band_roles)))
    return compute_statistics(sc, max_low_share=stretch_cap(stretch)) if statistics else sc


def _valid(src, idx, data, window, has_mask, out_shape=None, nodata: list | None = None) -> np.ndarray | None:
    """Pixels valid in every selected band (dataset masks, nodata and NaN), or None if all are.

    ``nodata``: :func:`_integer_nodata` of the bands, looked up once by the caller when it opens
    the file (after a failed block decode GDAL reports the error on the next metadata call); None
    asks GDAL for the mask.
    """
    if not has_mask:
        return None
    if nodata is not None:
        # what GDAL's nodata mask says, from the pixels already read: asking GDAL for the mask
        # decodes every block a second time (its threaded decoding bypasses the block cache)
        valid = data[0] != nodata[0]
        for band, value in zip(data[1:], nodata[1:]):
            valid &= band != value
        return valid
    with warnings.catch_warnings():
        # GDAL calls a 4th uint8 band "alpha" by default; the nodata value is what counts
        warnings.simplefilter("ignore", NodataShadowWarning)
        if out_shape is not None:
            masks = src.read_masks(idx, out_shape=(len(idx),) + tuple(out_shape))
        else:
            masks = src.read_masks(idx, window=window)
    valid = np.all(masks > 0, axis=0)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.all(np.isfinite(data), axis=0)
    return valid


def _integer_nodata(src, idx, dtype: np.dtype) -> list | None:
    """Each band's nodata value when GDAL's mask of every band in ``idx`` is exactly "pixel != nodata".

    Only integer bands whose nodata value the dtype holds exactly (GDAL's rule for other values
    and for floats has tolerances and special cases: those keep asking GDAL).
    """
    if np.dtype(dtype).kind not in "ui":
        return None
    info = np.iinfo(dtype)
    values = []
    for b in idx:
        value = src.nodatavals[b - 1]
        if src.mask_flag_enums[b - 1] != [MaskFlags.nodata] or value is None or not float(value).is_integer() \
                or not info.min <= value <= info.max:
            return None
        values.append(dtype.type(int(value)))
    return values


def _alpha_band(src, idx, dtype: np.dtype) -> int | None:
    """The 8-bit alpha band that is every selected band's mask (RGBA files), if that is what it is.

    Reading it with the pixels gives the mask from the same decoded blocks; GDAL's mask read
    decodes them again. Other alpha depths keep GDAL's own scaling (16-bit alpha is divided by 257).
    """
    if np.dtype(dtype) != np.uint8:
        return None
    alphas = [i + 1 for i, ci in enumerate(src.colorinterp) if ci == ColorInterp.alpha]
    if len(alphas) != 1 or alphas[0] in idx:
        return None
    if any(src.mask_flag_enums[b - 1] != [MaskFlags.per_dataset, MaskFlags.alpha] for b in idx):
        return None
    return alphas[0]


class RowBuffer:
    """Raster rows ``[y0, y1)`` of the selected bands in preallocated memory.

    Refilled in block-aligned reads so each compressed block is decoded once; rows still
    needed by the next grid row are moved to the front instead of being read again.
    """

    def __init__(self, reader: "SceneReader", rows_needed: int, block: int, x0: int = 0, x1: int | None = None) -> None:
        scene = reader.scene
        self.reader = reader
        self.block = block
        self.x0 = x0
        self.x1 = scene.width if x1 is None else x1
        cap = min(scene.height, rows_needed + block)
        self.data = np.empty((len(scene.band_indexes), cap, self.x1 - x0), dtype=scene.dtype)
        self.valid = np.empty((cap, self.x1 - x0), dtype=bool) if (scene.has_mask or reader.skip_bad) else None
        self.y0 = self.y1 = 0

    def ensure(self, y: int, need: int) -> None:
        """Make rows ``[y, need)`` available (``y`` never decreases)."""
        height = self.reader.scene.height
        if y >= self.y1:
            self.y0 = self.y1 = y
        elif y > self.y0:
            keep = self.y1 - y
            self.data[:, :keep] = self.data[:, y - self.y0:self.y1 - self.y0]
            if self.valid is not None:
                self.valid[:keep] = self.valid[y - self.y0:self.y1 - self.y0]
            self.y0 = y
        cap = self.data.shape[1]
        while self.y1 < need:
            end = min(height, max(need, (self.y1 // self.block + 1) * self.block), self.y0 + cap)
            a, b = self.y1 - self.y0, end - self.y0
            self.reader.read_rows_into(self.y1, end, self.data[:, a:b], None if self.valid is None else self.valid[a:b],
                                       self.x0, self.x1)
            self.y1 = end


class SceneReader:
    """Reads full-width row strips of the selected bands; one dataset handle per reader.

    GDAL dataset handles are not thread-safe, so each reader thread owns one.
    """

    def __init__(self, scene: Scene, skip_bad: bool = False) -> None:
        self.scene = scene
        self.skip_bad = skip_bad
        self.bad_windows: list[Window] = []  # unreadable blocks, clipped to the scene
        # decode the blocks of one read on all cores (GDAL >= 3.6): reads are serialised with writes
        # multi-threaded decoding prefetches remote ranges in worker threads whose HTTP errors can
        # come back as blank blocks instead of an error: remote scenes decode in the calling thread
        self._src = self._open()
        # where the validity mask comes from, looked up once (see _valid, _alpha_band)
        idx = list(scene.band_indexes) if scene.band_indexes else []
        dtype = np.dtype(scene.dtype)
        self._nodata = _integer_nodata(self._src, idx, dtype) if scene.has_mask and idx else None
        self._alpha = _alpha_band(self._src, idx, dtype) if scene.has_mask and idx else None
        self._identity = None  # what the server said the file was when the run started (HTTP only)
        if is_remote_scene(scene):
            from .remote import remote_fingerprint  # noqa: PLC0415

            try:
                self._identity = remote_fingerprint(scene.path)
            except InputError:
                self._identity = None  # object stores / VRTs of remote assets: nothing to compare

    def read_rows_into(self, y0: int, y1: int, out: np.ndarray, valid_out: np.ndarray | None,
                       x0: int = 0, x1: int | None = None) -> None:
        """Rows ``[y0, y1)`` into preallocated ``out [C, n, W]`` and ``valid_out [n, W]`` (if given).

        A failed read raises :class:`ReadError` naming the rows, or with ``skip_bad`` blanks
        the unreadable blocks as nodata and records them in ``bad_windows``.
        """
        x1 = self.scene.width if x1 is None else x1
        w = Window(x0, y0, x1 - x0, y1 - y0)
        try:
            self._read_window_retrying(w, out, valid_out)
            if self._identity is not None:
                from .remote import remote_change  # noqa: PLC0415

                changed = remote_change(self.scene.path, self._identity)
                if changed:
                    raise ReadError(changed)
        except RasterioError as exc:
            if self.skip_bad:
                self._reopen()  # GDAL keeps a block that failed to decode in its cache: read again, it "succeeds"
                return self._read_blockwise(y0, y1, out, valid_out, x0, x1)
            from .remote import remote_error  # noqa: PLC0415

            if is_remote_scene(self.scene):
                raise ReadError(f"rows {y0}..{y1}: {remote_error(self.scene.path, exc.__cause__ or exc, True)}") from None
            raise ReadError(
                f"reading rows {y0}..{y1} of '{self.scene.path}' failed ({_short(exc.__cause__ or exc)}); "
                "the file is corrupt or truncated: re-download or repair it (gdal_translate)"
            ) from None

    #: remote scenes: attempts per window, and the first back-off (doubled each time), seconds
    REMOTE_ATTEMPTS = 5
    REMOTE_BACKOFF = 0.2

    def _read_window_retrying(self, w: Window, out: np.ndarray, valid_out: np.ndarray | None) -> None:
        """A remote read that fails is retried on a fresh handle with back-off (a 503, a reset, a
        timeout are usually transient), on top of GDAL's own HTTP retries; local reads are not."""
        attempts = self.REMOTE_ATTEMPTS if is_remote_scene(self.scene) else 1
        for k in range(attempts):
            try:
                return self._read_window(w, out, valid_out)
            except RasterioError:
                if k + 1 == attempts:
                    raise
                time.sleep(self.REMOTE_BACKOFF * 2 ** k)
                self._reopen()

    def _reopen(self) -> None:
        """A fresh handle: none of the old one's cached blocks (a remote read that failed, or a block that failed
        to decode, which GDAL's block cache would otherwise hand back as if read) are seen again."""
        with GDAL_IO_LOCK:
            self._src.close()
            self._src = self._open()

    def _open(self) -> "rasterio.io.DatasetReader":
        remote = is_remote_scene(self.scene)
        return rasterio.open(self.scene.path) if remote else rasterio.open(self.scene.path, NUM_THREADS="ALL_CPUS")

    def _read_window(self, w: Window, out: np.ndarray, valid_out: np.ndarray | None) -> None:
        idx = list(self.scene.band_indexes)
        alpha = self._alpha if valid_out is not None else None
        with GDAL_IO_LOCK:
            if alpha is not None:  # pixels and alpha from one decode of each block
                both = self._src.read(idx + [alpha], window=w)
                out[...] = both[:-1]
                valid = both[-1] > 0
            else:
                self._src.read(idx, window=w, out=out)
                valid = _valid(self._src, idx, out, w, self.scene.has_mask, nodata=self._nodata) \
                    if valid_out is not None else None
        if valid_out is not None:
            valid_out[...] = True if valid is None else valid
            if valid is not None and np.issubdtype(out.dtype, np.floating):
                out[:, ~valid] = 0

    def _read_blockwise(self, y0: int, y1: int, out: np.ndarray, valid_out: np.ndarray | None,
                        x0: int, x1: int) -> None:
        """After a failed strip read: read block by block, blanking (nodata) the blocks that fail."""
        if valid_out is None:
            raise RuntimeError("skip_bad needs a validity buffer")
        bh, bw = self._src.block_shapes[0]
        for r in range((y0 // bh) * bh, y1, bh):
            ra, rb = max(r, y0), min(r + bh, y1)
            for c in range((x0 // bw) * bw, x1, bw):
                ca, cb = max(c, x0), min(c + bw, x1)
                w = Window(ca, ra, cb - ca, rb - ra)
                rows, cols = slice(ra - y0, rb - y0), slice(ca - x0, cb - x0)
                try:
                    self._read_window(w, out[:, rows, cols], valid_out[rows, cols])
                except RasterioError:
                    self._reopen()  # the next strip that touches this block must fail on it again
                    out[:, rows, cols] = 0
                    valid_out[rows, cols] = False
                    block = Window(c, r, min(c + bw, self.scene.width) - c, min(r + bh, self.scene.height) - r)
                    if block not in self.bad_windows:
                        self.bad_windows.append(block)

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> "SceneReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
