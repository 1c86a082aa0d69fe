"""STAC Items as scenes: single-band assets stacked on one grid, band roles from ``eo:bands``.

A Sentinel-2 Item keeps each band in its own COG (B04, B03, B02, B08). ``open_scene`` turns
such an Item (a local JSON file or a URL) into one GDAL VRT whose bands point at the assets
(``/vsicurl/`` for URLs, so reads stay windowed range requests) and whose band descriptions
are the assets' ``eo:bands`` common names (red, green, blue, nir, swir16 -> swir1, ...): the
engine then resolves band roles exactly as for a described GeoTIFF, with no special case. An
ItemCollection is "many scenes", one per Item, named by the Item's id. Parsing is pystac's.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from ..errors import InputError

__all__ = ["is_stac", "item_vrt", "split_collection", "COMMON_TO_ROLE"]

#: eo:bands common names -> the engine's band roles
COMMON_TO_ROLE = {"coastal": "coastal", "blue": "blue", "green": "green", "red": "red", "rededge": "rededge",
                  "nir": "nir", "nir08": "nir", "nir09": "nir09", "swir16": "swir1", "swir22": "swir2"}


def is_stac(path: Any) -> bool:
    return str(path).lower().endswith(".json")


def _pystac():
    try:
        import pystac  # noqa: PLC0415
    except ImportError:
        raise InputError("reading STAC Items needs pystac; pip install pystac") from None
    return pystac


def _read(path: str) -> dict:
    pystac = _pystac()
    try:
        return pystac.StacIO.default().read_json(str(path))
    except Exception as exc:  # urllib/OS/JSON errors
        raise InputError(f"STAC file '{path}' could not be read ({' '.join(str(exc).split())[:140]}); pass a STAC "
                         "Item or ItemCollection JSON") from None


def split_collection(path: str) -> list[str] | None:
    """Per-Item JSON files (named by id, absolute asset hrefs) for an ItemCollection; None for an Item."""
    data = _read(path)
    if data.get("type") != "FeatureCollection":
        return None
    pystac = _pystac()
    collection = pystac.ItemCollection.from_dict(data, preserve_dict=True)
    folder = Path(tempfile.gettempdir()) / "geopix-stac" / hashlib.sha1(str(path).encode()).hexdigest()[:12]
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    base = str(path)
    for item in collection:
        for asset in item.assets.values():
            asset.href = _absolute(asset.href, base)
        f = folder / f"{item.id}.json"
        f.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)))
        out.append(str(f))
    if not out:
        raise InputError(f"ItemCollection '{path}' has no items")
    return out


def _absolute(href: str, base: str) -> str:
    if "://" in href or href.startswith("/"):
        return href
    if "://" in base:
        from urllib.parse import urljoin  # noqa: PLC0415

        return urljoin(base, href)
    return str((Path(base).parent / href).resolve())


def _band_name(asset: Any) -> str | None:
    fields = asset.extra_fields
    bands = fields.get("eo:bands") or fields.get("bands") or []
    if len(bands) != 1:
        return None
    common = bands[0].get("common_name") or bands[0].get("eo:common_name")
    return COMMON_TO_ROLE.get(str(common).lower()) if common else None


def item_vrt(path: str) -> tuple[str, str]:
    """``(vrt path, item id)``: the Item's role-named single-band assets stacked on one grid."""
    import rasterio  # noqa: PLC0415

    from .remote import configure_gdal_http, gdal_path, is_remote  # noqa: PLC0415

    pystac = _pystac()
    data = _read(path)
    if data.get("type") != "Feature":
        raise InputError(f"'{path}' is not a STAC Item (type {data.get('type')!r}); pass an Item, or an "
                         "ItemCollection as several scenes")
    item = pystac.Item.from_dict(data, preserve_dict=True)
    chosen: dict[str, str] = {}
    for key, asset in item.assets.items():
        role = _band_name(asset)
        if role and role not in chosen:
            chosen[role] = _absolute(asset.href, str(path))
    if not chosen:
        raise InputError(f"STAC Item '{item.id}' has no single-band assets with eo:bands common names "
                         "(red, green, blue, nir, ...); add eo:bands to its assets")
    bands = []
    grid = None
    for role, href in chosen.items():
        src_path = gdal_path(href)
        if is_remote(href):
            configure_gdal_http()
        try:
            with rasterio.open(src_path) as src:
                this = (src.width, src.height, src.crs, src.transform)
                dtype, nodata, block = src.dtypes[0], src.nodata, src.block_shapes[0]
        except Exception as exc:
            raise InputError(f"asset '{role}' of STAC Item '{item.id}' ({href}) could not be opened "
                             f"({' '.join(str(exc).split())[:120]})") from None
        if grid is None:
            grid = this
        elif this != grid:
            raise InputError(f"the assets of STAC Item '{item.id}' are not on one grid ('{role}' is {this[0]} x "
                             f"{this[1]} px, the first {grid[0]} x {grid[1]}); pick assets of one resolution")
        bands.append((role, src_path, dtype, nodata, block))
    width, height, crs, transform = grid
    xml = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
           f"<SRS>{escape(crs.to_wkt())}</SRS>" if crs else "",
           f"<GeoTransform>{', '.join(repr(v) for v in transform.to_gdal())}</GeoTransform>"]
    for i, (role, src_path, dtype, nodata, block) in enumerate(bands, start=1):
        gdt = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}.get(dtype, "Float32")
        xml.append(f'<VRTRasterBand dataType="{gdt}" band="{i}"><Description>{role}</Description>'
                   + (f"<NoDataValue>{nodata!r}</NoDataValue>" if nodata is not None else "")
                   + f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(src_path)}</SourceFilename>'
                   f"<SourceBand>1</SourceBand><SourceProperties RasterXSize=\"{width}\" RasterYSize=\"{height}\" "
                   f'DataType="{gdt}" BlockXSize="{block[1]}" BlockYSize="{block[0]}"/>'
                   f'<SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
                   f'<DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/></SimpleSource></VRTRasterBand>')
    xml.append("</VRTDataset>")
    text = "\n".join(x for x in xml if x)
    folder = Path(tempfile.gettempdir()) / "geopix-stac"
    folder.mkdir(parents=True, exist_ok=True)
    vrt = folder / f"{item.id}-{hashlib.sha1(text.encode()).hexdigest()[:10]}.vrt"
    if not vrt.exists():
        tmp = vrt.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, vrt)
    return str(vrt), item.id
