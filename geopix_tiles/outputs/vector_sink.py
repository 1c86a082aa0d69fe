"""Polygons of closed objects: attributes, then parts on disk, then one vector file.

Closed objects are turned into CRS geometries with ``prompt``, ``score`` (mean probability),
``pixels``, ``area`` (CRS units) and ``area_m2`` (square metres, geodesic for geographic
CRSs), filtered and simplified, and spilled to small numbered part files (WKB and plain
arrays, never pickles). Parts are what a checkpoint commits, so a resumed run can drop the
uncommitted ones; the output (GeoPackage, GeoParquet, FlatGeobuf or GeoJSON, by extension:
:mod:`.vector_formats`) is assembled from the parts in batches at the end, under a temporary
name, and renamed into place.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import shapely
from pyproj import CRS, Geod

from ..io.atomic import replacing
from ..io.scene import Scene
from .vectorize import ClosedObjects, to_crs_geometry

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

#: the output's attribute columns and their types (``columns`` casts to them; the OGR writer
#: takes them for an empty layer)
FIELD_TYPES = {"prompt": object, "score": np.float64, "pixels": np.int64, "area": np.float64, "area_m2": np.float64}
COLUMNS = tuple(FIELD_TYPES)


class PolygonSchema:
    """What a closed object becomes: a CRS geometry and the attribute columns, filtered and simplified.

    Separate from :class:`VectorSink` (which adds part files on disk) so that in-memory
    vectorizing (:func:`.polygons.to_polygons`) and empty results use the same columns without
    a sink or a stand-in scene.
    """

    def __init__(self, crs, transform, prompts: Sequence[str], min_area: float | None = None,
                 simplify: float | None = None) -> None:
        self.crs = crs
        self.transform = transform
        self.prompts = list(prompts)
        self.min_area = min_area
        self.simplify = simplify
        pcrs = CRS.from_user_input(crs) if crs else None
        self._pixel_area = abs(transform.determinant)
        self._geod = Geod(ellps="WGS84") if pcrs is not None and pcrs.is_geographic else None
        self._unit_m = None
        if pcrs is not None and pcrs.is_projected:
            self._unit_m = pcrs.axis_info[0].unit_conversion_factor

    @classmethod
    def for_scene(cls, scene: Scene, prompts: Sequence[str], min_area: float | None = None,
                  simplify: float | None = None) -> "PolygonSchema":
        return cls(scene.crs, scene.transform, prompts, min_area, simplify)

    def attributes(self, closed: ClosedObjects) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """CRS geometries and attribute columns of closed objects, filtered and simplified."""
        geoms = to_crs_geometry(closed.geometry, self.transform)
        count = np.asarray(closed.count, dtype=np.int64)
        score = np.asarray(closed.total, dtype=np.float64) / np.maximum(count, 1)
        area = count * self._pixel_area
        if self._unit_m is not None:
            area_m2 = area * self._unit_m ** 2
        elif self._geod is not None:
            area_m2 = np.array([abs(self._geod.geometry_area_perimeter(g)[0]) for g in geoms])
        else:
            area_m2 = np.full(len(geoms), np.nan)
        keep = np.ones(len(geoms), dtype=bool)
        if self.min_area:
            keep &= (area if np.isnan(area_m2).all() else area_m2) >= self.min_area
        geoms = geoms[keep]
        if self.simplify:
            geoms = shapely.simplify(geoms, self.simplify, preserve_topology=True)
        columns = dict(prompt=np.asarray(closed.prompt_index, dtype=np.int64)[keep], score=score[keep],
                       pixels=count[keep], area=area[keep], area_m2=area_m2[keep])
        return geoms, columns

    def frame(self, closed: ClosedObjects) -> "gpd.GeoDataFrame":
        geoms, c = self.attributes(closed)
        return self.columns_frame(geoms, c["prompt"], c["score"], c["pixels"], c["area"], c["area_m2"])

    def columns(self, prompt, score, pixels, area, area_m2) -> dict[str, np.ndarray]:
        """The output's attribute columns, typed as ``FIELD_TYPES`` says (prompt indexes -> words)."""
        words = [self.prompts[i] for i in prompt]
        return {name: np.asarray(values, dtype=FIELD_TYPES[name])
                for name, values in zip(COLUMNS, (words, score, pixels, area, area_m2))}

    def columns_frame(self, geoms, prompt, score, pixels, area, area_m2) -> "gpd.GeoDataFrame":
        import geopandas as gpd  # noqa: PLC0415

        return gpd.GeoDataFrame(self.columns(prompt, score, pixels, area, area_m2),
                                geometry=gpd.GeoSeries(list(geoms), crs=self.crs))

    def empty_frame(self) -> "gpd.GeoDataFrame":
        return self.columns_frame([], [], [], [], [], [])


class VectorSink:
    """Closed objects -> numbered part files on disk (committed with the journal) -> one vector file."""

    def __init__(self, parts_dir: str | os.PathLike, scene: Scene, prompts: Sequence[str],
                 min_area: float | None = None, simplify: float | None = None, batch: int = 20000) -> None:
        self.parts_dir = Path(parts_dir)
        self.scene = scene
        self.schema = PolygonSchema.for_scene(scene, prompts, min_area, simplify)
        self.prompts = self.schema.prompts
        self.batch = batch
        self.pending = ClosedObjects()
        self.n_parts = 0
        self.n_features = 0

    def add(self, closed: ClosedObjects) -> None:
        self.pending.extend(closed)
        if len(self.pending) >= self.batch:
            self.spill()

    def spill(self) -> None:
        """Write pending objects as the next part file (atomic rename)."""
        if not len(self.pending):
            return
        closed, self.pending = self.pending, ClosedObjects()
        geoms, columns = self.schema.attributes(closed)
        wkb = shapely.to_wkb(geoms)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        path = self.parts_dir / f"part-{self.n_parts:06d}.npz"
        with replacing(path) as tmp:
            np.savez(tmp, wkb=np.frombuffer(b"".join(wkb), dtype=np.uint8),
                     wkb_len=np.array([len(w) for w in wkb], dtype=np.int64), **columns)
        self.n_parts += 1
        self.n_features += len(geoms)

    def drop_uncommitted(self, n_parts: int, n_features: int) -> None:
        """After a crash: forget parts written after the last checkpoint."""
        for f in self.parts_dir.glob("part-*"):
            stem = f.name.split(".")[0]
            if int(stem.split("-")[1]) >= n_parts:
                f.unlink()
        self.n_parts, self.n_features = n_parts, n_features

    def read_part_columns(self):
        """Yield ``(wkb, columns)`` per committed part, in order: WKB bytes as stored, typed columns."""
        for i in range(self.n_parts):
            with np.load(self.parts_dir / f"part-{i:06d}.npz", allow_pickle=False) as z:
                buf = z["wkb"].tobytes()
                ends = np.cumsum(z["wkb_len"])
                wkb = [buf[a:b] for a, b in zip((ends - z["wkb_len"]).tolist(), ends.tolist())]
                yield wkb, self.schema.columns(z["prompt"], z["score"], z["pixels"], z["area"], z["area_m2"])

    def read_parts(self):
        """Yield one GeoDataFrame per committed part, in order."""
        import geopandas as gpd  # noqa: PLC0415

        for wkb, columns in self.read_part_columns():
            yield gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(shapely.from_wkb(wkb), crs=self.schema.crs))

    def empty_frame(self) -> "gpd.GeoDataFrame":
        return self.schema.empty_frame()

    def write(self, tmp: str | os.PathLike, layer: str) -> None:
        """Assemble all committed parts into one layer at ``tmp``, in the format its extension names."""
        from .vector_formats import vector_format, write_columns, write_frames  # noqa: PLC0415

        if vector_format(tmp) == "Parquet":
            write_frames(self.read_parts(), tmp, layer, self.empty_frame())
        else:
            write_columns(self.read_part_columns(), tmp, layer, self.schema.crs, FIELD_TYPES)

    def to_geodataframe(self) -> "gpd.GeoDataFrame":
        import geopandas as gpd  # noqa: PLC0415
        import pandas as pd  # noqa: PLC0415

        frames = [f for f in self.read_parts() if len(f)]
        if not frames:
            return self.empty_frame()
        return gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=self.scene.crs)
