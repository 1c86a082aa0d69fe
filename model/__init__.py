"""GeoPix + Aquila-plus model: text -> masks, masks -> text, and an engine Segmenter.

Importing this package imports torch, transformers and open_clip; the pure-geo parts of
``geopix_tiles`` never import it.
"""
from .config import GeoPixConfig
from .geopix import ChatReply, GeoPixModel, GeoPixOutput, ImageEncoding
from .processor import GeoPixProcessor
from .segmenter import GeoPixSegmenter

__all__ = ["GeoPixConfig", "GeoPixModel", "GeoPixOutput", "ChatReply", "ImageEncoding", "GeoPixProcessor",
           "GeoPixSegmenter"]
