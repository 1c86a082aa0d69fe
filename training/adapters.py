"""Adapters from the label formats found in practice to :class:`LabelledScene`.

* :class:`VectorSource` - GeoTIFF + GeoPackage / GeoJSON / Shapefile polygons, reprojected
  to the raster CRS, invalid geometries repaired (or dropped) and reported.
* :class:`MaskRasterSource` - GeoTIFF + a GeoTIFF of class ids (warped onto the image grid
  when it is not already on it); instances are connected components.
* :class:`ColourMaskSource` - plain image chips + RGB colour masks + a colour->class map.
* :class:`XBDSource` - xBD-style JSON with pixel ``xy`` WKT polygons (damage subtype kept).
* :class:`BoxCSVSource` - ``image_path,xmin,ymin,xmax,ymax,label`` boxes (DeepForest style);
  a box is the only shape such labels give, so the box is the mask.
* :class:`SpectralIndexSource` - *weak* water / vegetation labels from NDWI / NDVI on a scene
  with a NIR band; the model still sees only the RGB bands. Records say ``weak_labels``.

Every adapter yields scenes; :mod:`.windows` cuts them into tiles and records, and
:func:`.windows.export_jsonl` writes the GeoPixInstruct JSONL interchange form.
"""
from __future__ import annotations

import csv
import glob
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from geopix_tiles.errors import InputError

from .instances import instances_from_class_raster, instances_from_polygons, repair_geometry
from .records import Instance
from .scenes import LabelledScene, RasterImage

if TYPE_CHECKING:  # pragma: no cover
    from rasterio.windows import Window

__all__ = [
    "Source",
    "VectorSource",
    "MaskRasterSource",
    "ColourMaskSource",
    "XBDSource",
    "BoxCSVSource",
    "SpectralIndexSource",
    "build_source",
    "SOURCE_TYPES",
]


class Source:
    """A data source: a named collection of labelled scenes."""

    def scenes(self) -> Iterator[LabelledScene]:  # pragma: no cover - abstract
        raise NotImplementedError


# --------------------------------------------------------------------------- vector labels
class _PolygonScene(LabelledScene):
    def __init__(self, name: str, image: RasterImage, geoms: list[Any], categories: list[str],
                 extras: list[dict[str, Any]], report: dict[str, Any], pixel_space: bool = False,
                 min_pixels: int = 4) -> None:
        self.name = name
        self.image = image
        self.geoms = geoms
        self.categories = categories
        self.extras = extras
        self.report = report
        self.pixel_space = pixel_space
        self.min_pixels = min_pixels
        import shapely

        self._tree = shapely.STRtree(geoms) if geoms else None

    def instances(self, win: "Window") -> list[Instance]:
        from affine import Affine
        import shapely

        if self._tree is None:
            return []
        h, w = int(win.height), int(win.width)
        if self.pixel_space:
            transform = Affine.translation(win.col_off, win.row_off)
        else:
            transform = self.image.window_transform(win)
        xs, ys = transform @ (np.array([0, w, w, 0]), np.array([0, 0, h, h]))
        box = shapely.box(min(xs), min(ys), max(xs), max(ys))
        idx = sorted(int(i) for i in self._tree.query(box))
        if not idx:
            return []
        return instances_from_polygons([self.geoms[i] for i in idx], [self.categories[i] for i in idx],
                                       (h, w), transform, [self.extras[i] for i in idx],
                                       min_pixels=self.min_pixels)


def _clean_geometries(geoms: Sequence[Any], where: str) -> tuple[list[int], list[Any], dict[str, Any]]:
    kept_idx: list[int] = []
    kept: list[Any] = []
    report: dict[str, Any] = {"features": len(geoms), "repaired": 0, "dropped": 0, "problems": []}
    for i, g in enumerate(geoms):
        fixed, problem = repair_geometry(g)
        if problem:
            report["problems"].append(f"{where} feature {i}: {problem}")
        if fixed is None:
            report["dropped"] += 1
            continue
        if problem:
            report["repaired"] += 1
        kept_idx.append(i)
        kept.append(fixed)
    if report["repaired"] or report["dropped"]:
        warnings.warn(f"{where}: repaired {report['repaired']} and dropped {report['dropped']} of "
                      f"{report['features']} geometries (see the source report)", stacklevel=3)
    return kept_idx, kept, report


class VectorSource(Source):
    """Raster + vector polygons. The category is a constant or read from an attribute."""

    def __init__(self, image: str | Sequence[str], vector: str, category: str | None = None,
                 category_field: str | None = None, description_field: str | None = None,
                 layer: str | None = None, bands: Sequence[int] | None = None,
                 name: str | None = None, min_pixels: int = 4) -> None:
        if category is None and category_field is None:
            raise InputError(f"vector source {vector}: set 'category' (a class name) or 'category_field' (an attribute)")
        self.image = image
        self.vector = vector
        self.category = category
        self.category_field = category_field
        self.description_field = description_field
        self.layer = layer
        self.bands = bands
        self.name = name or Path(vector).stem
        self.min_pixels = min_pixels

    def scenes(self) -> Iterator[LabelledScene]:
        import geopandas as gpd

        img = RasterImage.open(self.image, self.bands)
        if not Path(self.vector).exists():
            raise InputError(f"vector labels '{self.vector}' do not exist; check the path")
        try:
            kwargs = {"layer": self.layer} if self.layer else {}
            gdf = gpd.read_file(self.vector, **kwargs)
        except Exception as exc:  # pyogrio raises several types for unreadable files
            raise InputError(f"cannot read vector labels '{self.vector}' ({type(exc).__name__}: {exc}); "
                             "pass a GeoPackage, GeoJSON or Shapefile") from exc
        report: dict[str, Any] = {"reprojected": False}
        if len(gdf):
            if img.crs is not None and gdf.crs is not None and gdf.crs != img.crs:
                gdf = gdf.to_crs(img.crs)
                report["reprojected"] = True
            elif gdf.crs is None and img.crs is not None:
                warnings.warn(f"{self.vector} has no CRS; assuming the raster's CRS {img.crs}", stacklevel=2)
                report["assumed_crs"] = str(img.crs)
            if self.category_field and self.category_field not in gdf.columns:
                raise InputError(f"'{self.vector}' has no attribute '{self.category_field}'; "
                                 f"choose one of {', '.join(map(str, gdf.columns.drop('geometry')))}")
        idx, geoms, clean = _clean_geometries(list(gdf.geometry), self.vector)
        report.update(clean)
        cats: list[str] = []
        extras: list[dict[str, Any]] = []
        for i in idx:
            row = gdf.iloc[i]
            cats.append(str(row[self.category_field]) if self.category_field else str(self.category))
            ex: dict[str, Any] = {}
            if self.description_field and self.description_field in gdf.columns:
                ex["description"] = str(row[self.description_field] or "")
            extras.append(ex)
        yield _PolygonScene(self.name, img, geoms, cats, extras, report, min_pixels=self.min_pixels)


# --------------------------------------------------------------------------- raster masks
class _ClassRasterScene(LabelledScene):
    def __init__(self, name: str, image: RasterImage, classes_of_window, class_names: Mapping[int, str],
                 ignore: Sequence[int], stuff: Sequence[str], min_pixels: int, report: dict[str, Any],
                 exhaustive: bool = True) -> None:
        self.name = name
        self.exhaustive = exhaustive
        self.image = image
        self._classes_of_window = classes_of_window
        self.class_names = dict(class_names)
        self.ignore = list(ignore)
        self.stuff = list(stuff)
        self.min_pixels = min_pixels
        self.report = report

    def instances(self, win: "Window") -> list[Instance]:
        classes = self._classes_of_window(win)
        return instances_from_class_raster(classes, self.class_names, ignore=self.ignore,
                                           min_pixels=self.min_pixels, stuff=self.stuff)

    def annotated_classes(self) -> list[str] | None:
        if not self.exhaustive:
            return None
        return sorted({n for v, n in self.class_names.items() if v not in self.ignore})


def _parse_classes(classes: Mapping[Any, str] | None, where: str) -> dict[int, str]:
    if not classes:
        raise InputError(f"{where}: give 'classes', a map of mask value -> class name, e.g. {{255: building}}")
    try:
        return {int(k): str(v) for k, v in classes.items()}
    except (TypeError, ValueError) as exc:
        raise InputError(f"{where}: 'classes' keys must be integer mask values") from exc


class MaskRasterSource(Source):
    """Raster + a class-id raster. A mask on another grid or CRS is warped (nearest)."""

    def __init__(self, image: str | Sequence[str], mask: str, classes: Mapping[Any, str],
                 ignore: Sequence[int] = (), stuff: Sequence[str] = (), bands: Sequence[int] | None = None,
                 name: str | None = None, min_pixels: int = 16, exhaustive: bool = True) -> None:
        self.image = image
        self.exhaustive = exhaustive
        self.mask = mask
        self.classes = _parse_classes(classes, f"mask source {mask}")
        self.ignore = list(ignore)
        self.stuff = list(stuff)
        self.bands = bands
        self.name = name or Path(mask).stem
        self.min_pixels = min_pixels

    def scenes(self) -> Iterator[LabelledScene]:
        import rasterio
        from rasterio.warp import Resampling, reproject
        from rasterio.windows import Window

        img = RasterImage.open(self.image, self.bands)
        if not Path(self.mask).exists():
            raise InputError(f"label mask '{self.mask}' does not exist; check the path")
        report: dict[str, Any] = {"warped": False}
        with rasterio.open(self.mask) as ds:
            same_grid = (ds.width, ds.height) == (img.width, img.height) and (
                ds.transform == img.transform or not img.georeferenced) and (ds.crs == img.crs or ds.crs is None or img.crs is None)
            mask_nodata = ds.nodata
            if not same_grid:
                if ds.crs is None or img.crs is None:
                    raise InputError(f"mask '{self.mask}' is {ds.width}x{ds.height} and not georeferenced like "
                                     f"its image ({img.width}x{img.height}); give a mask on the image's grid")
                warped = np.full((img.height, img.width), 0 if mask_nodata is None else mask_nodata, dtype=ds.dtypes[0])
                reproject(rasterio.band(ds, 1), warped, dst_transform=img.transform, dst_crs=img.crs,
                          resampling=Resampling.nearest, dst_nodata=mask_nodata)
                report["warped"] = True
        ignore = list(self.ignore)
        if mask_nodata is not None and int(mask_nodata) not in self.classes:
            ignore.append(int(mask_nodata))
        path = self.mask

        if report["warped"]:
            def classes_of_window(win: "Window") -> np.ndarray:
                return warped[win.toslices()]
        else:
            def classes_of_window(win: "Window") -> np.ndarray:
                with rasterio.open(path) as ds:
                    return ds.read(1, window=win)

        yield _ClassRasterScene(self.name, img, classes_of_window, self.classes, ignore, self.stuff,
                                self.min_pixels, report, self.exhaustive)


class ColourMaskSource(Source):
    """Image chips + RGB colour masks, paired by file stem, with a colour -> class map."""

    def __init__(self, images: str, masks: str, colours: Mapping[str, Sequence[int]],
                 ignore: Sequence[str] = (), stuff: Sequence[str] = (), name: str = "chips",
                 min_pixels: int = 64, mask_suffix: str = ".png", exhaustive: bool = True) -> None:
        self.images = images
        self.exhaustive = exhaustive
        self.masks = masks
        if not colours:
            raise InputError("colour-mask source: give 'colours', a map of class name -> [r, g, b]")
        self.colours = {str(k): tuple(int(c) for c in v) for k, v in colours.items()}
        for k, v in self.colours.items():
            if len(v) != 3:
                raise InputError(f"colour of class '{k}' must be [r, g, b], got {list(v)}")
        self.ignore = list(ignore)
        self.stuff = list(stuff)
        self.name = name
        self.min_pixels = min_pixels
        self.mask_suffix = mask_suffix

    def _pairs(self) -> list[tuple[Path, Path]]:
        pattern = self.images
        if Path(pattern).is_dir():
            pattern = str(Path(pattern) / "*")
        images = sorted(p for p in map(Path, glob.glob(pattern, recursive=True))
                        if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff"))
        if not images:
            raise InputError(f"no images match '{self.images}'; give a folder or glob of JPG/PNG/TIF chips")
        pairs = []
        for im in images:
            mask_dir = Path(self.masks.replace("{parent}", str(im.parent.parent))) if "{parent}" in self.masks else Path(self.masks)
            m = mask_dir / (im.stem + self.mask_suffix)
            if not m.exists():
                raise InputError(f"no mask {m} for image {im}; masks are paired with images by file name")
            pairs.append((im, m))
        return pairs

    def scenes(self) -> Iterator[LabelledScene]:
        from PIL import Image

        names = sorted(self.colours)
        class_names = {i + 1: n for i, n in enumerate(names)}
        ignore_ids = [i for i, n in class_names.items() if n in self.ignore] + [0]
        lut_keys = np.array([self.colours[n] for n in names], dtype=np.int64)
        keys = (lut_keys[:, 0] << 16) | (lut_keys[:, 1] << 8) | lut_keys[:, 2]
        for im, m in self._pairs():
            img = RasterImage.open(str(im))
            rgb = np.asarray(Image.open(m).convert("RGB"), dtype=np.int64)
            if rgb.shape[:2] != (img.height, img.width):
                raise InputError(f"mask {m} is {rgb.shape[1]}x{rgb.shape[0]} but image {im} is {img.width}x{img.height}")
            code = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            ids = np.zeros(code.shape, dtype=np.uint8)  # 0 = colour not in the map (e.g. black): ignored
            for i, k in enumerate(keys):
                ids[code == k] = i + 1
            unknown = float((ids == 0).mean())
            report = {"unmapped_fraction": unknown}

            def classes_of_window(win: "Window", ids: np.ndarray = ids) -> np.ndarray:
                return ids[win.toslices()]

            scene = _ClassRasterScene(f"{self.name}/{im.parent.parent.name}/{im.stem}", img, classes_of_window,
                                      class_names, ignore_ids, self.stuff, self.min_pixels, report,
                                      self.exhaustive)
            yield scene


# --------------------------------------------------------------------------- xBD
class XBDSource(Source):
    """xBD images + JSON labels. Damage subtype is kept as an attribute and in the description."""

    def __init__(self, images: str, labels: str, name: str = "xbd", min_pixels: int = 4,
                 category: str | None = None) -> None:
        self.images = Path(images)
        self.labels = Path(labels)
        self.name = name
        self.min_pixels = min_pixels
        self.category = category

    def scenes(self) -> Iterator[LabelledScene]:
        from shapely import wkt

        files = sorted(self.labels.glob("*.json")) if self.labels.is_dir() else [self.labels]
        if not files:
            raise InputError(f"no xBD JSON labels in '{self.labels}'")
        for lf in files:
            try:
                data = json.loads(lf.read_text())
                feats = data["features"]["xy"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise InputError(f"'{lf}' is not an xBD label file (needs features.xy)") from exc
            img_name = data.get("metadata", {}).get("img_name") or (lf.stem + ".png")
            img_path = self.images / img_name
            img = RasterImage.open(str(img_path))
            raw_geoms = []
            props = []
            for f in feats:
                try:
                    raw_geoms.append(wkt.loads(f["wkt"]))
                except Exception:  # shapely raises GEOSException / WKTReadingError
                    raw_geoms.append(None)
                props.append(f.get("properties", {}))
            idx, geoms, report = _clean_geometries(raw_geoms, str(lf))
            cats, extras = [], []
            for i in idx:
                p = props[i]
                cat = self.category or str(p.get("feature_type", "building")).replace("_", " ")
                sub = p.get("subtype")
                ex: dict[str, Any] = {}
                if sub:
                    ex["damage"] = str(sub)
                cats.append(cat)
                extras.append(ex)
            yield _PolygonScene(f"{self.name}/{lf.stem}", img, geoms, cats, extras, report,
                                pixel_space=True, min_pixels=self.min_pixels)


# --------------------------------------------------------------------------- boxes
class BoxCSVSource(Source):
    """``image_path,xmin,ymin,xmax,ymax,label`` rows (pixel boxes); images next to the CSV."""

    def __init__(self, csv_path: str, images: str | None = None, name: str | None = None,
                 category_map: Mapping[str, str] | None = None) -> None:
        self.csv_path = Path(csv_path)
        self.images = Path(images) if images else self.csv_path.parent
        self.name = name or self.csv_path.stem
        self.category_map = {str(k): str(v) for k, v in (category_map or {}).items()}

    def scenes(self) -> Iterator[LabelledScene]:
        import shapely

        if not self.csv_path.exists():
            raise InputError(f"box CSV '{self.csv_path}' does not exist")
        by_image: dict[str, list[tuple[list[float], str]]] = {}
        with self.csv_path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            need = {"image_path", "xmin", "ymin", "xmax", "ymax", "label"}
            if not reader.fieldnames or not need.issubset(reader.fieldnames):
                raise InputError(f"'{self.csv_path}' needs columns {', '.join(sorted(need))}")
            for row in reader:
                box = [float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
                label = self.category_map.get(row["label"], row["label"].lower())
                by_image.setdefault(row["image_path"], []).append((box, label))
        for image_name, boxes in by_image.items():
            img = RasterImage.open(str(self.images / image_name))
            raw = [shapely.box(*b) for b, _ in boxes]
            idx, geoms, report = _clean_geometries(raw, str(self.csv_path))
            cats = [boxes[i][1] for i in idx]
            extras = [{"shape": "box"} for _ in idx]
            yield _PolygonScene(f"{self.name}/{Path(image_name).stem}", img, geoms, cats, extras, report,
                                pixel_space=True)


# --------------------------------------------------------------------------- weak spectral labels
class SpectralIndexSource(Source):
    """Weak labels from spectral indices: water where NDWI > ``ndwi``, vegetation where NDVI > ``ndvi``.

    McFeeters' NDWI ``(G - NIR) / (G + NIR)`` and NDVI ``(NIR - R) / (NIR + R)`` on the raw
    digital numbers; water wins where both fire. Pixels that are nodata in any band are
    ignored. The labels are exhaustive for those two classes, so a window without water is a
    true negative for "water" - as far as an index threshold can say; they are weak labels and
    every record carries ``meta["weak_labels"] = True``.
    """

    def __init__(self, images: str | Sequence[str], rgb: Sequence[int], red: int, green: int, nir: int,
                 ndwi: float = 0.2, ndvi: float = 0.3, name: str = "spectral_index", min_pixels: int = 16) -> None:
        paths = sorted(glob.glob(images)) if isinstance(images, str) else [str(p) for p in images]
        if not paths:
            raise InputError(f"spectral-index source: no image matches {images!r}; check the path or glob")
        self.paths = paths
        self.rgb = list(rgb)
        self.red, self.green, self.nir = int(red), int(green), int(nir)
        self.ndwi, self.ndvi = float(ndwi), float(ndvi)
        self.name = name
        self.min_pixels = min_pixels

    def classes_of_window(self, path: str, win: "Window") -> np.ndarray:
        import rasterio

        with rasterio.open(path) as ds:
            r, g, n = (ds.read(b, window=win).astype(np.float32) for b in (self.red, self.green, self.nir))
            valid = ds.read_masks(1, window=win) > 0
        return spectral_classes(r, g, n, self.ndwi, self.ndvi, valid)

    def scenes(self) -> Iterator[LabelledScene]:
        for path in self.paths:
            img = RasterImage.open(path, self.rgb)

            def classes(win: "Window", path: str = path) -> np.ndarray:
                return self.classes_of_window(path, win)

            scene = _ClassRasterScene(f"{self.name}/{Path(path).stem}", img, classes, {1: "water", 2: "vegetation"},
                                      [255], ["water", "vegetation"], self.min_pixels, {"weak_labels": True})
            scene.weak_labels = True
            yield scene


def spectral_classes(red: np.ndarray, green: np.ndarray, nir: np.ndarray, ndwi: float = 0.2, ndvi: float = 0.3,
                     valid: np.ndarray | None = None) -> np.ndarray:
    """uint8 class raster: 1 water (NDWI > ndwi), 2 vegetation (NDVI > ndvi), 0 other, 255 invalid."""
    with np.errstate(divide="ignore", invalid="ignore"):
        wi = np.where(green + nir > 0, (green - nir) / (green + nir), 0.0)
        vi = np.where(nir + red > 0, (nir - red) / (nir + red), 0.0)
    out = np.zeros(red.shape, dtype=np.uint8)
    out[vi > ndvi] = 2
    out[wi > ndwi] = 1
    if valid is not None:
        out[~valid] = 255
    return out


SOURCE_TYPES: dict[str, type[Source]] = {
    "vector": VectorSource,
    "mask": MaskRasterSource,
    "colour_mask": ColourMaskSource,
    "xbd": XBDSource,
    "boxes": BoxCSVSource,
    "spectral_index": SpectralIndexSource,
}


def build_source(spec: Mapping[str, Any], base: Path | None = None) -> Source:
    """Build a source from a config mapping ``{type: ..., <paths relative to base>, ...}``."""
    spec = dict(spec)
    if "_base" in spec:
        base = Path(spec.pop("_base"))
    kind = spec.pop("type", None)
    if kind not in SOURCE_TYPES:
        raise InputError(f"data source type {kind!r} is unknown; use one of {', '.join(SOURCE_TYPES)}")
    path_keys = {"image", "vector", "mask", "images", "masks", "labels", "csv_path"}
    if base is not None:
        for k in path_keys & spec.keys():
            v = spec[k]
            if isinstance(v, (list, tuple)):
                spec[k] = [str(base / p) for p in v]
            elif isinstance(v, str) and not v.startswith("{parent}"):
                spec[k] = str(base / v)
    for k in ("weight", "split", "licence"):
        spec.pop(k, None)
    try:
        return SOURCE_TYPES[kind](**spec)
    except TypeError as exc:
        raise InputError(f"data source of type '{kind}': {exc}; see the config documentation") from exc
