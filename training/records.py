"""GeoPixInstruct-style records and their JSONL interchange form.

One JSON object per line, one image per object, so that annotations released with GeoPix
load directly and every adapter here can export to the same form::

    {"image_path": "chips/a.tif",            # relative to the JSONL file
     "instances": [{"category": "building", "description": "...",
                    "bbox": [x1, y1, x2, y2],   # pixels
                    "mask": {"size": [h, w], "counts": "<COCO compressed RLE>"}}]}

Optional keys we add, ignored by other readers: ``"norm"`` (per-band ``low``/``high`` of
the scene-wide stretch the chip was cut from, so training scales pixels exactly as the
inference engine does), ``"source"`` and ``"window"`` (provenance), ``"split"``.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from geopix_tiles.errors import InputError
from geopix_tiles.io.atomic import replacing

from . import rle

__all__ = ["Instance", "ImageRecord", "read_jsonl", "write_jsonl", "load_image", "to_unit"]


@dataclass
class Instance:
    """One labelled object; the mask is kept as RLE so records stay small in memory."""

    category: str
    mask_rle: dict[str, Any]
    bbox: list[float]
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mask(cls, category: str, mask: np.ndarray, description: str = "", **extra: Any) -> "Instance":
        return cls(category=category, mask_rle=rle.encode(mask), bbox=rle.bbox(mask),
                   description=description, extra=dict(extra))

    def mask(self) -> np.ndarray:
        return rle.decode(self.mask_rle)

    @property
    def area(self) -> int:
        return rle.area(self.mask_rle)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"category": self.category, "description": self.description,
                             "bbox": [float(v) for v in self.bbox], "mask": self.mask_rle}
        d.update(self.extra)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any], where: str = "") -> "Instance":
        try:
            category = str(d["category"])
            mask = d["mask"]
        except (KeyError, TypeError) as exc:
            raise InputError(f"{where}: instance needs 'category' and 'mask' keys; fix the JSONL record") from exc
        if isinstance(mask, dict) and isinstance(mask.get("counts"), list):
            mask = rle.encode(rle.decode(mask))  # normalise uncompressed RLE to compressed
        if not isinstance(mask, dict) or "size" not in mask or "counts" not in mask:
            raise InputError(f"{where}: 'mask' must be COCO RLE {{'size': [h, w], 'counts': str}}")
        box = d.get("bbox")
        if box is None:
            box = rle.bbox(rle.decode(mask))
        extra = {k: v for k, v in d.items() if k not in ("category", "description", "bbox", "mask")}
        return cls(category=category, mask_rle=mask, bbox=[float(v) for v in box],
                   description=str(d.get("description") or ""), extra=extra)


@dataclass
class ImageRecord:
    """An image (file on disk or in-memory array) and its instances."""

    image_path: str | None
    instances: list[Instance]
    image: np.ndarray | None = None  # float32 [C, H, W] in [0, 1] when held in memory
    norm: dict[str, list[float]] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    origin: Any = None  # (LabelledScene, (y, x, h, w)) for records cut from a scene; not serialised

    @property
    def size(self) -> tuple[int, int] | None:
        if self.image is not None:
            return int(self.image.shape[-2]), int(self.image.shape[-1])
        if self.instances:
            h, w = self.instances[0].mask_rle["size"]
            return int(h), int(w)
        window = self.meta.get("window")
        if window is not None and len(window) == 4:  # an exported chip with no instances
            return int(window[2]), int(window[3])
        return None

    def load(self) -> np.ndarray:
        """Float32 ``[C, H, W]`` pixels scaled to [0, 1] the way the engine scales them."""
        if self.image is not None:
            return self.image
        if self.image_path is None:
            raise InputError("record has neither an image array nor an image_path")
        return load_image(self.image_path, self.norm)

    def categories(self) -> list[str]:
        return sorted({i.category for i in self.instances})

    def to_json(self, base: Path | None = None) -> dict[str, Any]:
        path = self.image_path
        if path is not None and base is not None:
            path = os.path.relpath(Path(path).resolve(), base.resolve())
        d: dict[str, Any] = {"image_path": path, "instances": [i.to_json() for i in self.instances]}
        if self.norm is not None:
            d["norm"] = self.norm
        d.update(self.meta)
        return d


def to_unit(pixels: np.ndarray, norm: dict[str, list[float]] | None) -> np.ndarray:
    """Scale raw ``[C, H, W]`` pixels to [0, 1]: by the stored scene stretch, else by dtype."""
    x = pixels.astype(np.float32)
    if norm is not None:
        low = np.asarray(norm["low"], dtype=np.float32)[:, None, None]
        high = np.asarray(norm["high"], dtype=np.float32)[:, None, None]
        if low.shape[0] != x.shape[0]:
            raise InputError(f"norm has {low.shape[0]} bands but the image has {x.shape[0]}; re-export the chips")
        return np.clip((x - low) / np.maximum(high - low, 1e-6), 0.0, 1.0)
    if pixels.dtype == np.uint8:
        return x / 255.0
    if pixels.dtype == np.uint16:
        return x / 65535.0
    lo, hi = np.nanmin(x), np.nanmax(x)
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def load_image(path: str | os.PathLike[str], norm: dict[str, list[float]] | None = None) -> np.ndarray:
    """Read a chip (GeoTIFF, PNG, JPG) with rasterio; an alpha band is dropped.

    With ``norm`` (chips we export) pixels are scaled by the stored scene-wide stretch and
    nodata pixels set to zero, exactly as the engine does; plain 8-bit images (GeoPix's own
    release) are divided by 255.
    """
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    from .pixels import normalise

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                data = ds.read()
                interp = [str(c).lower() for c in ds.colorinterp]
                masks = ds.read_masks() if norm is not None else None
    except RasterioIOError as exc:
        raise InputError(f"cannot read image {path}: {exc}; check the image_path in the JSONL") from exc
    nb = len(norm["low"]) if norm is not None else 3
    if data.shape[0] == nb + 1 and interp[-1].endswith("alpha"):
        data = data[:-1]
        if masks is not None:
            masks = masks[:-1]
    if norm is None:
        return to_unit(data, None)
    if len(norm["low"]) != data.shape[0]:
        raise InputError(f"{path}: norm has {len(norm['low'])} bands but the image has {data.shape[0]}; re-export the chips")
    valid = np.all(masks > 0, axis=0)
    if np.issubdtype(data.dtype, np.floating):
        valid &= np.all(np.isfinite(data), axis=0)
    return normalise(data, norm["low"], norm["high"], None if valid.all() else valid)


def read_jsonl(path: str | os.PathLike[str]) -> list[ImageRecord]:
    """Read records; image paths are resolved relative to the JSONL file's folder."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"data file {p} does not exist; pass a GeoPixInstruct-style JSONL file")
    base = p.resolve().parent
    out: list[ImageRecord] = []
    with p.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            where = f"{p}:{lineno}"
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg}); one JSON object per line") from exc
            if not isinstance(d, dict) or "image_path" not in d:
                raise InputError(f"{where}: each line needs an 'image_path' key")
            image_path = str(base / d["image_path"])
            insts = [Instance.from_json(i, where) for i in d.get("instances") or []]
            meta = {k: v for k, v in d.items() if k not in ("image_path", "instances", "norm")}
            out.append(ImageRecord(image_path=image_path, instances=insts, norm=d.get("norm"), meta=meta))
    if not out:
        raise InputError(f"{p} holds no records; it must have one JSON object per line")
    return out


def write_jsonl(records: Iterable[ImageRecord], path: str | os.PathLike[str]) -> int:
    """Write records; in-memory images must have been saved (``image_path`` set) first."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    base = p.resolve().parent
    n = 0
    with replacing(p) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for r in records:
            if r.image_path is None:
                raise ValueError("record has no image_path; save its chip before writing JSONL")
            fh.write(json.dumps(r.to_json(base), separators=(",", ":")) + "\n")
            n += 1
    return n


def iter_masks(record: ImageRecord) -> Iterator[tuple[Instance, np.ndarray]]:
    for inst in record.instances:
        yield inst, inst.mask()
