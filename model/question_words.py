"""Words of a question that are not things: sizes, units, "land cover", follow-up and "where most" cues.

Why a module of rules beside the learned parts: the intent head (MiniLM + a small MLP) reads what a
question asks, and MiniLM similarity finds the thing it names. Neither can be trusted with the words
here, found by asking the product what remote-sensing users ask: "larger than 10 ha" made "ha" a thing
and "than" a comparison, "land cover" became the class bare land, "And in the north?" became a
caption, "densest" an unknown thing. Each rule takes those words out or turns them into a field of
the :class:`~.dialogue.Question`, so the rest of the parse sees only the things asked about.
"""
from __future__ import annotations

import re
from typing import Sequence

from .answer import AREA_UNITS

__all__ = ["size_bounds", "number_threshold", "asked_unit", "asks_most_cover", "mostly_in", "size_statistic",
           "asks_classes_present", "strip_land_cover", "asks_land_cover", "elliptic", "where_most", "PLACE_NOUNS"]

#: "How much water is there in hectares?": the unit a reply's areas are given in (keys of ``AREA_UNITS``)
_UNIT_ASKED = [(re.compile(rf"\b(?:in|into|as|how many) (?:square )?(?:{p})\b"), u) for p, u in (
    ("hectares?|ha", "ha"), ("acres?", "acres"), (r"kilomet(?:er|re)s?|km2|km²|sq\.? ?km", "km²"),
    (r"met(?:er|re)s?|m2|m²|sq\.? ?m", "m²"), (r"feet|foot|ft|sq\.? ?ft", "sq ft"), (r"miles?|sq\.? ?mi", "sq mi"))]
#: "land cover" / "land use" name the question's subject (the classes), not the class "bare land"
_LAND_COVER = re.compile(r"\bland[ -]?(?:cover|use)s?\b|\blandcover\b|\blanduse\b", re.IGNORECASE)
#: the size words of "larger than 10 ha": square metres per unit, -1 for pixels
_UNITS_M2 = {"m2": 1.0, "m²": 1.0, "sq m": 1.0, "square metres": 1.0, "square meters": 1.0, "square metre": 1.0,
             "square meter": 1.0, "ha": AREA_UNITS["ha"], "hectare": AREA_UNITS["ha"], "hectares": AREA_UNITS["ha"],
             "km2": AREA_UNITS["km²"], "km²": AREA_UNITS["km²"], "square kilometres": AREA_UNITS["km²"],
             "square kilometers": AREA_UNITS["km²"], "acre": AREA_UNITS["acres"], "acres": AREA_UNITS["acres"],
             "pixels": -1.0, "pixel": -1.0, "px": -1.0}
_UPPER = ("smaller", "less", "under", "below", "at most")
_SIZE = re.compile(r"\b(larger|bigger|greater|more|over|above|at least|exceeding|smaller|less|under|below|at most)"
                   r"(?: than)?\s+(\d[\d,]*(?:\.\d+)?)\s*(" + "|".join(sorted(map(re.escape, _UNITS_M2), key=len,
                                                                             reverse=True)) + r")(?![a-z0-9])")
#: "which part", "what side": a question about where
PLACE_NOUNS = {"part", "parts", "side", "sides", "corner", "corners", "half", "quarter", "region", "direction"}


_OPS = r"(more|fewer|less|over|under|above|below|at least|at most)"
_FRACTIONS = {"half": 0.5, "a half": 0.5, "one half": 0.5, "a third": 1 / 3, "one third": 1 / 3, "a quarter": 0.25,
              "one quarter": 0.25, "two thirds": 2 / 3, "three quarters": 0.75, "a tenth": 0.1}
_SHARE = re.compile(rf"\b{_OPS}(?: than)?\s+(?:(\d+(?:\.\d+)?)\s*(?:%|percent\b|per cent\b)|("
                    + "|".join(sorted(map(re.escape, _FRACTIONS), key=len, reverse=True)) + r")\b(?:\s+of)?)")
#: what "most of the ..." can be most of when it asks for a share: the view, or a part of it
_VIEW_OR_PART = (r"(?:image|view|scene|picture|photo|tile|area|north|south|east|west|cent(?:re|er)|middle|top|bottom|"
                 r"left|right|upper|lower)")
#: a yes-or-no question with "mostly" / "most of the image": more than half ("Which part is mostly water?" asks
#: where, not this; "mostly in the east" and "most of the lakes" ask where a thing lies, :func:`mostly_in`)
_MOSTLY = re.compile(r"^(?:is|are|does|do)\b.*?\b(?:(mostly|mainly|largely|predominantly)\b"
                     r"(?!\s+(?:in|on|at|along|near|to|towards)\b)|most of (?:the |this )?" + _VIEW_OR_PART + r")")
_MOSTLY_IN = re.compile(r"^(?:is|are|does|do)\b.*?(?:\bmost of (?!(?:the |this )?" + _VIEW_OR_PART + r")\w|"
                        r"\b(?:mostly|mainly|largely|predominantly) (?:in|on|at|to|towards)\b)")
_COUNT = re.compile(rf"\b{_OPS}(?: than)?\s+(\d[\d,]*)\b(?!\s*(?:%|percent|per cent|[.,]\d))")


def number_threshold(text: str) -> tuple[tuple[str, float, str] | None, str]:
    """``((op, value, kind), text without those words)`` for "more than 10 buildings" (kind "count"), "more than
    30 % water" / "more than half of the image" (kind "share", value a fraction); ``op`` is ">", ">=", "<" or
    "<="; ``(None, text)`` when the question sets no such number. Sizes ("larger than 10 ha") are not this.

    >>> number_threshold("Are there more than 10 buildings?")[0], number_threshold("at most a third of it")[0]
    (('>', 10.0, 'count'), ('<=', 0.3333333333333333, 'share'))
    >>> number_threshold("Is there more than 30% water?")[0], number_threshold("Is there water?")[0]
    (('>', 0.3, 'share'), None)
    >>> number_threshold("Is the south mostly vegetation?")
    (('>', 0.5, 'share'), 'Is the south mostly vegetation?')
    >>> number_threshold("Are the buildings mostly in the east?")[0] is None
    True
    >>> number_threshold("Is most of the north water?")[0], number_threshold("Is most of the water in the north?")[0]
    (('>', 0.5, 'share'), None)
    """
    low = text.lower()
    mostly = _MOSTLY.search(low)
    if mostly is not None:  # "Is the south mostly vegetation?", "Is most of the image water?": more than half
        return (">", 0.5, "share"), text  # the word stays: it marks "the south" in "Is the south mostly ..." a place
    for rx, kind in ((_SHARE, "share"), (_COUNT, "count")):
        m = rx.search(low)
        if m is None:
            continue
        op = {"at least": ">=", "at most": "<="}.get(m.group(1),
                                                    "<" if m.group(1) in ("fewer", "less", "under", "below") else ">")
        if kind == "share":
            value = float(m.group(2)) / 100.0 if m.group(2) else _FRACTIONS[m.group(3)]
        else:
            value = float(m.group(2).replace(",", ""))
        return (op, value, kind), low[:m.start()] + " " + low[m.end():]
    return None, text


def size_bounds(text: str) -> tuple[tuple[float, float, str] | None, str]:
    """``((low, high, unit), text without those words)`` for "lakes larger than 10 ha", "under 200 m²", "over
    50 pixels"; ``(None, text)`` when the question sets no size. ``unit`` is "m2" or "px".

    >>> size_bounds("Count the lakes larger than 10 ha.")[0]
    (100000.0, inf, 'm2')
    >>> size_bounds("more than 3 lakes")[0] is None
    True
    """
    low, high, unit = 0.0, float("inf"), None
    for m in _SIZE.finditer(text.lower()):
        value = float(m.group(2).replace(",", ""))
        factor = _UNITS_M2[m.group(3)]
        this = "px" if factor < 0 else "m2"
        if unit is not None and this != unit:  # "over 1 ha and under 200 pixels": keep the first unit's bounds
            continue
        unit, value = this, value * abs(factor)
        if m.group(1) in _UPPER:
            high = min(high, value)
        else:
            low = max(low, value)
    if unit is None:
        return None, text
    return (low, high, unit), _SIZE.sub(" ", text.lower())


def asks_most_cover(words: Sequence[str]) -> bool:
    """ "What covers most of the image?", "Which class is dominant?": which class covers the most, asked without
    naming one (the caller checks that no thing was named).

    >>> asks_most_cover("which class covers the most area".split()), asks_most_cover("where is most water".split())
    (True, False)
    """
    return (any(w in ("what", "which") for w in words)
            and any(w in ("most", "dominant", "predominant", "majority", "prevailing", "commonest") for w in words)
            and any(w in ("cover", "covers", "covered", "class", "classes", "type", "category", "common", "area",
                          "share", "dominant", "predominant", "prevailing") for w in words))


def mostly_in(text: str) -> bool:
    """ "Are most of the buildings in the north?", "Are the lakes mostly in the east?": where the bulk of a thing
    lies (not "Is most of the north water?", a share of the north).

    >>> mostly_in("Are most of the buildings in the north?"), mostly_in("Is most of the north water?")
    (True, False)
    """
    return bool(_MOSTLY_IN.search(text.lower()))


def size_statistic(words: Sequence[str]) -> bool:
    """ "What is the average size of the lakes?", "median lake area": a question about the sizes of the parts.

    >>> size_statistic("what is the average size of the lakes".split()), size_statistic("how big is it".split())
    (True, False)
    """
    return (any(w in ("average", "mean", "median", "typical") for w in words)
            and any(w in ("size", "sizes", "area", "areas", "big", "large") for w in words))


def asks_classes_present(words: Sequence[str]) -> bool:
    """ "List the classes you can see.", "Which classes are present?": the caption's list, not a kind of scene.

    >>> asks_classes_present("which classes are present".split())
    True
    >>> asks_classes_present("what kind of scene is this".split())
    False
    """
    return (any(w in ("classes", "categories", "things", "objects", "features", "types", "kinds") for w in words)
            and any(w in ("list", "which", "what", "present", "visible", "see", "there", "name") for w in words)
            and not any(w in ("scene", "place", "area") for w in words))


def asked_unit(text: str) -> str | None:
    """The area unit a question asks for ("in hectares" -> "ha"), or None.

    >>> asked_unit("What is the area of the largest lake in acres?"), asked_unit("Is there water in the north?")
    ('acres', None)
    >>> asked_unit("How many hectares of vegetation are there?")
    'ha'
    """
    low = text.lower()
    return next((u for rx, u in _UNIT_ASKED if rx.search(low)), None)


def strip_land_cover(text: str) -> str:
    """ "What's the main land cover?" -> "What's the main cover?": the subject, not the class bare land."""
    return _LAND_COVER.sub(" cover ", text)


def asks_land_cover(text: str) -> bool:
    return bool(_LAND_COVER.search(text))


def elliptic(words: Sequence[str]) -> bool:
    """ "And in the north?", "What about the east?": a follow-up that asks the previous question again."""
    return bool(words) and (words[0] == "and" or tuple(words[:2]) in (("what", "about"), ("how", "about")))


def where_most(words: Sequence[str]) -> tuple[bool, str | None]:
    """``(asks where, cells compared)`` for "Which part has the most vegetation?" (``"part"``: all nine cells,
    ``"side"``: the four sides, ``"corner"``: the four corners) or "Where is it densest?"; ``(False, None)`` else.
    ``(True, None)``: a question about where that does not ask for the densest part ("Which part has the buildings?").

    >>> where_most("which side has the most water".split()), where_most("where are the roads".split())
    ((True, 'side'), (False, None))
    """
    if "where" in words and any(w in ("densest", "most", "concentrated") for w in words):
        return True, "part"
    for a, b in zip(words, words[1:]):
        if a in ("which", "what") and b in PLACE_NOUNS:
            if any(w in ("most", "more", "densest", "mostly") for w in words):
                return True, "side" if b.startswith("side") else "corner" if b.startswith("corner") else "part"
            return True, None
    return False, None
