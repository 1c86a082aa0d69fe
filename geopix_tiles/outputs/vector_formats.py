"""Vector outputs by file extension: GeoPackage, GeoParquet, FlatGeobuf, GeoJSON.

Every writer here takes frames one batch at a time (the engine's parts, a merge's scenes),
so no format holds the whole result in memory, and writes to the path it is given: callers
write to a temporary name and rename it into place, so a failed run leaves nothing behind.
GPKG, FlatGeobuf and GeoJSON go through pyogrio (GDAL) with append; GeoParquet through
pyarrow's ``ParquetWriter`` with geopandas' GeoParquet metadata (GDAL's Parquet driver is not
in every wheel).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import geopandas as gpd

#: extension -> driver name
FORMATS = {".gpkg": "GPKG", ".parquet": "Parquet", ".fgb": "FlatGeobuf", ".geojson": "GeoJSON"}

__all__ = ["FORMATS", "vector_format", "write_frames", "write_columns", "write_atomic", "read_vectors"]


def vector_format(path: str | os.PathLike, flag: str = "--out") -> str:
    """The driver for ``path``'s extension, or a one-line error that lists the choices."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise InputError(f"{flag} '{path}' must end with {', '.join(FORMATS)} (GeoPackage, GeoParquet, FlatGeobuf "
                         "or GeoJSON)")
    return FORMATS[suffix]


def write_frames(frames: Iterable["gpd.GeoDataFrame"], path: str | os.PathLike, layer: str,
                 empty: "gpd.GeoDataFrame | None" = None, geometry_type: str | None = "Polygon",
                 promote_to_multi: bool | None = False) -> int:
    """Write ``frames`` (same columns and CRS) as one layer at ``path``; returns the features written.

    With no features, an empty layer with ``empty``'s columns (default: the first frame's).
    """
    driver = vector_format(path)
    frames = _remember_first(frames)
    if driver == "Parquet":
        n = _write_parquet(frames, Path(path))
    else:
        n = _write_ogr(frames, path, layer, driver, geometry_type, promote_to_multi)
    if n == 0:
        template = empty if empty is not None else frames.first
        if template is None:
            raise ValueError("no frames and no empty template to write")
        if driver == "Parquet":
            template.iloc[:0].to_parquet(path, index=False)
        else:
            import pyogrio  # noqa: PLC0415

            pyogrio.write_dataframe(template.iloc[:0], path, layer=layer, driver=driver,
                                    **_ogr_options(geometry_type, None))
    return n


def write_columns(batches: Iterable[tuple[Sequence[bytes], dict[str, np.ndarray]]], path: str | os.PathLike,
                  layer: str, crs, fields: dict[str, type], geometry_type: str = "Polygon") -> int:
    """Write batches of ``(wkb, columns)`` as one OGR layer at ``path``; returns the features written.

    The engine's part files already hold WKB, so the GPKG/FlatGeobuf/GeoJSON output goes to
    ``pyogrio.raw.write`` as it is: no shapely objects, no GeoDataFrame, no re-encoding, and
    no geopandas in a ``segment`` process. ``fields`` maps each column to its dtype (for an
    empty layer). Same layer as :func:`write_frames` writes from the same data: the same
    fields and types, the CRS as ``EPSG:n`` when it has a code, else WKT1_GDAL.
    """
    driver = vector_format(path)
    if driver == "Parquet":
        raise ValueError("write_columns writes OGR formats; GeoParquet goes through write_frames")
    from pyogrio.raw import write  # noqa: PLC0415

    options = dict(fields=list(fields), layer=layer, driver=driver, crs=_ogr_crs(crs), geometry_type=geometry_type,
                   promote_to_multi=False)
    n = 0
    for wkb, columns in batches:
        if len(wkb):
            write(path, geometry=np.asarray(wkb, dtype=object), field_data=[columns[f] for f in fields],
                  append=n > 0, **options)
            n += len(wkb)
    if n == 0:
        write(path, geometry=np.zeros(0, dtype=object),
              field_data=[np.zeros(0, dtype=dtype) for dtype in fields.values()], **options)
    return n


def _ogr_crs(crs) -> str | None:
    """The CRS text ``pyogrio.write_dataframe`` passes for a GeoSeries with this CRS."""
    if not crs:
        return None
    from pyproj import CRS  # noqa: PLC0415

    c = CRS.from_user_input(crs)
    epsg = c.to_epsg()
    return f"EPSG:{epsg}" if epsg else c.to_wkt("WKT1_GDAL")


class _remember_first:
    """An iterator over frames that keeps the first one (for the columns of an empty output)."""

    def __init__(self, frames: Iterable["gpd.GeoDataFrame"]) -> None:
        self._it = iter(frames)
        self.first = None

    def __iter__(self):
        for frame in self._it:
            if self.first is None:
                self.first = frame
            yield frame


def _ogr_options(geometry_type: str | None, promote_to_multi: bool | None) -> dict:
    out: dict = {}
    if geometry_type:
        out["geometry_type"] = geometry_type
    if promote_to_multi is not None:
        out["promote_to_multi"] = promote_to_multi
    return out


def _write_ogr(frames: Iterable["gpd.GeoDataFrame"], path, layer: str, driver: str, geometry_type: str | None,
               promote_to_multi: bool | None) -> int:
    import pyogrio  # noqa: PLC0415

    n, first = 0, True
    for frame in frames:
        if not len(frame):
            continue
        pyogrio.write_dataframe(frame, path, layer=layer, driver=driver, append=not first,
                                **_ogr_options(geometry_type, promote_to_multi))
        first = False
        n += len(frame)
    return n


def _write_parquet(frames: Iterable["gpd.GeoDataFrame"], path: Path) -> int:
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415
    except ImportError:
        raise InputError("writing GeoParquet needs pyarrow; pip install pyarrow, or write .gpkg / .fgb") from None
    writer = None
    n = 0
    try:
        for frame in frames:
            if not len(frame):
                continue
            table = _to_geoparquet_table(frame)
            if writer is None:
                writer = pq.ParquetWriter(str(path), _without_bbox(table.schema))
            writer.write_table(table.cast(writer.schema))
            n += len(frame)
    finally:
        if writer is not None:
            writer.close()
    return n


def _to_geoparquet_table(frame: "gpd.GeoDataFrame"):
    """A pyarrow table with GeoParquet ``geo`` metadata: exactly what ``GeoDataFrame.to_parquet`` writes.

    geopandas has no public per-batch form of it (``to_arrow`` gives GeoArrow types without the
    ``geo`` key that GeoParquet readers need), so its writer's own conversion is used.
    """
    from geopandas.io.arrow import _geopandas_to_arrow  # noqa: PLC0415

    return _geopandas_to_arrow(frame, index=False, geometry_encoding="WKB")


def _without_bbox(schema):
    """GeoParquet metadata of the first batch, minus its bbox (which would cover that batch only)."""
    import json  # noqa: PLC0415

    meta = dict(schema.metadata or {})
    if b"geo" in meta:
        geo = json.loads(meta[b"geo"])
        for column in geo.get("columns", {}).values():
            column.pop("bbox", None)
        meta[b"geo"] = json.dumps(geo).encode()
    return schema.with_metadata(meta)


def write_atomic(frame: "gpd.GeoDataFrame", out: str | os.PathLike, layer: str | None = None,
                 geometry_type: str | None = None, promote_to_multi: bool | None = None) -> Path:
    """Write ``frame`` to a temporary file next to ``out`` (format by extension) and rename it into place."""
    from ..errors import OutputError  # noqa: PLC0415

    from ..io.atomic import replacing  # noqa: PLC0415

    out = Path(out)
    try:
        with replacing(out) as tmp:
            write_frames([frame], tmp, layer or out.stem, empty=frame, geometry_type=geometry_type,
                         promote_to_multi=promote_to_multi)
    except BaseException as exc:
        if isinstance(exc, OSError) or type(exc).__module__.startswith(("pyogrio", "pyarrow")):
            raise OutputError(f"writing '{out}' failed ({' '.join(str(exc).split())[:160]}); check free space and "
                              "permissions of the output folder") from exc
        raise
    return out


def read_vectors(path: str | os.PathLike) -> "gpd.GeoDataFrame":
    """Read back any of :data:`FORMATS`."""
    import geopandas as gpd  # noqa: PLC0415

    if vector_format(path) == "Parquet":
        return gpd.read_parquet(path)
    return gpd.read_file(path, engine="pyogrio")
