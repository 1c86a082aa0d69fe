"""Scene-labelled chips as segmentation negatives: what a scene class tells us is *not* there.

UC Merced (public domain, 0.3 m US orthophotos, 21 scene classes) carries no masks, but a
scene label rules classes out: a forest chip holds no buildings and no water, a storage-tank
chip holds no clouds, a beach chip no buildings. Each chip becomes a record with no
instances whose ``meta["classes"]`` lists exactly the classes its scene rules out, so the
trainer's negative sampling (:func:`training.instruct.make_samples`, ``negatives``) asks for
them with an empty target mask and nothing else is claimed about the chip.

Why: the default model learnt every class from a handful of places (Dubai, one NAIP tile,
one Open Cities tile) and on other sensors it painted bright round tank roofs as clouds,
tank and overpass shadows as water and dry soil as vegetation. Negatives from another
sensor and 21 kinds of place cost no labelling and cannot teach a wrong positive.

The table is conservative: a class is listed as absent only where a look at the chips of
that scene class (training indices 00-59) found it missing from all of them: pools (water)
appear in residential and tennis-court chips, buildings beside freeways and runways, so
those classes are not ruled out there. ``land`` (Dubai's bare ground) is never listed: bare
patches occur in almost every scene.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .records import ImageRecord

__all__ = ["ABSENT_BY_SCENE", "PRESENT_BY_SCENE", "HELD_OUT_INDICES", "chip_index", "scene_negative_records",
           "scene_chips"]

#: UC Merced folder -> classes of the segmentation model that a chip of that scene lacks
ABSENT_BY_SCENE: dict[str, tuple[str, ...]] = {
    "agricultural": ("building", "road", "water", "cloud"),
    "airplane": ("water", "cloud"),
    "baseballdiamond": ("water", "cloud"),
    "beach": ("building", "road", "vegetation", "cloud"),
    "buildings": ("cloud",),
    "chaparral": ("building", "road", "water", "cloud"),
    "denseresidential": ("cloud",),
    "forest": ("building", "road", "water", "cloud"),
    "freeway": ("water", "cloud"),
    "golfcourse": ("building", "cloud"),
    "harbor": ("cloud",),
    "intersection": ("water", "cloud"),
    "mediumresidential": ("cloud",),
    "mobilehomepark": ("water", "cloud"),
    "overpass": ("water", "cloud"),
    "parkinglot": ("water", "cloud"),
    "river": ("building", "cloud"),
    "runway": ("water", "cloud"),
    "sparseresidential": ("cloud",),
    "storagetanks": ("water", "cloud"),
    "tenniscourt": ("cloud",),
}

#: UC Merced folder -> a class every chip of that scene shows (checked by eye on chips 00-59). Never
#: trained on (no mask): scored only, so a recipe that learns "this sensor -> nothing" is caught
#: (the v3 trial painted 4 % of the held-out forest chips as vegetation, v2 99 %).
PRESENT_BY_SCENE: dict[str, tuple[str, ...]] = {
    "forest": ("vegetation",),
    "golfcourse": ("vegetation",),
    "buildings": ("building",),
    "denseresidential": ("building",),
    "mediumresidential": ("building",),
    "freeway": ("road",),
    "intersection": ("road",),
    "river": ("water",),
    "harbor": ("water",),
}


#: chips scored, never trained on: every other one of the scene head's held-out chips 60-79
#: (:func:`training.dialogue_heads.scene_split`)
HELD_OUT_INDICES = range(60, 80, 2)


def chip_index(path: str | Path) -> int | None:
    """The number of a UC Merced chip (``forest07.jpg`` -> 7), or None for a name without one."""
    digits = "".join(ch for ch in Path(path).stem if ch.isdigit())
    return int(digits) if digits else None


def scene_chips(root: str | Path, indices: Iterable[int]) -> list[tuple[Path, str]]:
    """``(path, scene folder)`` of the chips whose number is in ``indices``."""
    keep = set(indices)
    out = []
    for folder in sorted(ABSENT_BY_SCENE):
        for p in sorted((Path(root) / folder).glob("*.jpg")):
            if chip_index(p) in keep:
                out.append((p, folder))
    return out


def scene_negative_records(root: str | Path, indices: Iterable[int]) -> list[ImageRecord]:
    """One instance-free record per chip, ``meta["classes"]`` = what its scene rules out.

    Pixels are scaled by the chip's own 2-98 % stretch (:func:`io.scene.prepare_scene`, the
    statistics ``describe``/``chat`` use on a file), stored as ``norm`` like exported chips.
    """
    from geopix_tiles.io.scene import prepare_scene

    out = []
    for path, folder in scene_chips(root, indices):
        sc = prepare_scene(str(path), ("red", "green", "blue"), allow_no_georef=True, statistics=True)
        out.append(ImageRecord(
            image_path=str(path.resolve()), instances=[],
            norm={"low": [float(v) for v in sc.low], "high": [float(v) for v in sc.high]},
            meta={"source": "uc_merced_negatives", "scene_class": folder, "window": [0, 0, sc.height, sc.width],
                  "classes": list(ABSENT_BY_SCENE[folder]), "weak_labels": True,
                  "present_classes": list(PRESENT_BY_SCENE.get(folder, ()))}))
    return out
