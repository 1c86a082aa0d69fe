"""GDAL VRT files the engine writes for itself (a STAC Item's stack, a scene at another resolution).

A VRT is a few kB of XML that GDAL opens like any raster. Its name holds a hash of its text, so
the same request reuses the same file (and a resumed run finds the same scene path), and it is
written under a temporary name and renamed, so concurrent runs never read half a file.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

__all__ = ["GDAL_TYPES", "cached_vrt"]

#: rasterio dtype -> VRT dataType, for the pixel types the engine reads
GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32"}


def cached_vrt(text: str, kind: str, stem: str) -> str:
    """Path of a VRT holding ``text`` in the temporary folder ``geopix-<kind>``, named ``<stem>-<hash>.vrt``."""
    folder = Path(tempfile.gettempdir()) / f"geopix-{kind}"
    folder.mkdir(parents=True, exist_ok=True)
    vrt = folder / f"{stem}-{hashlib.sha1(text.encode()).hexdigest()[:10]}.vrt"
    if not vrt.exists():
        tmp = vrt.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, vrt)
    return str(vrt)
