"""Words for the classes we train, and for things we never train, split train / held out.

The default model learns prompt meaning from MiniLM sentence embeddings (see
``model/text_encoder.py``), but only if training asks for each class in more than one way
and also asks for things that are not there. So each category-segmentation target is asked
for by its class name or by a training synonym, sometimes inside a free-text phrase ("the
buildings next to the road"), and some targets name an unrelated concept with an empty mask.

The held-out lists are never used in training: they are what ``evaluate`` (and the tests)
use to check that paraphrases land where their meaning is and that unknown concepts return
next to nothing. They include the words users tried in issue 11.
"""
from __future__ import annotations

import random

__all__ = ["TRAIN_SYNONYMS", "HELD_OUT_PARAPHRASES", "TRAIN_UNRELATED", "HELD_OUT_UNRELATED", "surface_phrase",
           "context_phrase"]

TRAIN_SYNONYMS: dict[str, list[str]] = {
    "building": ["buildings", "building", "structures", "built structures", "homes", "building footprints",
                 "roofs", "dwellings", "residential buildings", "constructions", "man-made structures", "sheds"],
    "road": ["roads", "road", "roadways", "paved roads", "highways", "lanes", "asphalt roads", "road network",
             "motorways", "driveways", "tracks"],
    "water": ["water", "water surfaces", "open water", "lakes", "ponds", "rivers", "sea", "pools of water",
              "waterways", "reservoirs", "canals"],
    "vegetation": ["vegetation", "plants", "grass", "forest", "woodland", "shrubs", "green areas", "crops",
                   "tree canopy", "vegetated areas", "lawns", "bushes"],
    "land": ["land", "bare land", "bare ground", "soil", "sand", "open ground", "dirt", "barren land",
             "unpaved ground", "empty lots", "desert ground"],
    "cloud": ["clouds", "cloud", "cloudy areas", "cloud cover over the scene", "haze and clouds", "overcast areas",
              "thick clouds", "cumulus clouds"],
}

#: never trained on: the paraphrase check of issue 11 (one list per class, plus free text)
HELD_OUT_PARAPHRASES: dict[str, list[str]] = {
    "building": ["houses", "rooftops", "the small houses near the road"],
    "road": ["streets"],
    "water": ["water bodies"],
    "vegetation": ["trees", "greenery"],
    "land": ["bare soil"],
    "cloud": ["cloud cover"],
}

#: concepts absent from every training source: their target mask is empty
TRAIN_UNRELATED = [
    "elephants", "giraffes", "penguins", "dinosaurs", "pianos", "guitars", "umbrellas", "telephones", "books",
    "rockets", "spaceships", "glaciers", "icebergs", "lava flows", "craters", "snowfields", "coral reefs",
    "oil rigs", "satellite dishes", "ferris wheels", "lighthouses", "castles", "pyramids", "cows", "horses",
    "zebras", "whales", "sharks", "balloons", "kites", "chairs", "laptops", "bananas", "apples", "cats", "dogs",
    "bicycles", "helicopters", "bridges over canyons", "ski slopes", "palm oil mills",
    "stadium seats", "airport runways", "ice rinks", "vineyards in autumn", "the moon", "stars", "fire",
]

#: held out for the "unknown concept returns next to nothing" check
HELD_OUT_UNRELATED = ["wind turbines", "volcanoes", "airplanes", "solar panels", "tennis courts", "ships"]


def surface_phrase(category: str, rng: random.Random, canonical: str) -> str:
    """A training synonym of ``category`` (its canonical plural when it has none)."""
    options = TRAIN_SYNONYMS.get(category)
    return rng.choice(options) if options else canonical


_CONTEXT = ["the {x} near the {y}", "all {x} next to the {y}", "the {x} beside the {y}", "{x} around the {y}",
            "the {x} along the {y}", "the {x} and not the {y}", "only the {x}, not the {y}"]


def context_phrase(target: str, other: str, rng: random.Random) -> str:
    """Free text that names the target first and another class as context ("the roofs near the roads")."""
    return rng.choice(_CONTEXT).format(x=target, y=other)


#: a third list, for choosing inference settings (bank on/off, its temperature) without looking at
#: the held-out lists: neither trained on nor used for the reported paraphrase results
DEV_PARAPHRASES: dict[str, list[str]] = {
    "building": ["apartment blocks", "villas", "warehouses"],
    "road": ["avenues", "boulevards", "paved streets and roads"],
    "water": ["lagoons", "the sea surface"],
    "vegetation": ["foliage", "shrubbery", "palm trees"],
    "land": ["barren sand", "dirt ground"],
    "cloud": ["cloudiness", "clouded sky"],
}
#: dev free text (a class named first, another as context), added to choose how free text is read
#: (:mod:`geopix_tiles.model.prompt_subject`) before the held-out free text was scored
DEV_FREE_TEXT: dict[str, list[str]] = {
    "building": ["the apartment blocks along the avenue", "villas with a garden"],
    "road": ["the avenues between the villas"],
    "water": ["the lagoons next to the warehouses"],
    "vegetation": ["palm trees beside the boulevards"],
    "land": ["barren sand around the apartment blocks"],
}
DEV_UNRELATED = ["submarines", "pandas", "trumpets", "windmills in a field", "oil tankers"]


def training_phrases() -> list[str]:
    """Every phrase the recipe's category prompts can name a target by (the model's text bank).

    Class names, training synonyms, unrelated concepts and the context phrases built from them
    (first two context templates, each synonym against each other class name).
    """
    from .instruct import plural

    out = [plural(c) for c in TRAIN_SYNONYMS]
    out += [p for ps in TRAIN_SYNONYMS.values() for p in ps]
    out += list(TRAIN_UNRELATED)
    for c, ps in TRAIN_SYNONYMS.items():
        for o in TRAIN_SYNONYMS:
            if o == c:
                continue
            for t in _CONTEXT[:2]:
                out += [t.format(x=p, y=plural(o)) for p in ps]
    return list(dict.fromkeys(out))
