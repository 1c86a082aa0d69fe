"""Adapter settings for the labelled parts of the project's shared sample data.

Kept in code (not only in a config) because the shared folder's quirks are facts about
the data that every user of it needs: the Dubai colour table differs from its upstream
``classes.json``; the Open Cities mask uses 255; the Puerto Rico mask is 1 everywhere except
one house (checked by eye: the 0 pixels outline a single roof), so 0 is the labelled class and
its labels are not exhaustive (other roofs are unlabelled, so no window is a negative for buildings);
xBD is non-commercial. Sentinel-2 is read as true colour (B04, B03, B02) because
the GeoPix vision tower takes RGB; add ``B08`` to the list for a 4-band model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["DUBAI_COLOURS", "shared_data_specs", "PERMISSIVE"]

DUBAI_COLOURS: dict[str, list[int]] = {
    "building": [60, 16, 152],
    "land": [132, 41, 246],
    "road": [110, 193, 228],
    "vegetation": [254, 221, 58],
    "water": [226, 169, 41],
    "unlabeled": [155, 155, 155],
}

#: Sources whose licence allows training weights we ship (CC0, CC BY, MIT); xBD is not.
PERMISSIVE = {"naip_weak", "dubai_aerial", "open_cities", "s2_cloud", "puerto_rico", "elevation", "neon_trees", "neon_trees_yell"}


def shared_data_specs(root: str | Path) -> dict[str, dict[str, Any]]:
    """Source specs (for :func:`training.adapters.build_source`) of every labelled sample."""
    r = Path(root)
    s2 = r / "s2_cloud" / "features" / "aeey"
    return {
        "dubai_aerial": {"type": "colour_mask", "images": str(r / "dubai_aerial" / "tile_*" / "images" / "*.jpg"),
                         "masks": "{parent}/masks", "colours": DUBAI_COLOURS, "ignore": ["unlabeled"],
                         "stuff": ["land"], "name": "dubai_aerial"},
        "open_cities": {"type": "mask", "image": str(r / "open_cities" / "images" / "665946_tile_920.tif"),
                        "mask": str(r / "open_cities" / "masks" / "665946_tile_920_mask.tif"),
                        "classes": {255: "building"}, "name": "open_cities"},
        "s2_cloud": {"type": "mask", "image": [str(s2 / f"{b}.tif") for b in ("B04", "B03", "B02")],
                     "mask": str(r / "s2_cloud" / "labels" / "aeey.tif"), "classes": {1: "cloud"},
                     "stuff": ["cloud"], "name": "s2_cloud"},
        "puerto_rico": {"type": "mask", "image": str(r / "puerto_rico" / "pre.tif"),
                        "mask": str(r / "puerto_rico" / "pre_mask.tif"), "classes": {0: "building"},
                        "exhaustive": False, "name": "puerto_rico"},
        "elevation": {"type": "vector", "image": [str(r / "elevation" / f) for f in ("dsm.tif", "dtm.tif", "hag.tif")],
                      "vector": str(r / "elevation" / "buildings.geojson"), "category": "building",
                      "name": "elevation"},
        # weak labels (NDWI / NDVI) on the ten NAIP dates (R, G, B, NIR); the model sees bands 1-3
        "naip_weak": {"type": "spectral_index", "images": str(r / "naip" / "*.tif"), "rgb": [1, 2, 3], "red": 1,
                      "green": 2, "nir": 4, "ndwi": 0.2, "ndvi": 0.3, "name": "naip_weak"},
        "xbd_joplin": {"type": "xbd", "images": str(r / "xbd_joplin" / "images"),
                       "labels": str(r / "xbd_joplin" / "labels"), "name": "xbd_joplin"},
        "neon_trees": {"type": "boxes", "csv_path": str(r / "neon_trees" / "OSBS_029.csv"),
                       "name": "neon_trees"},
        "neon_trees_yell": {"type": "boxes", "csv_path": str(r / "neon_trees" / "example.csv"),
                            "name": "neon_trees_yell"},
    }
