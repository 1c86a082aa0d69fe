"""geopix-tiles: pixel-level vision-language answers over whole satellite scenes.

``import geopix_tiles`` stays light (no torch, no geopandas): the heavy modules are loaded
on first use of what needs them.
"""
from __future__ import annotations

from .errors import GeopixError, InputError, OutputError, ReadError
from .segmenters.protocol import Segmenter
from .interfaces.post_import import when_imported as _when_imported


def _register_xarray() -> None:
    from .interfaces import xarray_accessor  # noqa: F401, PLC0415 - registers DataArray.geopix / Dataset.geopix


def _register_pandas() -> None:
    from .interfaces import pandas_accessor  # noqa: F401, PLC0415 - registers (Geo)DataFrame.geopix


# registered as soon as xarray / pandas are imported, before or after geopix_tiles (see post_import)
_when_imported("xarray", _register_xarray)
_when_imported("pandas", _register_pandas)

__version__ = "0.1.0"
__all__ = ["GeopixError", "InputError", "OutputError", "ReadError", "Segmenter", "segment", "chat", "SpectralSegmenter", "plot",
           "__version__"]


def __getattr__(name: str):
    if name == "segment":
        from .api import segment

        return segment
    if name == "chat":
        from .answers.conversation import Conversation

        return Conversation
    if name == "plot":  # matplotlib only when plotting is asked for
        import importlib  # noqa: PLC0415

        return importlib.import_module(".plot", __name__)
    if name == "SpectralSegmenter":
        from .segmenters.spectral import SpectralSegmenter

        return SpectralSegmenter
    raise AttributeError(f"module 'geopix_tiles' has no attribute {name!r}")
